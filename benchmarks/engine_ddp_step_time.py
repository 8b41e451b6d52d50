"""Engine step time at ZeRO stage 0 on 2 ranks vs a hand-written DDP loop doing the same work.

Every rank trains the same GPT on its own batches with AdamW and gradient clipping, three
ways, in alternating chunks so drift hits all alike:

- engine with ``zero_optimization.ignore_unused_parameters: true`` (DDP looks for parameters
  without gradient after each forward and copies the outputs);
- engine, default config (``ignore_unused_parameters: false``: DDP's fast path);
- plain ``DistributedDataParallel`` (``find_unused_parameters=False``) and a plain loop.

Prints the median per-step times (rank 0) and the ratios to the plain loop.

    python benchmarks/engine_ddp_step_time.py [--repeats 10] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import engine  # noqa: E402
from benchmarks.engine_step_time import BATCH, CLIP, CFG, LR, batches, loss_of, make_model, time_engine  # noqa: E402


def time_ddp(ddp: DistributedDataParallel, opt: torch.optim.Optimizer, data: list) -> list[float]:
    times = []
    for x, y in data:
        start = time.perf_counter()
        loss_of(ddp(x), y).backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def rank_body(repeats: int, steps: int) -> dict[str, float]:
    torch.set_num_threads(1)
    data = batches(steps)

    def config(ignore_unused: bool) -> dict:
        return {"train_micro_batch_size_per_gpu": BATCH, "optimizer": {"type": "AdamW", "params": {"lr": LR}},
                "gradient_clipping": CLIP, "zero_optimization": {"stage": 0, "ignore_unused_parameters": ignore_unused}}

    searching = engine.initialize(make_model(), config(True))
    fast = engine.initialize(make_model(), config(False))
    model = make_model()
    ddp = DistributedDataParallel(model, gradient_as_bucket_view=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    runs = {
        "engine (ignore_unused_parameters: true)": lambda: time_engine(searching, data),
        "engine (ignore_unused_parameters: false)": lambda: time_engine(fast, data),
        "plain DDP loop": lambda: time_ddp(ddp, opt, data),
    }
    for run in runs.values():  # warm-up: allocator, optimizer state, DDP buckets
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % 3:] + names[:r % 3]:  # rotate the order
            times[name] += runs[name]()
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="rotations of the three chunks")
    parser.add_argument("--steps", type=int, default=5, help="steps per chunk")
    args = parser.parse_args()
    medians = engine.launch(rank_body, world_size=2, args=(args.repeats, args.steps))
    plain = medians["plain DDP loop"]
    print(f"model: GPT {sum(p.numel() for p in make_model().parameters()) / 1e6:.2f}M params, micro-batch {BATCH}x"
          f"{CFG.block_size} per rank, 2 ranks (gloo), fp32, AdamW, clip {CLIP}, 1 thread per rank")
    for name, m in medians.items():
        print(f"{name:42s} median {m * 1e3:7.2f} ms  ratio to plain {m / plain:.3f}")


if __name__ == "__main__":
    main()
