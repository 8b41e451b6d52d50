"""Pieces both built-in tasks share: engine config assembly and evaluation."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

__all__ = ["engine_config", "evaluate"]


def engine_config(defaults: dict[str, Any], static: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` < the study's ``trial.engine`` < sampled optimizer values.

    Sampled ``lr``, ``weight_decay``, ``beta1``/``beta2`` and ``batch_size`` parameters
    are written into DeepSpeed-style optimizer and batch keys.
    """
    batch_keys = ("batch_size", "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
    if any(k in static for k in batch_keys) or "batch_size" in params:
        # The study fixes the batch geometry: task defaults must not contradict it.
        defaults = {k: v for k, v in defaults.items() if k not in batch_keys}
    cfg = copy.deepcopy(defaults)
    for k, v in static.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = copy.deepcopy(v)
    if "batch_size" in params:
        for k in ("batch_size", "train_batch_size", "train_micro_batch_size_per_gpu"):
            cfg.pop(k, None)
        cfg["train_micro_batch_size_per_gpu"] = int(params["batch_size"])
    opt = cfg.setdefault("optimizer", {"type": "AdamW", "params": {}})
    if isinstance(opt, dict):
        p = opt.setdefault("params", {})
        if "optimizer" in params:
            opt["type"] = params["optimizer"]
        for key in ("lr", "weight_decay", "momentum"):
            if key in params:
                p[key] = float(params[key])
        if "beta1" in params or "beta2" in params:
            p["betas"] = [float(params.get("beta1", 0.9)), float(params.get("beta2", 0.999))]
    return cfg


@torch.no_grad()
def evaluate(
    eng: Any,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    correct_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy over ``batches``, the same on every rank."""
    eng.eval()
    total_loss, total_correct, count = 0.0, 0.0, 0
    for x, y in batches:
        x, y = x.to(eng.device), y.to(eng.device)
        out = eng(x)
        n = y.numel()
        total_loss += float(loss_fn(out.float(), y)) * n
        if correct_fn is not None:
            total_correct += float(correct_fn(out, y))
        count += n
    eng.train()
    return total_loss / count, total_correct / count
