"""Tensor parallelism through DTensor ``parallelize_module`` and the model's plan."""

from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor.parallel import parallelize_module

from engine.errors import ConfigError

__all__ = ["apply_tensor_parallel"]


def apply_tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """Shard ``model`` over ``tp_mesh`` with the plan from ``model.tp_plan()`` (in place).

    Layers named in the plan get DTensor parameters (colwise/rowwise); all others stay
    replicated plain tensors that receive identical gradients on every tp rank.

    Raises:
        ConfigError: The model has no ``tp_plan()``, or rejects the degree through
            ``validate_tp_size(size)``.
    """
    plan_fn = getattr(model, "tp_plan", None)
    if not callable(plan_fn):
        raise ConfigError(f"tensor_parallel needs a model with tp_plan(); {type(model).__name__} defines none")
    validate = getattr(model, "validate_tp_size", None)
    if callable(validate):
        try:
            validate(tp_mesh.size())
        except ValueError as err:
            raise ConfigError(f"tensor_parallel.size({tp_mesh.size()}): {err}") from err
    parallelize_module(model, tp_mesh, plan_fn())
