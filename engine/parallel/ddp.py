"""ZeRO stage 0: replicate everything, all-reduce gradients with DDP."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.nn.parallel import DistributedDataParallel

__all__ = ["apply_ddp"]


def apply_ddp(
    model: nn.Module, dp_mesh: DeviceMesh, device: torch.device, *, find_unused_parameters: bool = False
) -> DistributedDataParallel:
    """Wrap ``model`` in DDP over the ranks of ``dp_mesh``.

    Gradient buckets are views of the gradients (no second copy). Callers skip the
    all-reduce on accumulation micro-steps by running the forward under ``no_sync()``.
    ``find_unused_parameters`` lets a step leave some parameters without a gradient (as
    DeepSpeed's stage 0 does), for a walk of the autograd graph and a copy of the outputs
    after each forward (benchmarks/engine_ddp_step_time.py), so it is not the default.
    """
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        process_group=dp_mesh.get_group(),
        gradient_as_bucket_view=True,
        find_unused_parameters=find_unused_parameters,
    )
