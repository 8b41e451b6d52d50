"""Optimizer section of the config (DeepSpeed names) and the optimizer it builds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from engine._validate import Section, as_bool, as_float, as_str, unknown_key_message
from engine.errors import ConfigError

__all__ = ["OptimizerConfig", "OptimizerType", "build_optimizer", "parse_optimizer"]


class OptimizerType(str, Enum):
    """Optimizers the engine builds; DeepSpeed's ``optimizer.type`` names, case-insensitive."""

    ADAM = "adam"
    ADAMW = "adamw"
    SGD = "sgd"


# DeepSpeed optimizers with their own update rule or communication: rejected by name
# rather than reported as unknown.
_UNSUPPORTED = ("lamb", "onebitadam", "zerooneadam", "onebitlamb", "lion", "muon", "adagrad")

# Defaults follow DeepSpeed's FusedAdam (weight_decay 0, not torch.optim.AdamW's 0.01).
_DEFAULTS: dict[OptimizerType, dict[str, Any]] = {
    OptimizerType.ADAM: {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    OptimizerType.ADAMW: {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    OptimizerType.SGD: {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0},
}
_ADAM_KEYS = frozenset({"lr", "betas", "eps", "weight_decay", "amsgrad", "fused", "foreach", "torch_adam"})
_KEYS: dict[OptimizerType, frozenset[str]] = {
    OptimizerType.ADAM: _ADAM_KEYS | {"adam_w_mode"},
    OptimizerType.ADAMW: _ADAM_KEYS | {"adam_w_mode"},  # DeepSpeed accepts it; AdamW is always W mode
    OptimizerType.SGD: frozenset(
        {"lr", "momentum", "dampening", "weight_decay", "nesterov", "fused", "foreach"}
    ),
}


@dataclass(kw_only=True, slots=True)
class OptimizerConfig:
    """Which optimizer to build and with which keyword arguments."""

    type: OptimizerType = OptimizerType.ADAMW
    """The optimizer. DeepSpeed's ``Adam`` is AdamW unless ``params.adam_w_mode`` is false."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the torch optimizer, defaults filled in (``lr``, ``betas``...)."""

    def __post_init__(self) -> None:
        allowed = _KEYS[self.type] - {"adam_w_mode"}
        for key in self.params:
            if key not in allowed:
                raise ConfigError(f"optimizer.params.{key} is not an argument of {self.type.value}")
        if self.params.get("lr", 0.0) < 0:
            raise ConfigError(f"optimizer.params.lr must be >= 0, got {self.params['lr']}")

    @property
    def lr(self) -> float:
        """The base learning rate."""
        return float(self.params["lr"])


def parse_optimizer(raw: Any, learning_rate: Any, ignored_out: list[str]) -> OptimizerConfig:
    """Build an :class:`OptimizerConfig` from ``optimizer`` and the flat ``learning_rate``.

    Args:
        raw: ``{"type": ..., "params": {...}}``, a bare type name such as ``"adamw"``, or None.
        learning_rate: The flat ``learning_rate`` key, or None.
        ignored_out: Receives dotted paths of accepted-but-ignored keys.

    Raises:
        ConfigError: Unknown or unsupported type, unknown param, or ``lr`` given twice.
    """
    if raw is None:
        raw = {"type": "adamw"}
    elif isinstance(raw, str):
        raw = {"type": raw}
    section = Section(known=frozenset({"type", "params"})).split(raw, "optimizer", ignored_out)
    name = as_str(section.get("type", "adamw"), "optimizer.type").lower()
    if name in _UNSUPPORTED:
        raise ConfigError(f"optimizer.type={section['type']!r} is not supported; use Adam, AdamW or SGD")
    try:
        kind = OptimizerType(name)
    except ValueError:
        names = [t.value for t in OptimizerType]
        raise ConfigError(unknown_key_message("optimizer.type", name, names)) from None
    given = Section(known=_KEYS[kind]).split(
        section.get("params", {}), "optimizer.params", ignored_out
    )
    params: dict[str, Any] = dict(_DEFAULTS[kind])
    for key, value in given.items():
        path = f"optimizer.params.{key}"
        if key == "betas":
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ConfigError(f"{path} must be a pair of numbers, got {value!r}")
            params[key] = (as_float(value[0], path), as_float(value[1], path))
        elif key in {"amsgrad", "nesterov", "adam_w_mode", "torch_adam"}:
            params[key] = as_bool(value, path)
        elif key in {"fused", "foreach"}:
            params[key] = None if value is None else as_bool(value, path)
        else:
            params[key] = as_float(value, path, minimum=0.0)
    if learning_rate is not None:
        if "lr" in given:
            raise ConfigError(
                f"learning rate given twice: learning_rate={learning_rate!r} and "
                f"optimizer.params.lr={given['lr']!r}"
            )
        params["lr"] = as_float(learning_rate, "learning_rate", minimum=0.0)
    if kind is OptimizerType.ADAM and params.pop("adam_w_mode", True):
        kind = OptimizerType.ADAMW
    params.pop("adam_w_mode", None)  # AdamW is always in weight-decay mode
    if params.pop("torch_adam", False) and kind is OptimizerType.ADAMW and "weight_decay" not in given:
        params["weight_decay"] = 0.01  # DeepSpeed then builds torch.optim.AdamW, with torch's default decay
    return OptimizerConfig(type=kind, params=params)


def build_optimizer(
    config: OptimizerConfig, parameters: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """Build the torch optimizer over ``parameters`` (already sharded, if sharding is used)."""
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters to optimize")
    cls = {
        OptimizerType.ADAM: torch.optim.Adam,
        OptimizerType.ADAMW: torch.optim.AdamW,
        OptimizerType.SGD: torch.optim.SGD,
    }[config.type]
    return cls(params, **config.params)
