"""Helpers that walk a raw config mapping, check types and name bad keys."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError

# Returns why a value of an unsupported key cannot be honoured, or None when the
# value is a no-op (e.g. ``offload_optimizer: {device: none}``) and may pass.
UnsupportedCheck = Callable[[Any], "str | None"]


def unsupported_if_truthy(reason: str) -> UnsupportedCheck:
    """An :data:`UnsupportedCheck` that rejects any truthy value with ``reason``."""
    return lambda value: reason if value else None


def unsupported_always(reason: str) -> UnsupportedCheck:
    """An :data:`UnsupportedCheck` that rejects every value with ``reason``."""
    return lambda value: reason


@dataclass(frozen=True, slots=True)
class Section:
    """The keys one mapping of the config may hold.

    Attributes:
        known: Keys the engine reads.
        ignored: Keys accepted because they only tune performance or logging; they are
            reported in one warning.
        unsupported: Keys that would change the training math; each maps to a check that
            returns the reason for rejecting its value, or None if the value is a no-op.
    """

    known: frozenset[str]
    ignored: frozenset[str] = frozenset()
    unsupported: Mapping[str, UnsupportedCheck] = field(default_factory=dict)

    def split(self, raw: Any, path: str, ignored_out: list[str]) -> dict[str, Any]:
        """Check ``raw`` against this section and return its known keys.

        Args:
            raw: The mapping found at ``path``.
            path: Dotted path of the mapping (``""`` for the top level).
            ignored_out: Receives the dotted paths of ignored keys.

        Returns:
            The items of ``raw`` whose keys are in :attr:`known`.

        Raises:
            ConfigError: ``raw`` is not a mapping, holds an unknown key, or an unsupported
                key with a value that is not a no-op.
        """
        where = path or "config"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}: {raw!r}")
        kept: dict[str, Any] = {}
        for key, value in raw.items():
            dotted = f"{path}.{key}" if path else str(key)
            if key in self.known:
                kept[key] = value
            elif key in self.ignored:
                ignored_out.append(dotted)
            elif key in self.unsupported:
                reason = self.unsupported[key](value)
                if reason is not None:
                    raise ConfigError(f"{dotted}={value!r} is not supported: {reason}")
            else:
                choices = sorted({*self.known, *self.ignored, *self.unsupported})
                raise ConfigError(unknown_key_message(dotted, str(key), choices))
        return kept


def unknown_key_message(dotted: str, key: str, choices: list[str]) -> str:
    """The message for an unknown key, with a difflib "did you mean" when one is close."""
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {choices}"
    return f"unknown config key {dotted!r}{hint}"


def as_int(value: Any, path: str, *, minimum: int | None = None) -> int:
    """``value`` as an int (bools rejected), optionally at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path} must be >= {minimum}, got {value}")
    return value


def as_float(value: Any, path: str, *, minimum: float | None = None) -> float:
    """``value`` as a float (ints accepted, bools rejected), optionally >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path} must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path} must be >= {minimum}, got {value}")
    return float(value)


def as_bool(value: Any, path: str) -> bool:
    """``value`` as a bool; only real booleans are accepted."""
    if not isinstance(value, bool):
        raise ConfigError(f"{path} must be true or false, got {value!r}")
    return value


def as_str(value: Any, path: str) -> str:
    """``value`` as a string."""
    if not isinstance(value, str):
        raise ConfigError(f"{path} must be a string, got {value!r}")
    return value
