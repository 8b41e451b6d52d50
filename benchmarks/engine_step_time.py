"""Engine step time vs a hand-written PyTorch loop doing the same work (one process).

Both train the same GPT on the same batches with AdamW, gradient clipping and the same
precision; repeats alternate between the two so drift (thermal, other load) hits both.
Prints the median per-step times and their ratio (goal: engine / plain <= 1.03).

    python benchmarks/engine_step_time.py [--precision fp32|bf16] [--repeats 20] [--steps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import engine  # noqa: E402
from engine.models import GPT, GPTConfig  # noqa: E402

CFG = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
BATCH, LR, CLIP = 16, 3e-4, 1.0


def make_model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG)


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, CFG.vocab_size, (steps, BATCH, CFG.block_size + 1), generator=gen)
    return [(t[:, :-1].contiguous(), t[:, 1:].contiguous()) for t in tokens]


def loss_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def time_engine(eng: engine.Engine, data: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    times = []
    for x, y in data:
        start = time.perf_counter()
        eng.backward(loss_of(eng(x), y))
        eng.step()
        eng.zero_grad()
        times.append(time.perf_counter() - start)
    return times


def time_plain(model: GPT, opt: torch.optim.Optimizer, dtype: torch.dtype | None,
               data: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    times = []
    for x, y in data:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        loss_of(logits.float(), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=20, help="alternations of engine and plain chunks")
    parser.add_argument("--steps", type=int, default=5, help="steps per chunk")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1 = least noise)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = batches(args.steps)
    eng = engine.initialize(make_model(), {
        "train_batch_size": BATCH, "optimizer": {"type": "AdamW", "params": {"lr": LR}},
        "gradient_clipping": CLIP, "precision": args.precision,
    })
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    time_engine(eng, data[:3])  # warm-up: allocator, optimizer state
    time_plain(model, opt, dtype, data[:3])
    engine_times: list[float] = []
    plain_times: list[float] = []
    for r in range(args.repeats):
        if r % 2:  # alternate which goes first, so neither always follows the other
            plain_times += time_plain(model, opt, dtype, data)
            engine_times += time_engine(eng, data)
        else:
            engine_times += time_engine(eng, data)
            plain_times += time_plain(model, opt, dtype, data)
    # Median of single steps: robust to bursts of load from other processes.
    e, p = statistics.median(engine_times), statistics.median(plain_times)
    print(f"model: GPT {sum(q.numel() for q in model.parameters()) / 1e6:.2f}M params, batch {BATCH}x"
          f"{CFG.block_size}, {args.precision}, AdamW, clip {CLIP}, threads {torch.get_num_threads()}")
    print(f"engine step: median {e * 1e3:.2f} ms over {len(engine_times)} steps "
          f"({args.repeats} alternating chunks of {args.steps})")
    print(f"plain  step: median {p * 1e3:.2f} ms")
    print(f"ratio engine/plain: {e / p:.3f} (goal <= 1.03)")


if __name__ == "__main__":
    main()
