"""Global gradient norm and clipping for gradients that may be DTensors on different meshes.

``torch.nn.utils.clip_grad_norm_`` stacks per-parameter norms and fails when gradients
live on different meshes (e.g. 2-D dp x tp DTensors next to 1-D dp DTensors under
FSDP + tensor parallel). Here every rank sums the squares of its *local* gradient
tensors, each divided by how many ranks hold an identical copy of that local tensor, and
one all-reduce over the world adds the contributions up. The result (and therefore the
overflow decision derived from it) is identical on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

__all__ = ["clip_grads_", "global_grad_norm", "local_grads"]


def local_grads(parameters: Iterable[nn.Parameter]) -> list[torch.Tensor]:
    """The local tensors of all gradients (a DTensor's shard, or the plain gradient)."""
    grads = []
    for param in parameters:
        grad = param.grad
        if grad is not None:
            grads.append(grad.to_local() if isinstance(grad, DTensor) else grad)
    return grads


def _replicas(grad: torch.Tensor, world_size: int) -> int:
    """How many ranks hold a copy of this rank's local part of ``grad``."""
    if not isinstance(grad, DTensor):
        return world_size
    sharded = 1
    for dim, placement in enumerate(grad.placements):
        if placement.is_partial():
            raise ValueError(f"gradient with a Partial placement on mesh dim {dim}: {grad.placements}")
        if not placement.is_replicate():  # Shard, or the strided shard of FSDP over TP
            sharded *= grad.device_mesh.size(dim)
    return world_size // sharded


def global_grad_norm(parameters: Iterable[nn.Parameter], device: torch.device | None = None) -> torch.Tensor:
    """The L2 norm of all gradients over all ranks, as a 0-dim fp32 tensor on ``device``.

    Non-finite if any rank has a non-finite gradient. Collective when a process group
    exists: every rank must call it, and ``device`` must be one the backend reduces on (a
    rank without gradients otherwise has nothing to take the device from; default: the
    first gradient's, else the CPU).
    """
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    grads = [p.grad for p in parameters if p.grad is not None]
    if device is None:
        device = grads[0].device if grads else torch.device("cpu")
    total = torch.zeros((), dtype=torch.float32, device=device)
    by_replicas: dict[int, list[torch.Tensor]] = {}
    for grad in grads:
        local = grad.to_local() if isinstance(grad, DTensor) else grad
        by_replicas.setdefault(_replicas(grad, world_size), []).append(local)
    for replicas, tensors in by_replicas.items():
        norm = torch.nn.utils.get_total_norm(tensors, norm_type=2.0).to(device, torch.float32)
        total = total + norm.square() / replicas
    if world_size > 1:
        dist.all_reduce(total)
    return total.sqrt()


def clip_grads_(parameters: list[nn.Parameter], max_norm: float, total_norm: torch.Tensor) -> None:
    """Scale gradients in place so the global norm is at most ``max_norm``.

    Uses ``max_norm / (total_norm + 1e-6)`` clamped to 1, like ``clip_grad_norm_``.
    Plain gradients go through torch's foreach implementation; DTensor gradients are
    scaled through their local tensors (any mesh).
    """
    if max_norm <= 0 or math.isinf(max_norm):
        return
    plain = [p for p in parameters if p.grad is not None and not isinstance(p.grad, DTensor)]
    if plain:
        torch.nn.utils.clip_grads_with_norm_(plain, max_norm, total_norm)
    coef = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    for param in parameters:
        if isinstance(param.grad, DTensor):
            local = param.grad.to_local()
            local.mul_(coef.to(local.device, local.dtype))
