"""The one exception hierarchy of `hpo`.

Every error a user can cause by their input is a :class:`SpecError` (exit code 2 on the
command line); everything that goes wrong while a study runs is an :class:`HpoError`
(exit code 1).
"""

from __future__ import annotations

from optuna.exceptions import TrialPruned

__all__ = ["HpoError", "SpecError", "StorageError", "StudyNotFoundError", "TrialPruned"]


class HpoError(Exception):
    """Base class of every error raised by `hpo`."""


class SpecError(HpoError, ValueError):
    """A study file, a flag or an argument is invalid.

    Args:
        message: What is wrong, including the offending value.
        file: The file the bad input came from, if any.
        key: The dotted key path inside that file, e.g. ``search_space.lr.low``.
        line: 1-based line of ``key`` in ``file``, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class StorageError(HpoError):
    """The study database cannot be reached or used."""


class StudyNotFoundError(HpoError):
    """No study of that name exists in the given storage."""
