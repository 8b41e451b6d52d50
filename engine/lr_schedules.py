"""DeepSpeed's warmup learning-rate schedules, with DeepSpeed's parameter names and math.

The schedules set absolute learning rates on every param group. As in DeepSpeed, the
constructor already applies the rate for ``last_batch_iteration=-1`` (``warmup_min_lr``,
or ``0`` for WarmupCosineLR), and :meth:`step` is called once after every optimizer step
that was taken (an fp16 step skipped on overflow does not advance the schedule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from engine._validate import Section, as_float, as_int, as_str, unknown_key_message
from engine.errors import ConfigError

__all__ = [
    "LRSchedule",
    "SchedulerConfig",
    "SchedulerType",
    "WarmupCosineLR",
    "WarmupDecayLR",
    "WarmupLR",
    "build_scheduler",
    "parse_scheduler",
]


class SchedulerType(str, Enum):
    """Schedules the engine builds; DeepSpeed's ``scheduler.type`` names."""

    WARMUP_LR = "WarmupLR"
    WARMUP_DECAY_LR = "WarmupDecayLR"
    WARMUP_COSINE_LR = "WarmupCosineLR"


_DEFAULTS: dict[SchedulerType, dict[str, Any]] = {
    SchedulerType.WARMUP_LR: {
        "warmup_min_lr": 0.0, "warmup_max_lr": None, "warmup_num_steps": 1000, "warmup_type": "log",
    },
    SchedulerType.WARMUP_DECAY_LR: {
        "warmup_min_lr": 0.0, "warmup_max_lr": 0.001, "warmup_num_steps": 1000,
        "warmup_type": "log", "total_num_steps": None,
    },
    SchedulerType.WARMUP_COSINE_LR: {
        "warmup_min_ratio": 0.0, "warmup_num_steps": 1000, "cos_min_ratio": 0.0001,
        "warmup_type": "log", "total_num_steps": None,
    },
}
_UNSUPPORTED = ("OneCycle", "LRRangeTest", "WarmupCosineWithHardRestartsLR")


@dataclass(kw_only=True, slots=True)
class SchedulerConfig:
    """Which schedule to build and its DeepSpeed parameters."""

    type: SchedulerType
    """The schedule."""
    params: dict[str, Any] = field(default_factory=dict)
    """Its parameters with defaults filled in; ``warmup_max_lr=None`` means the optimizer lr."""

    def __post_init__(self) -> None:
        if self.params.get("warmup_type") not in ("log", "linear"):
            raise ConfigError(
                f"scheduler.params.warmup_type must be 'log' or 'linear', got {self.params.get('warmup_type')!r}"
            )
        if "total_num_steps" in self.params and self.params["total_num_steps"] is None:
            raise ConfigError(f"scheduler.params.total_num_steps is required for {self.type.value}")


def parse_scheduler(raw: Any, ignored_out: list[str]) -> SchedulerConfig | None:
    """Build a :class:`SchedulerConfig` from ``{"type": ..., "params": {...}}`` (or None)."""
    if raw is None:
        return None
    section = Section(known=frozenset({"type", "params"})).split(raw, "scheduler", ignored_out)
    name = as_str(section.get("type"), "scheduler.type")
    if name in _UNSUPPORTED:
        raise ConfigError(f"scheduler.type={name!r} is not supported; use WarmupLR, WarmupDecayLR or WarmupCosineLR")
    by_lower = {t.value.lower(): t for t in SchedulerType}
    if name.lower() not in by_lower:
        raise ConfigError(unknown_key_message("scheduler.type", name, [t.value for t in SchedulerType]))
    kind = by_lower[name.lower()]
    defaults = _DEFAULTS[kind]
    raw_params = dict(section.get("params") or {})
    if raw_params.get("last_batch_iteration", -1) != -1:
        raise ConfigError(
            f"scheduler.params.last_batch_iteration={raw_params['last_batch_iteration']!r} is not supported: the "
            "schedule starts at -1 and resumes from checkpoints (load_checkpoint restores its step)"
        )
    raw_params.pop("last_batch_iteration", None)
    given = Section(known=frozenset(defaults)).split(raw_params, "scheduler.params", ignored_out)
    params = dict(defaults)
    for key, value in given.items():
        path = f"scheduler.params.{key}"
        if key == "warmup_type":
            params[key] = as_str(value, path)
        elif key in ("warmup_num_steps", "total_num_steps"):
            params[key] = as_int(value, path, minimum=1)
        else:
            params[key] = as_float(value, path, minimum=0.0)
    return SchedulerConfig(type=kind, params=params)


class LRSchedule:
    """Base of the warmup schedules: sets ``group["lr"]`` from :meth:`get_lr`."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_num_steps: int, warmup_type: str) -> None:
        self.optimizer = optimizer
        self.warmup_num_steps = max(2, warmup_num_steps)
        self.warmup_type = warmup_type
        self.inverse_log_warm_up = 1.0 / math.log(self.warmup_num_steps)
        self.last_batch_iteration = -1
        self._apply()

    def _warmup_gamma(self) -> float:
        if self.warmup_type == "log":
            return self.inverse_log_warm_up * math.log(self.last_batch_iteration + 1)
        return self.last_batch_iteration / self.warmup_num_steps

    def get_lr(self) -> list[float]:
        """The learning rate of each param group at ``last_batch_iteration``."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rates last applied."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def _apply(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr

    def step(self) -> None:
        """Advance by one optimizer step and apply the new rate."""
        self.last_batch_iteration += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        """The position in the schedule, as in DeepSpeed."""
        return {"last_batch_iteration": self.last_batch_iteration}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the position and re-apply its rate."""
        self.last_batch_iteration = int(state["last_batch_iteration"])
        self._apply()


class WarmupLR(LRSchedule):
    """From ``warmup_min_lr`` to ``warmup_max_lr`` over ``warmup_num_steps``, then flat."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        warmup_min_lr: float = 0.0,
        warmup_max_lr: float | None = None,
        warmup_num_steps: int = 1000,
        warmup_type: str = "log",
    ) -> None:
        self.min_lr = warmup_min_lr
        max_lr = optimizer.param_groups[0]["lr"] if warmup_max_lr is None else warmup_max_lr
        self.delta_lr = max_lr - warmup_min_lr
        super().__init__(optimizer, warmup_num_steps, warmup_type)

    def _gamma(self) -> float:
        return self._warmup_gamma() if self.last_batch_iteration < self.warmup_num_steps else 1.0

    def get_lr(self) -> list[float]:
        if self.last_batch_iteration < 0:
            return [self.min_lr for _ in self.optimizer.param_groups]
        lr = self.min_lr + self.delta_lr * self._gamma()
        return [lr for _ in self.optimizer.param_groups]


class WarmupDecayLR(WarmupLR):
    """:class:`WarmupLR`, then linear decay to ``warmup_min_lr`` at ``total_num_steps``."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, total_num_steps: int, **kwargs: Any) -> None:
        self.total_num_steps = total_num_steps
        super().__init__(optimizer, **kwargs)

    def _gamma(self) -> float:
        if self.last_batch_iteration < self.warmup_num_steps:
            return self._warmup_gamma()
        remaining = self.total_num_steps - self.last_batch_iteration
        return max(0.0, remaining / max(1.0, self.total_num_steps - self.warmup_num_steps))


class WarmupCosineLR(LRSchedule):
    """Ratio of the optimizer lr: ``warmup_min_ratio`` to 1 over the warmup, then cosine
    down to ``cos_min_ratio`` at ``total_num_steps`` (held there afterwards)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        total_num_steps: int,
        warmup_min_ratio: float = 0.0,
        warmup_num_steps: int = 1000,
        cos_min_ratio: float = 0.0001,
        warmup_type: str = "log",
    ) -> None:
        self.total_num_steps = total_num_steps
        self.warmup_min_ratio = warmup_min_ratio
        self.cos_min_ratio = cos_min_ratio
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        super().__init__(optimizer, warmup_num_steps, warmup_type)

    def _ratio(self) -> float:
        if self.last_batch_iteration < 0:
            return 0.0
        if self.last_batch_iteration < self.warmup_num_steps:
            return self.warmup_min_ratio + self._warmup_gamma() * (1.0 - self.warmup_min_ratio)
        done = self.last_batch_iteration - self.warmup_num_steps + 1
        progress = min(1.0, done / max(1, self.total_num_steps - self.warmup_num_steps))
        cosine = (1 + math.cos(math.pi * progress)) / 2
        return max(0.0, self.cos_min_ratio + (1.0 - self.cos_min_ratio) * cosine)

    def get_lr(self) -> list[float]:
        ratio = self._ratio()
        return [lr * ratio for lr in self.base_lrs]


def build_scheduler(config: SchedulerConfig, optimizer: torch.optim.Optimizer) -> LRSchedule:
    """Build the schedule of ``config`` over ``optimizer``."""
    cls = {
        SchedulerType.WARMUP_LR: WarmupLR,
        SchedulerType.WARMUP_DECAY_LR: WarmupDecayLR,
        SchedulerType.WARMUP_COSINE_LR: WarmupCosineLR,
    }[config.type]
    return cls(optimizer, **config.params)
