"""Reading study files: safe YAML, ``include`` merging, and errors that name file, key and value."""

from __future__ import annotations

import difflib
import importlib
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from hpo.exceptions import SpecError
from hpo.spec._model import CategoricalParam, FloatParam, IntParam, KeyError_, StudySpec
from hpo.spec._space import apply_engine_params

__all__ = ["load_entrypoint", "load_spec", "spec_from_dict"]

_INCLUDE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_BUILTIN_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def load_spec(path: str | Path, *, check_entrypoint: bool = True, check_engine: bool | None = None) -> StudySpec:
    """Read, merge and validate a study file.

    Args:
        path: The YAML study file.
        check_entrypoint: Also import the trial entrypoint to make sure it exists.
        check_engine: Also let the engine validate the engine config (it imports torch,
            about 2 s; commands that only read a study's results skip it). Default:
            ``check_entrypoint``.

    Returns:
        The validated, immutable spec.

    Raises:
        SpecError: The file is missing, is not safe YAML, or any key is invalid.
    """
    path = Path(path)
    raw, root = _read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(f"a study file must be a mapping of keys (got {type(raw).__name__})", file=str(path))
    raw = dict(raw)
    space = raw.get("search_space")
    if isinstance(space, dict) and "include" in space:
        raw["search_space"] = _merge_includes(space, path, root)
    return spec_from_dict(
        raw, file=str(path), yaml_root=root, check_entrypoint=check_entrypoint, check_engine=check_engine
    )


def spec_from_dict(
    data: Mapping[str, Any],
    *,
    file: str | None = None,
    yaml_root: yaml.Node | None = None,
    check_entrypoint: bool = True,
    check_engine: bool | None = None,
) -> StudySpec:
    """Validate a study given as a dict (the Python twin of :func:`load_spec`).

    Raises:
        SpecError: Any key is invalid; the message names the key path and the value.
    """
    try:
        spec = StudySpec.model_validate(dict(data))
    except ValidationError as e:
        raise _to_spec_error(e, data, file, yaml_root) from None
    from hpo.pruning import create_pruner
    from hpo.sampling import create_sampler
    from hpo.storage import check_url

    try:
        check_url(spec.storage_url)
    except SpecError as e:
        raise SpecError(e.message, file=file, key="storage", line=_line_of(yaml_root, ["storage"])) from None
    try:
        create_sampler(spec)
        create_pruner(spec)
        if check_entrypoint:
            load_entrypoint(spec.trial.entrypoint)
        if check_entrypoint if check_engine is None else check_engine:
            _check_engine_config(spec)
    except KeyError_ as e:
        raise SpecError(str(e), file=file, key=e.key, line=_line_of(yaml_root, e.key.split("."))) from None
    return spec


def error_in_file(message: str, path: str | Path, key: str | None) -> SpecError:
    """A SpecError for what the study file at ``path`` says at ``key`` (refused after loading,
    e.g. by the database), with the key's line when the file still reads."""
    line = None
    if key:
        try:
            line = _line_of(_read_yaml(Path(path))[1], key.split("."))
        except SpecError:
            pass
    return SpecError(message, file=str(path), key=key, line=line)


def load_entrypoint(entrypoint: str) -> Callable[..., Any]:
    """Import ``package.module:function`` (never ``eval``) and return the function.

    Raises:
        KeyError_: The module does not import or has no such callable.
    """
    module_name, _, fn_name = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's input problem
        raise KeyError_("trial.entrypoint", f"cannot import {module_name!r}: {e}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise KeyError_("trial.entrypoint", f"module {module_name!r} has no function {fn_name!r}")
    return fn


def _check_engine_config(spec: StudySpec) -> None:
    """Let the engine validate the static part of the trial's engine config, and each
    ``engine.*`` search-space parameter at its bounds or choices."""
    try:
        from engine.config import validate_config
    except ImportError:
        return
    cfg = dict(spec.trial.engine)
    try:
        validate_config(cfg, world_size=spec.trial.resources.workers)
    except ValueError as e:
        raise KeyError_("trial.engine", str(e)) from None
    for name, param in spec.search_space.items():
        if not name.startswith("engine."):
            continue
        for value in getattr(param, "choices", None) or [param.low, _top(param)]:
            try:
                validate_config(apply_engine_params(cfg, {name: value}), world_size=spec.trial.resources.workers)
            except ValueError as e:
                raise KeyError_(f"search_space.{name}", f"{e} (with {name} = {value!r})") from None


def _top(param: Any) -> float:
    """The highest value a stepped parameter can take (``high`` may lie off its grid)."""
    step = getattr(param, "step", None)
    if not step:
        return param.high
    if isinstance(param.low, int) and isinstance(step, int):
        return param.low + (param.high - param.low) // step * step
    low, high, q = (Decimal(str(v)) for v in (param.low, param.high, step))  # as Optuna rounds it
    return float(low + (high - low) // q * q)


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=str(path)) from None
    except OSError as e:
        raise SpecError(f"cannot read file: {e.strerror}", file=str(path)) from None
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r})", file=str(path)) from None
    try:
        # safe_load never constructs Python objects: `!!python/object` tags are rejected.
        data, root = yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(
            f"not valid YAML: {problem}",
            file=str(path),
            line=mark.line + 1 if mark else None,
        ) from None
    _refuse_duplicate_keys(root, path)
    return data, root


def _refuse_duplicate_keys(node: yaml.Node | None, path: Path, where: str = "") -> None:
    """YAML lets a later key silently replace an earlier one; a study file may not."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name in seen:
                raise SpecError(
                    f"duplicate key {name!r} (first at line {seen[name]}): the first would be ignored",
                    file=str(path), key=where + name, line=key.start_mark.line + 1,
                )
            if name is not None:
                seen[name] = key.start_mark.line + 1
            _refuse_duplicate_keys(value, path, f"{where}{name}." if name is not None else where)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, path, where)


def _merge_includes(space: dict[str, Any], path: Path, root: yaml.Node | None) -> dict[str, Any]:
    includes = space.pop("include")
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        raise SpecError(
            f"must be a list of search-space names (got {includes!r})",
            file=str(path),
            key="search_space.include",
            line=_line_of(root, ["search_space", "include"]),
        )
    merged: dict[str, Any] = {}
    for name in includes:
        merged.update(_read_include(name, path, root))
    merged.update(space)  # the study's own entries override included ones
    return merged


def _read_include(name: Any, study_path: Path, root: yaml.Node | None) -> dict[str, Any]:
    key, line = "search_space.include", _line_of(root, ["search_space", "include"])
    if not isinstance(name, str) or not _INCLUDE_RE.match(name):
        raise SpecError(
            f"a search-space name is letters, digits, '_' or '-' (got {name!r})",
            file=str(study_path),
            key=key,
            line=line,
        )
    here = study_path.resolve().parent
    dirs = [here / "search_spaces", here.parent / "search_spaces", Path.cwd() / "search_spaces", _BUILTIN_SPACES]
    for d in dirs:
        candidate = d / f"{name}.yaml"
        if candidate.is_file():
            break
    else:
        searched = ", ".join(dict.fromkeys(str(d) for d in dirs))
        raise SpecError(f"search space {name!r} not found (looked in {searched})", file=str(study_path), key=key, line=line)
    data, inc_root = _read_yaml(candidate)
    if not isinstance(data, dict):
        raise SpecError("a search-space file must be a mapping of parameters", file=str(candidate))
    for pname, pdef in data.items():
        try:
            model = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam}.get(
                pdef.get("type") if isinstance(pdef, dict) else None
            )
            if model is None:
                raise SpecError(
                    f"a parameter needs type float, int or categorical (got {pdef!r})",
                    file=str(candidate),
                    key=pname,
                    line=_line_of(inc_root, [pname]),
                )
            model.model_validate(pdef)
        except ValidationError as e:
            raise _to_spec_error(e, data, str(candidate), inc_root, prefix=(pname,)) from None
    return data


def _to_spec_error(
    err: ValidationError,
    data: Any,
    file: str | None,
    root: yaml.Node | None,
    prefix: tuple[str, ...] = (),
) -> SpecError:
    """The first validation error, as one readable message."""
    e = err.errors()[0]
    loc = list(prefix) + [str(p) for p in e["loc"]]
    # Discriminated unions put the tag ("float", "int", ...) into the path: drop it.
    if len(loc) > 2 and loc[0] == "search_space" and loc[2] in ("float", "int", "categorical"):
        del loc[2]
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, KeyError_):
        loc = cause.key.split(".") if "." in cause.key else loc + [cause.key]
        msg = str(cause)
    elif e["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}" + _did_you_mean(loc[-1], _allowed_keys(loc[:-1]))
    elif e["type"] == "missing":
        msg = "required key is missing"
    elif e["type"] == "union_tag_invalid":
        msg = f"type must be float, int or categorical (got {_get(data, loc + ['type'])!r})"
        loc = loc + ["type"]
    elif e["type"] == "literal_error":
        msg = f"{e['msg'].lower()} (got {e['input']!r})"
        expected = (e.get("ctx") or {}).get("expected", "")
        msg += _did_you_mean(str(e["input"]), re.findall(r"'([^']+)'", expected))
    else:
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] != "value_error":
            msg += f" (got {e['input']!r})"
    return SpecError(msg, file=file, key=".".join(loc) or None, line=_line_of(root, loc))


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = StudySpec
    for part in loc:
        if model is StudySpec and part == "search_space":
            return sorted(set(FloatParam.model_fields) | set(IntParam.model_fields) | set(CategoricalParam.model_fields))
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            # Inside a search-space parameter: the union of the parameter models' keys.
            return sorted(set(FloatParam.model_fields) | set(IntParam.model_fields) | set(CategoricalParam.model_fields))
        model = field.annotation
        if hasattr(model, "__args__"):  # X | None
            model = next((a for a in model.__args__ if isinstance(a, type) and issubclass(a, BaseModel)), model)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _get(data: Any, loc: list[str]) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


def _line_of(root: yaml.Node | None, loc: list[str]) -> int | None:
    """1-based line of the key path ``loc`` in a composed YAML document."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            return line
    return line
