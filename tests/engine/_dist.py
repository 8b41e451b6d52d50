"""Shared pieces of the engine tests: tiny seeded models, data, reference loops, and
functions that ranks started by ``engine.launch`` run (module level, so spawn can pickle
them)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.nn import functional as F

import engine
from engine.models import GPT, GPTConfig, MLPClassifier

IN, CLASSES, VOCAB, SEQ = 16, 5, 11, 8


def make_mlp() -> MLPClassifier:
    torch.manual_seed(0)
    return MLPClassifier(IN, 32, CLASSES, dropout=0.0, activation="tanh", n_layers=2)


def make_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=SEQ, n_layer=2, n_head=4, n_embd=16, dropout=0.0, bias=False))


def make_data(kind: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples for the MLP (features, labels) or the GPT (inputs, next tokens)."""
    gen = torch.Generator().manual_seed(1234)
    if kind.startswith("mlp"):
        return torch.randn(n, IN, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)
    tokens = torch.randint(0, VOCAB, (n, SEQ + 1), generator=gen)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output.reshape(-1, output.size(-1)), target.reshape(-1))


def make_model(kind: str) -> torch.nn.Module:
    """``mlp``, ``gpt``, or ``mlp_unused``: the MLP with a layer its forward never uses."""
    if kind == "mlp_unused":
        model = make_mlp()
        model.spare = torch.nn.Linear(IN, CLASSES)
        return model
    return make_mlp() if kind == "mlp" else make_gpt()


def reference_run(kind: str, *, steps: int, batch: int, lr: float, clip: float = 0.0) -> dict[str, torch.Tensor]:
    """A hand-written single-process loop: AdamW on the mean loss of each global batch."""
    model = make_model(kind)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    x, y = make_data(kind, steps * batch)
    for s in range(steps):
        rows = slice(s * batch, (s + 1) * batch)
        loss_fn(model(x[rows]), y[rows]).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def micro_batches(eng: engine.Engine, x: torch.Tensor, y: torch.Tensor, step: int) -> list[tuple[Any, Any]]:
    """This rank's micro-batches of global batch ``step``: rows reshaped (accum, dp, micro)."""
    k, dp, b = eng.gradient_accumulation_steps, eng.dims.dp, eng.micro_batch_size
    start = step * eng.train_batch_size
    out = []
    for m in range(k):
        first = start + (m * dp + eng.dp_rank) * b
        out.append((x[first:first + b], y[first:first + b]))
    return out


def full_params(eng: engine.Engine) -> dict[str, torch.Tensor]:
    """Unsharded parameters under their plain names (collective)."""
    state = get_model_state_dict(eng.module, options=StateDictOptions(full_state_dict=True))
    return {k: v.detach().clone() for k, v in state.items()}


def train_steps(eng: engine.Engine, kind: str, first: int, last: int) -> list[float]:
    """Train global steps ``first..last-1``; returns each step's global mean loss."""
    x, y = make_data(kind, last * eng.train_batch_size)
    losses = []
    for s in range(first, last):
        total = torch.zeros(())
        for xb, yb in micro_batches(eng, x, y, s):
            loss = loss_fn(eng(xb), yb)
            eng.backward(loss)
            eng.step()
            eng.zero_grad()
            total += loss.detach() / eng.gradient_accumulation_steps
        if dist.is_initialized():
            # Mean over data-parallel ranks; tensor-parallel peers hold the same loss.
            dist.all_reduce(total)
            total /= eng.world_size
        losses.append(float(total))
    return losses


def run_layout(kind: str, config: dict[str, Any], steps: int) -> dict[str, torch.Tensor]:
    """Rank body: train ``steps`` global steps with ``config``; rank 0 returns the params."""
    eng = engine.initialize(make_model(kind), copy.deepcopy(config))
    train_steps(eng, kind, 0, steps)
    return full_params(eng)


def run_fp16_overflow(stage: int) -> list[dict[str, Any]]:
    """Rank body: a clean fp16 step, then one with an inf injected on rank 1 only."""
    config = {
        "train_micro_batch_size_per_gpu": 4,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-2}},
        "fp16": {"enabled": True, "initial_scale_power": 8, "hysteresis": 1},
        "zero_optimization": {"stage": stage},
    }
    eng = engine.initialize(make_mlp(), config)
    x, y = make_data("mlp", 16)
    rank = dist.get_rank()
    report: dict[str, Any] = {"rank": rank, "scales": [eng.precision.loss_scale]}
    stepped = []
    for s in range(2):
        xb, yb = micro_batches(eng, x, y, s)[0]
        eng.backward(loss_fn(eng(xb), yb))
        if s == 1:
            report["before"] = {k: v for k, v in full_params(eng).items()}
            if rank == 1:
                grad = next(p.grad for p in eng.module.parameters() if p.grad is not None)
                local = grad.to_local() if isinstance(grad, torch.distributed.tensor.DTensor) else grad
                local.view(-1)[0] = float("inf")
        stepped.append(eng.step())
        eng.zero_grad()
        report["scales"].append(eng.precision.loss_scale)
    report["stepped"] = stepped
    report["skipped"] = eng.skipped_steps
    report["unchanged"] = all(torch.equal(v, report["before"][k]) for k, v in full_params(eng).items())
    del report["before"]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, report)
    return gathered


def run_checkpoint_save(config: dict[str, Any], path: str, steps_before: int, steps_after: int) -> dict[str, Any]:
    """Rank body: train, save, keep training; rank 0 returns the later losses and params."""
    eng = engine.initialize(make_mlp(), copy.deepcopy(config))
    train_steps(eng, "mlp", 0, steps_before)
    eng.save_checkpoint(path)
    losses = train_steps(eng, "mlp", steps_before, steps_before + steps_after)
    return {"losses": losses, "params": full_params(eng), "lr": eng.optimizer.param_groups[0]["lr"]}


def fail_on_rank(bad_rank: int, value: int) -> int:
    if dist.get_rank() == bad_rank:
        raise RuntimeError(f"deliberate failure on rank {bad_rank}")
    return value * 10


def exit_on_rank(bad_rank: int) -> int:
    if dist.get_rank() == bad_rank:
        os._exit(3)  # dies without a Python traceback, like a crash
    return 0


def process_groups_after_engines(config: dict[str, Any], count: int) -> list[int]:
    """Number of live process groups after each of ``count`` engines built one after another."""
    from torch.distributed import distributed_c10d as c10d

    alive = []
    for _ in range(count):
        eng = engine.initialize(make_gpt(), config)
        train_steps(eng, "gpt", 0, 1)
        del eng
        alive.append(len(c10d._world.pg_map))  # noqa: SLF001 - no public count
    return alive


def load_with_one_damaged_rng_file(path: str, bad_rank: int) -> str:
    """Save on every rank, damage one rank's RNG file, load: every rank must refuse alike."""
    eng = engine.initialize(make_mlp(), {"train_batch_size": 8})
    train_steps(eng, "mlp", 0, 1)
    eng.save_checkpoint(path)
    if dist.get_rank() == 0:
        (Path(path) / "rng" / f"rank_{bad_rank}.pt").write_bytes(b"not a tensor file")
    dist.barrier()
    fresh = engine.initialize(make_mlp(), {"train_batch_size": 8})
    try:
        fresh.load_checkpoint(path)
    except engine.CheckpointError as e:
        return str(e)
    raise AssertionError(f"rank {dist.get_rank()} loaded a checkpoint that another rank refused")
