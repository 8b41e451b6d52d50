"""Activation checkpointing: recompute each block's forward during backward."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint

from engine.errors import ConfigError
from engine.parallel._blocks import model_blocks

__all__ = ["apply_activation_checkpointing"]


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Run every block of ``model`` under ``torch.utils.checkpoint`` (non-reentrant).

    The block's ``forward`` is replaced on the instance instead of wrapping the block in
    another module, so parameter names (and therefore checkpoints) are the same with and
    without recomputation. Hooks added later (FSDP's) still run around the block.

    Raises:
        ConfigError: ``model`` exposes no blocks.
    """
    blocks = model_blocks(model)
    if not blocks:
        raise ConfigError(
            f"activation_checkpointing needs a model with blocks(); {type(model).__name__} defines none"
        )
    for block in blocks:
        block.forward = _checkpointed(block.forward)  # type: ignore[method-assign]


def _checkpointed(forward: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        # Costs one more forward per block in backward; saves its activations.
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run
