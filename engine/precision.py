"""Mixed precision: fp32, bf16 autocast, fp16 autocast with DeepSpeed-style loss scaling.

Master weights, gradients and optimizer state stay fp32 in every mode. Without FSDP the
forward runs under ``torch.autocast``; under FSDP (ZeRO stage >= 1) FSDP's
``MixedPrecisionPolicy`` casts parameters for compute instead and reduces gradients in
fp32. Either way, floating-point model outputs are returned as fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy

from engine._validate import Section, as_bool, as_float, as_int, as_str, unsupported_if_truthy
from engine.errors import ConfigError

__all__ = [
    "DynamicLossScaler",
    "FP16Precision",
    "LossScaleConfig",
    "Precision",
    "PrecisionConfig",
    "PrecisionType",
    "build_precision",
    "parse_precision",
]


class PrecisionType(str, Enum):
    """Compute precision of forward and backward."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype used for compute."""
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.value]


@dataclass(kw_only=True, slots=True)
class LossScaleConfig:
    """fp16 loss scaling, with DeepSpeed's ``fp16`` section names and defaults."""

    loss_scale: float = 0.0
    """Static loss scale; ``0`` selects dynamic scaling."""
    initial_scale_power: int = 16
    """Dynamic scaling starts at ``2**initial_scale_power``."""
    loss_scale_window: int = 1000
    """Overflow-free steps after which the scale doubles."""
    hysteresis: int = 2
    """Overflows tolerated (step skipped, scale kept) before the scale is halved."""
    consecutive_hysteresis: bool = False
    """Refill the hysteresis after every overflow-free step, not only when the scale grows."""
    min_loss_scale: float = 1.0
    """The scale never drops below this."""

    def __post_init__(self) -> None:
        if self.loss_scale < 0:
            raise ConfigError(f"fp16.loss_scale must be >= 0 (0 = dynamic), got {self.loss_scale}")
        if self.loss_scale_window < 1 or self.hysteresis < 1:
            raise ConfigError(
                f"fp16.loss_scale_window({self.loss_scale_window}) and fp16.hysteresis({self.hysteresis}) must be >= 1"
            )
        if self.min_loss_scale <= 0:
            raise ConfigError(f"fp16.min_loss_scale must be > 0, got {self.min_loss_scale}")


@dataclass(kw_only=True, slots=True)
class PrecisionConfig:
    """Compute precision and, for fp16, loss scaling."""

    type: PrecisionType = PrecisionType.FP32
    """fp32, bf16 or fp16."""
    loss_scale: LossScaleConfig = field(default_factory=LossScaleConfig)
    """Used only when ``type`` is fp16."""
    fp32_outputs: bool = True
    """bf16/fp16: floating outputs of the forward come back as fp32. False keeps the
    compute dtype, so a loss can do its own upcast (a compiled loss fuses it instead of
    writing an fp32 copy of, say, a language model's logits)."""


_FP16 = Section(
    known=frozenset({"enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis",
                     "consecutive_hysteresis", "min_loss_scale"}),
    ignored=frozenset({"auto_cast"}),
    unsupported={"fp16_master_weights_and_grads": unsupported_if_truthy("master weights stay fp32")},
)
_BF16 = Section(
    known=frozenset({"enabled"}),
    ignored=frozenset({"immediate_grad_update", "check_grad_overflow"}),
    unsupported={
        "bf16_master_weights_and_grads": unsupported_if_truthy("master weights stay fp32"),
        "bf16_optimizer_states": unsupported_if_truthy("optimizer state stays fp32"),
    },
)
_NAMES = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}


def parse_precision(raw: dict[str, Any], ignored_out: list[str]) -> PrecisionConfig:
    """Read ``fp16``, ``bf16`` (or ``bfloat16``), ``mixed_precision``, ``precision`` and ``fp32_outputs``.

    ``mixed_precision: true`` means bf16; a string names the precision like ``precision``.
    All keys that are given must agree.
    """
    choices: dict[str, PrecisionType] = {}
    fp16 = _FP16.split(raw["fp16"], "fp16", ignored_out) if raw.get("fp16") is not None else {}
    if as_bool(fp16.get("enabled", False), "fp16.enabled"):
        choices["fp16.enabled"] = PrecisionType.FP16
    for key in ("bf16", "bfloat16"):
        if raw.get(key) is not None:
            bf16 = _BF16.split(raw[key], key, ignored_out)
            if as_bool(bf16.get("enabled", False), f"{key}.enabled"):
                choices[f"{key}.enabled"] = PrecisionType.BF16
    for key in ("mixed_precision", "precision"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) and key == "mixed_precision":
            choices[key] = PrecisionType.BF16 if value else PrecisionType.FP32
            continue
        name = as_str(value, key).lower()
        if name not in _NAMES:
            raise ConfigError(f"{key}={value!r} is not a precision; expected fp32, bf16 or fp16")
        choices[key] = PrecisionType(_NAMES[name])
    if len(set(choices.values())) > 1:
        shown = ", ".join(f"{k} -> {v.value}" for k, v in choices.items())
        raise ConfigError(f"conflicting precision settings: {shown}")
    kind = next(iter(choices.values()), PrecisionType.FP32)
    scale = LossScaleConfig(
        loss_scale=as_float(fp16.get("loss_scale", 0.0), "fp16.loss_scale"),
        initial_scale_power=as_int(fp16.get("initial_scale_power", 16), "fp16.initial_scale_power", minimum=0),
        loss_scale_window=as_int(fp16.get("loss_scale_window", 1000), "fp16.loss_scale_window"),
        hysteresis=as_int(fp16.get("hysteresis", 2), "fp16.hysteresis"),
        consecutive_hysteresis=as_bool(fp16.get("consecutive_hysteresis", False), "fp16.consecutive_hysteresis"),
        min_loss_scale=as_float(fp16.get("min_loss_scale", 1.0), "fp16.min_loss_scale"),
    )
    fp32_outputs = as_bool(raw.get("fp32_outputs", True), "fp32_outputs")
    return PrecisionConfig(type=kind, loss_scale=scale, fp32_outputs=fp32_outputs)


class Precision:
    """How forward, backward and the optimizer step run in one precision.

    The defaults do fp32 training; subclasses override what their precision changes.
    """

    type: PrecisionType = PrecisionType.FP32

    def __init__(self, device_type: str, *, autocast: bool, fp32_outputs: bool = True) -> None:
        self.device_type = device_type
        self.autocast = autocast and self.type is not PrecisionType.FP32
        self.fp32_outputs = fp32_outputs

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        """The context the forward pass runs in (autocast, unless FSDP casts instead)."""
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.type.dtype)

    def mixed_precision_policy(self, *, root: bool) -> MixedPrecisionPolicy:
        """The FSDP policy: low-precision compute, fp32 gradient reduction and (unless
        ``fp32_outputs`` is off) fp32 root outputs."""
        if self.type is PrecisionType.FP32:
            return MixedPrecisionPolicy()
        return MixedPrecisionPolicy(
            param_dtype=self.type.dtype,
            reduce_dtype=torch.float32,
            output_dtype=torch.float32 if root and self.fp32_outputs else None,
        )

    @property
    def loss_scale(self) -> float:
        """The factor the loss is multiplied by before backward."""
        return 1.0

    @property
    def checks_overflow(self) -> bool:
        """Whether steps with non-finite gradients must be skipped."""
        return False

    def backward(self, loss: torch.Tensor) -> None:
        """Run backward on ``loss`` (already divided by the accumulation steps)."""
        loss.backward()

    def unscale_(self, local_grads: list[torch.Tensor]) -> None:
        """Undo the loss scale on the local gradient tensors, in place."""

    def optimizer_step(self, optimizer: torch.optim.Optimizer, *, found_inf: bool) -> bool:
        """Step ``optimizer`` unless the precision skips it; returns whether it stepped.

        ``found_inf`` must be the same on every rank (it comes from an all-reduce).
        """
        optimizer.step()
        return True

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state to checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class BF16Precision(Precision):
    """bf16 compute; same exponent range as fp32, so no loss scaling."""

    type = PrecisionType.BF16


class DynamicLossScaler:
    """DeepSpeed's loss scaler: halve after ``hysteresis`` overflows, double after
    ``loss_scale_window`` clean steps.

    ``torch.amp.GradScaler`` is not used: it has no hysteresis and a different growth
    rule, so DeepSpeed configs would train differently, and its found-inf check looks
    only at the local shard of FSDP2/tensor-parallel gradients, so ranks could disagree
    about skipping. Here the caller passes an overflow flag already all-reduced.
    """

    def __init__(self, config: LossScaleConfig) -> None:
        self.config = config
        self.dynamic = config.loss_scale == 0
        self.cur_scale = float(2**config.initial_scale_power) if self.dynamic else config.loss_scale
        self.cur_iter = 0
        self.last_overflow_iter = -1
        self.cur_hysteresis = config.hysteresis

    def update(self, overflow: bool) -> None:
        """Update the scale after a step that did (or did not) overflow."""
        cfg = self.config
        if self.dynamic and overflow:
            if cfg.hysteresis == 1 or self.cur_hysteresis == 1:
                self.cur_scale = max(self.cur_scale / 2.0, cfg.min_loss_scale)
            else:
                self.cur_hysteresis -= 1
            self.last_overflow_iter = self.cur_iter
        elif self.dynamic:
            if cfg.consecutive_hysteresis:
                self.cur_hysteresis = cfg.hysteresis
            stable = self.cur_iter - self.last_overflow_iter - 1
            if stable > 0 and stable % cfg.loss_scale_window == 0:
                if not cfg.consecutive_hysteresis:
                    self.cur_hysteresis = cfg.hysteresis
                self.cur_scale *= 2.0
        self.cur_iter += 1

    def state_dict(self) -> dict[str, Any]:
        """The scaler's counters."""
        return {
            "cur_scale": self.cur_scale,
            "cur_iter": self.cur_iter,
            "last_overflow_iter": self.last_overflow_iter,
            "cur_hysteresis": self.cur_hysteresis,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.cur_scale = float(state["cur_scale"])
        self.cur_iter = int(state["cur_iter"])
        self.last_overflow_iter = int(state["last_overflow_iter"])
        self.cur_hysteresis = int(state["cur_hysteresis"])


class FP16Precision(Precision):
    """fp16 compute with loss scaling; steps whose gradients overflow are skipped.

    With a static scale the step is skipped on overflow too, as in DeepSpeed.
    """

    type = PrecisionType.FP16

    def __init__(
        self, device_type: str, *, autocast: bool, loss_scale: LossScaleConfig, fp32_outputs: bool = True
    ) -> None:
        super().__init__(device_type, autocast=autocast, fp32_outputs=fp32_outputs)
        self.scaler = DynamicLossScaler(loss_scale)

    @property
    def loss_scale(self) -> float:
        return self.scaler.cur_scale

    @property
    def checks_overflow(self) -> bool:
        return True

    def backward(self, loss: torch.Tensor) -> None:
        # The scaled loss in fp32, as DeepSpeed computes it (2**16 times an fp16 loss overflows).
        (loss.float() * self.scaler.cur_scale).backward()

    def unscale_(self, local_grads: list[torch.Tensor]) -> None:
        inv = 1.0 / self.scaler.cur_scale
        for grad in local_grads:
            grad.mul_(inv)

    def optimizer_step(self, optimizer: torch.optim.Optimizer, *, found_inf: bool) -> bool:
        if not found_inf:
            optimizer.step()
        self.scaler.update(found_inf)
        return not found_inf

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scaler.load_state_dict(state)


def build_precision(config: PrecisionConfig, device_type: str, *, autocast: bool) -> Precision:
    """The :class:`Precision` for ``config``; ``autocast=False`` when FSDP casts instead."""
    if config.type is PrecisionType.FP16:
        return FP16Precision(device_type, autocast=autocast, loss_scale=config.loss_scale,
                             fp32_outputs=config.fp32_outputs)
    if config.type is PrecisionType.BF16:
        return BF16Precision(device_type, autocast=autocast, fp32_outputs=config.fp32_outputs)
    return Precision(device_type, autocast=autocast)
