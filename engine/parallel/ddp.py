"""ZeRO stage 0: replicate everything, all-reduce gradients with DDP."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.nn.parallel import DistributedDataParallel

__all__ = ["apply_ddp"]


def apply_ddp(model: nn.Module, dp_mesh: DeviceMesh, device: torch.device) -> DistributedDataParallel:
    """Wrap ``model`` in DDP over the ranks of ``dp_mesh``.

    Gradient buckets are views of the gradients (no second copy). Callers skip the
    all-reduce on accumulation micro-steps by running the forward under ``no_sync()``.
    """
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        process_group=dp_mesh.get_group(),
        gradient_as_bucket_view=True,
    )
