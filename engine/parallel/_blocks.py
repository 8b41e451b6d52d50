"""Finding the repeated blocks of a model (the units of FSDP sharding and recomputation)."""

from __future__ import annotations

from torch import nn

__all__ = ["model_blocks"]


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks: ``model.blocks()`` if defined, else an empty list.

    Models opt in by defining ``blocks() -> list[nn.Module]`` (GPT returns its
    transformer layers, MLPClassifier its hidden layers).
    """
    blocks = getattr(model, "blocks", None)
    if not callable(blocks):
        return []
    found = list(blocks())
    for block in found:
        if not isinstance(block, nn.Module):
            raise TypeError(f"{type(model).__name__}.blocks() must return modules, got {type(block).__name__}")
    return found
