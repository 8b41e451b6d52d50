"""Parallelism: one file per technique, composed by :func:`parallelize`.

Order of application (each step sees the result of the previous one):

1. tensor parallel (``tensor_parallel.py``): DTensor ``parallelize_module`` on the ``tp``
   mesh dimension with the model's ``tp_plan()``;
2. activation checkpointing (``activation_checkpoint.py``) on each block;
3. data parallel on the ``dp`` mesh dimension: ZeRO stage 0 is DDP (``ddp.py``), stages
   1-3 are FSDP2 ``fully_shard`` per block, then the root (``fsdp.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from engine.errors import ConfigError
from engine.parallel.activation_checkpoint import apply_activation_checkpointing
from engine.parallel.clip_grad import clip_grads_, global_grad_norm, local_grads
from engine.parallel.ddp import apply_ddp
from engine.parallel.fsdp import ZeroStage, apply_fsdp
from engine.parallel.tensor_parallel import apply_tensor_parallel
from engine.precision import Precision

__all__ = [
    "ParallelConfig",
    "ParallelDims",
    "ZeroStage",
    "build_mesh",
    "clip_grads_",
    "global_grad_norm",
    "local_grads",
    "parallelize",
]


@dataclass(kw_only=True, slots=True)
class ParallelConfig:
    """How the model is split across ranks."""

    zero_stage: int = 0
    """ZeRO stage: 0 = DDP, 1/2/3 = FSDP2 (see ``docs/ENGINE.md`` for what each shards)."""
    tp_size: int = 1
    """Tensor-parallel degree; ``WORLD_SIZE`` must be a multiple of it."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward instead of storing them."""
    ignore_unused_parameters: bool = False
    """Stage 0 on several ranks: True lets a parameter get no gradient in a step (DDP looks
    for them after each forward, and copies the outputs); False makes it an error."""

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(f"zero_optimization.stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.tp_size < 1:
            raise ConfigError(f"tensor_parallel.size must be >= 1, got {self.tp_size}")


@dataclass(frozen=True, slots=True)
class ParallelDims:
    """The data-parallel x tensor-parallel layout of ``world_size`` ranks."""

    dp: int
    """Data-parallel degree (ranks holding different batches)."""
    tp: int
    """Tensor-parallel degree (ranks splitting each layer)."""
    world_size: int
    """Number of ranks."""

    def __post_init__(self) -> None:
        if self.dp * self.tp != self.world_size:
            raise ConfigError(f"dp({self.dp}) * tp({self.tp}) != WORLD_SIZE({self.world_size})")

    @classmethod
    def from_world(cls, world_size: int, tp: int) -> ParallelDims:
        """The layout with tensor-parallel degree ``tp``; dp takes the remaining ranks."""
        if world_size % tp:
            raise ConfigError(
                f"dp({world_size / tp:g}) * tp({tp}) != WORLD_SIZE({world_size}): "
                "WORLD_SIZE must be a multiple of tensor_parallel.size"
            )
        return cls(dp=world_size // tp, tp=tp, world_size=world_size)


# Meshes built in this process, with the default process group they were built over. A
# 2-D mesh creates process groups (NCCL communicators, with their GPU buffers) that nothing
# frees, so a worker process that trains one model after another reuses its mesh.
_meshes: dict[tuple[str, int, int], tuple[object, DeviceMesh]] = {}


def build_mesh(dims: ParallelDims, device_type: str) -> DeviceMesh | None:
    """A ``("dp",)`` or ``("dp", "tp")`` mesh over all ranks; None for a single rank.

    The same layout asked for again over the same default process group gets the same mesh.
    """
    if dims.world_size == 1:
        return None
    key, world = (device_type, dims.dp, dims.tp), dist.group.WORLD
    cached = _meshes.get(key)
    if cached is not None and cached[0] is world:
        return cached[1]
    if dims.tp == 1:
        mesh = init_device_mesh(device_type, (dims.dp,), mesh_dim_names=("dp",))
    else:
        mesh = init_device_mesh(device_type, (dims.dp, dims.tp), mesh_dim_names=("dp", "tp"))
    _meshes[key] = (world, mesh)
    return mesh


def uses_fsdp(config: ParallelConfig, dims: ParallelDims) -> bool:
    """Whether :func:`parallelize` shards with FSDP (stage >= 1 over more than one dp rank)."""
    return config.zero_stage >= 1 and dims.dp > 1


def parallelize(
    model: nn.Module,
    *,
    config: ParallelConfig,
    dims: ParallelDims,
    mesh: DeviceMesh | None,
    precision: Precision,
    device: torch.device,
) -> nn.Module:
    """Apply tensor parallel, activation checkpointing, then DDP or FSDP, in that order.

    Args:
        model: The model, on ``device``, identical on every rank.
        config: Which techniques to apply.
        dims: The dp x tp layout.
        mesh: The mesh from :func:`build_mesh` (None for a single rank).
        precision: Supplies FSDP's mixed-precision policy.
        device: The local device.

    Returns:
        The module to call for forward: ``model`` itself, or its DDP wrapper.

    Raises:
        ConfigError: A combination that is not supported (DDP with tensor parallel over
            more than one dp rank), or a model that lacks ``tp_plan()``/``blocks()``.
    """
    if config.zero_stage == 0 and dims.tp > 1 and dims.dp > 1:
        raise ConfigError(
            f"zero_optimization.stage=0 with tensor_parallel.size({dims.tp}) and dp({dims.dp}) is not supported: "
            "DDP cannot replicate DTensor parameters; use zero_optimization.stage 1, 2 or 3"
        )
    if dims.tp > 1:
        assert mesh is not None
        apply_tensor_parallel(model, mesh["tp"])
    if config.activation_checkpointing:
        apply_activation_checkpointing(model)
    if dims.dp == 1:
        return model
    assert mesh is not None
    dp_mesh = mesh["dp"] if dims.tp > 1 else mesh
    if config.zero_stage == 0:
        return apply_ddp(model, dp_mesh, device, find_unused_parameters=config.ignore_unused_parameters)
    apply_fsdp(model, dp_mesh, ZeroStage(config.zero_stage), precision)
    return model
