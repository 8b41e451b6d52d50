"""Per-rank bytes of parameters + gradients + optimizer state: ZeRO stage 0 vs 3.

Runs a GPT on CPU with gloo at world sizes 2 and 4. Each rank counts the bytes of its
local tensors (a DTensor's shard, or the full tensor) after backward (parameters and
gradients) and after the first AdamW step (optimizer state), i.e. the memory held
between iterations; the transient all-gathered parameters of a stage-3 forward are not
counted. Goal: stage 3 <= (1/N) * stage 0 + 10%.

    python benchmarks/engine_memory.py [--world-sizes 2 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import engine  # noqa: E402
from engine.models import GPT, GPTConfig  # noqa: E402

CFG = GPTConfig(vocab_size=128, block_size=32, n_layer=4, n_head=4, n_embd=128, dropout=0.0)


def _local_bytes(tensors: list[torch.Tensor]) -> int:
    total = 0
    for t in tensors:
        local = t.to_local() if isinstance(t, DTensor) else t
        total += local.numel() * local.element_size()
    return total


def measure(stage: int) -> dict[str, int]:
    """Rank body: one training step; returns the max over ranks of each byte count."""
    torch.manual_seed(0)
    eng = engine.initialize(GPT(CFG), {
        "train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": stage},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
    })
    idx = torch.randint(0, CFG.vocab_size, (2, CFG.block_size + 1))
    eng.backward(F.cross_entropy(eng(idx[:, :-1]).reshape(-1, CFG.vocab_size), idx[:, 1:].reshape(-1)))
    params = list(eng.module.parameters())
    counts = {
        "params": _local_bytes(params),
        "grads": _local_bytes([p.grad for p in params if p.grad is not None]),
    }
    eng.step()
    state = [v for s in eng.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    counts["optimizer"] = _local_bytes(state)
    counts["total"] = counts["params"] + counts["grads"] + counts["optimizer"]
    out = torch.tensor([counts[k] for k in ("params", "grads", "optimizer", "total")], dtype=torch.float64)
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return dict(zip(("params", "grads", "optimizer", "total"), (int(v) for v in out.tolist()), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    n_params = sum(p.numel() for p in GPT(CFG).parameters())
    print(f"model: GPT {n_params / 1e6:.2f}M params, fp32, AdamW (2 state tensors per parameter)")
    for world in args.world_sizes:
        by_stage = {stage: engine.launch(measure, world_size=world, args=(stage,), timeout_s=300) for stage in (0, 3)}
        for stage, counts in by_stage.items():
            shown = ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in counts.items())
            print(f"world {world} stage {stage}: max per rank {shown}")
        ratio = by_stage[3]["total"] / by_stage[0]["total"]
        goal = 1 / world * 1.10
        verdict = "ok" if ratio <= goal else "ABOVE GOAL"
        print(f"world {world}: stage3/stage0 = {ratio:.4f} (1/N = {1 / world:.4f}, goal <= {goal:.4f}) {verdict}")


if __name__ == "__main__":
    main()
