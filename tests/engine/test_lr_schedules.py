"""DeepSpeed's warmup schedules: values at chosen steps, by DeepSpeed's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from engine.config import parse_config
from engine.lr_schedules import build_scheduler


def _lrs(scheduler_config: dict, steps: int, lr: float = 0.1) -> list[float]:
    config = parse_config({"scheduler": scheduler_config})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_scheduler(config.scheduler, opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_warmup_lr_log_then_flat() -> None:
    lrs = _lrs({"type": "WarmupLR", "params": {"warmup_min_lr": 0.0, "warmup_max_lr": 1.0,
                                                "warmup_num_steps": 4}}, 6)
    # Constructor applies step -1 (min lr); step i uses log(i + 1) / log(4).
    want = [0.0, 0.0, math.log(2) / math.log(4), math.log(3) / math.log(4), 1.0, 1.0, 1.0]
    assert lrs == pytest.approx(want)


def test_warmup_lr_defaults_max_to_optimizer_lr() -> None:
    lrs = _lrs({"type": "WarmupLR", "params": {"warmup_num_steps": 2, "warmup_type": "linear"}}, 3, lr=0.5)
    assert lrs == pytest.approx([0.0, 0.0, 0.25, 0.5])


def test_warmup_decay_lr_decays_linearly_to_zero() -> None:
    lrs = _lrs({"type": "WarmupDecayLR", "params": {"warmup_max_lr": 1.0, "warmup_num_steps": 2,
                                                     "warmup_type": "linear", "total_num_steps": 6}}, 7)
    assert lrs == pytest.approx([0.0, 0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_warmup_cosine_lr_ratio_of_optimizer_lr() -> None:
    lrs = _lrs({"type": "WarmupCosineLR", "params": {"warmup_num_steps": 2, "warmup_type": "linear",
                                                      "total_num_steps": 4, "cos_min_ratio": 0.1,
                                                      "warmup_min_ratio": 0.2}}, 5, lr=2.0)
    cos = lambda p: 0.1 + 0.9 * (1 + math.cos(math.pi * p)) / 2  # noqa: E731
    assert lrs == pytest.approx([0.0, 2.0 * 0.2, 2.0 * 0.6, 2.0 * cos(0.5), 2.0 * cos(1.0), 2.0 * 0.1])
