"""Passing validated ``key: value`` options from a study file to an Optuna constructor."""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any, Callable

from hpo.spec._model import KeyError_

__all__ = ["construct"]


def construct(cls: Callable[..., Any], options: dict[str, Any], key: str, fixed: dict[str, Any]) -> Any:
    """Call ``cls(**fixed, **options)``, naming the bad key when an option is unknown or invalid.

    Only plain-data keyword arguments of the constructor are accepted from a file; callables
    (``gamma``, ``constraints_func``...) stay a Python-API matter.
    """
    params = inspect.signature(cls).parameters
    accepted = [n for n in params if n not in ("self", "args", "kwargs") and n not in fixed]
    for name, value in options.items():
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; accepted: {', '.join(accepted)}"
            raise KeyError_(f"{key}.{name}", f"unknown option {name!r} for {cls.__name__}{hint}")
        kind = _plain_kind(params[name].annotation)
        if kind is not None and not _fits(value, *kind):
            nullable = " or null" if kind[1] else ""
            raise KeyError_(f"{key}.{name}", f"must be a {kind[0]}{nullable} for {cls.__name__} (got {value!r})")
    try:
        return cls(**fixed, **options)
    except ImportError as e:
        raise KeyError_(f"{key}.type", f"{cls.__name__} needs a package that is not installed: {e}") from None
    except (TypeError, ValueError) as e:
        raise KeyError_(key, f"invalid options for {cls.__name__} {options!r}: {e}") from None


def _plain_kind(annotation: Any) -> tuple[str, bool] | None:
    """``("boolean" | "number", whether null is allowed)`` for a constructor argument annotated
    as such (Optuna's annotations are strings); None for anything else (not checked here)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = {p.strip() for p in re.split(r"[|,\[\]]", text.replace("Optional", "None|")) if p.strip()}
    nullable = "None" in parts
    parts.discard("None")
    if parts == {"bool"}:
        return "boolean", nullable
    if parts and parts <= {"int", "float"}:
        return "number", nullable
    return None


def _fits(value: Any, kind: str, nullable: bool) -> bool:
    if value is None:
        return nullable
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)
