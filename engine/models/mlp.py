"""A multi-layer perceptron classifier (e.g. sklearn digits: 64 features, 10 classes)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPClassifier"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLPClassifier(nn.Module):
    """``n_layers`` hidden blocks of Linear -> activation -> Dropout, then a linear head.

    Args:
        in_features: Input features per sample.
        hidden: Width of every hidden layer.
        n_classes: Number of output logits.
        dropout: Dropout probability after each activation.
        activation: ``"relu"``, ``"gelu"`` or ``"tanh"``.
        n_layers: Number of hidden blocks (>= 1).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        n_classes: int,
        dropout: float = 0.0,
        activation: str = "relu",
        n_layers: int = 1,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation=}")
        if n_layers < 1 or in_features < 1 or hidden < 1 or n_classes < 1:
            raise ValueError(f"sizes must be >= 1, got {in_features=}, {hidden=}, {n_classes=}, {n_layers=}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout=}")
        widths = [in_features] + [hidden] * n_layers
        self.hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(w_in, w_out), _ACTIVATIONS[activation](), nn.Dropout(dropout))
            for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, n_classes)`` for ``x`` of shape ``(batch, in_features)``."""
        for block in self.hidden:
            x = block(x)
        return self.head(x)

    def blocks(self) -> list[nn.Module]:
        """The hidden blocks (units of sharding and activation checkpointing)."""
        return list(self.hidden)

    def flops_per_sample(self) -> float:
        """Training FLOPs per sample: 6 per weight (forward 2, backward 4)."""
        return 6.0 * sum(p.numel() for p in self.parameters() if p.dim() > 1)
