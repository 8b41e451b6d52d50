"""Exceptions raised by the engine."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "LaunchError"]


class ConfigError(ValueError):
    """A training config is invalid, inconsistent or asks for something unsupported.

    The message names the offending key (as a dotted path) and the values involved.
    """


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: missing, incomplete, unreadable or for another model.

    Raised before anything is changed: the model, optimizer and RNG state are as they were.
    """


class LaunchError(RuntimeError):
    """A rank started by :func:`engine.launch` failed.

    Attributes:
        rank: The first rank that failed.
        traceback_text: The formatted traceback of that rank, or a description of
            how the process died when it left no traceback (e.g. a signal).
    """

    def __init__(self, rank: int, traceback_text: str) -> None:
        super().__init__(f"rank {rank} failed:\n{traceback_text}")
        self.rank = rank
        self.traceback_text = traceback_text
