"""Models for the built-in tasks; they hold no distributed code."""

from __future__ import annotations

from engine.models.gpt import GPT, GPTConfig
from engine.models.mlp import MLPClassifier

__all__ = ["GPT", "GPTConfig", "MLPClassifier"]
