"""Built-in training tasks that run without downloads: digits classification and a char LM."""

from __future__ import annotations

__all__ = ["char_lm", "digits"]
