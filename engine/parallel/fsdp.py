"""ZeRO stages 1-3 with FSDP2 ``fully_shard``.

FSDP2 always keeps parameters, gradients and optimizer state sharded between iterations;
the stages differ in what stays unsharded *during* an iteration:

* stage 3: parameters are re-sharded after each block's forward (all-gathered again in
  backward) and gradients are reduce-scattered after every micro-batch;
* stage 2: parameters stay gathered from forward to the end of backward (no second
  all-gather) and gradients are reduce-scattered after every micro-batch;
* stage 1: as stage 2, but on accumulation micro-steps gradients are kept unsharded and
  reduced only at the boundary micro-batch (fewer collectives, full-size gradients).
"""

from __future__ import annotations

from enum import IntEnum

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard

from engine.parallel._blocks import model_blocks
from engine.precision import Precision

__all__ = ["ZeroStage", "apply_fsdp", "set_gradient_sync"]


class ZeroStage(IntEnum):
    """ZeRO stage as mapped onto FSDP2."""

    DDP = 0
    OPTIMIZER = 1
    GRADIENTS = 2
    PARAMETERS = 3

    @property
    def reshard_after_forward(self) -> bool:
        """Whether parameters are freed after forward and all-gathered again in backward."""
        return self is ZeroStage.PARAMETERS

    @property
    def syncs_every_micro_step(self) -> bool:
        """Whether gradients are reduce-scattered after every micro-batch."""
        return self >= ZeroStage.GRADIENTS


def apply_fsdp(model: nn.Module, dp_mesh: DeviceMesh, stage: ZeroStage, precision: Precision) -> None:
    """Shard each block of ``model``, then the root, over ``dp_mesh`` (in place).

    Blocks are separate FSDP units so only one block's full parameters need to exist at
    a time (stage 3); the root unit holds the rest (embeddings, head, norms).
    """
    for block in model_blocks(model):
        fully_shard(
            block,
            mesh=dp_mesh,
            reshard_after_forward=stage.reshard_after_forward,
            mp_policy=precision.mixed_precision_policy(root=False),
        )
    fully_shard(
        model,
        mesh=dp_mesh,
        reshard_after_forward=stage.reshard_after_forward,
        mp_policy=precision.mixed_precision_policy(root=True),
    )


def set_gradient_sync(model: nn.Module, stage: ZeroStage, *, boundary: bool) -> None:
    """Before a micro-batch: reduce its gradients now unless stage 1 defers to the boundary."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(boundary or stage.syncs_every_micro_step)
