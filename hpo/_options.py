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
        expected = _plain_type(params[name].annotation)
        if expected is not None and not _is(value, expected):
            raise KeyError_(f"{key}.{name}", f"must be {expected} for {cls.__name__} (got {value!r})")
    try:
        return cls(**fixed, **options)
    except ImportError as e:
        raise KeyError_(f"{key}.type", f"{cls.__name__} needs a package that is not installed: {e}") from None
    except (TypeError, ValueError) as e:
        raise KeyError_(key, f"invalid options for {cls.__name__} {options!r}: {e}") from None


def _plain_type(annotation: Any) -> str | None:
    """``"a boolean"`` / ``"a number"`` / ``"a number or null"`` for a constructor argument
    annotated as such (Optuna's are strings), None for anything else (not checked here)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = {p.strip() for p in re.split(r"[|,\[\]]", text.replace("Optional", "None|")) if p.strip()}
    if parts == {"bool"}:
        return "a boolean"
    if parts == {"bool", "None"}:
        return "a boolean or null"
    if parts and parts <= {"int", "float"}:
        return "a number"
    if parts and parts <= {"int", "float", "None"} and parts & {"int", "float"}:
        return "a number or null"
    return None


def _is(value: Any, expected: str) -> bool:
    if expected.startswith("a boolean"):
        return isinstance(value, bool) or (value is None and expected.endswith("null"))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number or (value is None and expected.endswith("null"))
