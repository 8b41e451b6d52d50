"""A study as plain JSON data, to move it between databases (SQLite <-> PostgreSQL) without loss.

The archive holds the study's name, directions, metric names, user and system attributes,
and every trial: number, state, values, parameters with their distributions, intermediate
values, user and system attributes, start and completion times. Importing it into another
database yields a study whose own archive is identical.

Unfinished trials are exported as they are. On import a WAITING trial stays WAITING (the
next ``hpo optimize`` runs it); a RUNNING trial, whose process is not coming back, is
imported as FAIL with a note in ``hpo:error`` and continued by a new WAITING trial with
the same parameters, exactly as ``hpo optimize`` treats a trial whose worker died (it
resumes from the trial's checkpoint when that directory exists on this machine).
Checkpoint files are not part of the archive; only their paths are.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Mapping

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from hpo.exceptions import SpecError, StorageError, StudyNotFoundError
from hpo.execution import (
    CHECKPOINT_ATTR,
    CONTINUES_ATTR,
    ERROR_ATTR,
    RESUME_ATTR,
    SPEC_ATTR,
    continued_trial,
    enqueue_continuation,
)
from hpo.spec import check_study_name
from hpo.storage import create_storage, redact_url, require_database

__all__ = ["ARCHIVE_FORMAT", "export_study", "import_study"]

ARCHIVE_FORMAT = "hpo-study"
"""The ``format`` field of every archive; ``version`` counts incompatible changes."""
_VERSION = 1
_RUNNING_NOTE = "the trial was RUNNING when its study was exported; imported as FAIL and queued again"


def _without_password(attrs: dict[str, Any]) -> dict[str, Any]:
    """The study's attributes with the stored spec's database password hidden (an archive is
    shared; studies stored before specs were kept without it may still hold one)."""
    spec = attrs.get(SPEC_ATTR)
    if isinstance(spec, dict) and isinstance(spec.get("storage"), str):
        attrs = {**attrs, SPEC_ATTR: {**spec, "storage": redact_url(spec["storage"])}}
    return attrs


def export_study(study_name: str, storage_url: str) -> dict[str, Any]:
    """Everything stored about study ``study_name``, as JSON-serializable data.

    Non-finite values (``inf``, ``nan``) stay floats; ``json.dump`` writes them as
    ``Infinity``/``NaN``, which ``json.load`` reads back.

    Raises:
        StudyNotFoundError: No such study in that database.
        StorageError: The database cannot be read.
    """
    require_database(storage_url, study_name)
    storage = create_storage(storage_url)
    try:
        try:
            sid = storage.get_study_id_from_name(study_name)
        except KeyError:
            names = [s.study_name for s in storage.get_all_studies()]
            raise StudyNotFoundError(
                f"no study {study_name!r} in {redact_url(storage_url)} "
                f"(studies there: {', '.join(names) or 'none'})"
            ) from None
        return {
            "format": ARCHIVE_FORMAT,
            "version": _VERSION,
            "study_name": study_name,
            "directions": [d.name.lower() for d in storage.get_study_directions(sid)],
            "metric_names": optuna.load_study(study_name=study_name, storage=storage).metric_names,
            "user_attrs": _without_password(storage.get_study_user_attrs(sid)),
            "system_attrs": storage.get_study_system_attrs(sid),
            "trials": [_trial_to_json(t) for t in storage.get_all_trials(sid, deepcopy=False)],
        }
    except SQLAlchemyError as e:
        raise StorageError(f"cannot read {redact_url(storage_url)}: {e.__class__.__name__}") from None
    finally:
        storage.engine.dispose()


def import_study(
    archive: Mapping[str, Any],
    storage_url: str,
    *,
    study_name: str | None = None,
) -> optuna.Study:
    """Create a study in ``storage_url`` from an archive made by :func:`export_study`.

    Args:
        archive: The archive's data (``json.load`` of an exported file).
        storage_url: The database to create the study in.
        study_name: A new name for the study (default: the archived name).

    Returns:
        The new study. Nothing is left behind when the import fails half-way.

    Raises:
        SpecError: The archive is not an hpo study archive, a trial in it is malformed, the
            name is not a valid study name, or a study of that name already exists there.
        StorageError: The database cannot be reached.
    """
    directions = _check_header(archive)
    trials = [_trial_from_json(t, i) for i, t in enumerate(archive["trials"])]
    was_running = {trials[i].number for i, t in enumerate(archive["trials"]) if t["state"] == TrialState.RUNNING.name}
    trials.sort(key=lambda t: t.number)
    if [t.number for t in trials] != list(range(len(trials))):
        raise SpecError("trial numbers must be 0, 1, 2, ... without gaps or repeats", key="trials")
    name = study_name or archive["study_name"]
    try:
        check_study_name(name)
    except ValueError as e:
        raise SpecError(f"study name {e}", key="study_name") from None
    storage = create_storage(storage_url)
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        pass
    else:
        storage.engine.dispose()
        raise SpecError(
            f"study {name!r} already exists in {redact_url(storage_url)}; "
            "import it under another name (--study)", key="study_name"
        )
    study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    try:
        sid = storage.get_study_id_from_name(name)
        for key, value in dict(archive.get("system_attrs") or {}).items():
            storage.set_study_system_attr(sid, key, value)
        for key, value in dict(archive.get("user_attrs") or {}).items():
            if key == SPEC_ATTR and isinstance(value, dict):
                value = {**value, "name": name}  # the stored spec is the study's, renamed or not
            study.set_user_attr(key, value)
        if archive.get("metric_names") and study.metric_names != archive["metric_names"]:
            study.set_metric_names(list(archive["metric_names"]))
        study.add_trials(trials)
        # A trial exported in the moment between queuing its continuation and failing (or
        # after a crash there) is continued already.
        continued = {n for t in study.get_trials(deepcopy=False) if (n := continued_trial(t)) is not None}
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if t.number in was_running and t.number not in continued:
                enqueue_continuation(study, t, reason="running when exported", max_attempts=None)
    except BaseException as e:
        optuna.delete_study(study_name=name, storage=storage)
        if isinstance(e, SQLAlchemyError):
            raise StorageError(f"cannot write {redact_url(storage_url)}: {e.__class__.__name__}") from None
        if isinstance(e, ValueError):  # Study.add_trials rejected a trial (e.g. its times)
            raise SpecError(f"the archive has an invalid trial: {e}", key="trials") from None
        raise
    finally:
        storage.engine.dispose()
    return study


def _time(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _trial_to_json(t: FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "values": t.values,
        "datetime_start": _time(t.datetime_start),
        "datetime_complete": _time(t.datetime_complete),
        "params": t.params,
        "distributions": {k: json.loads(distribution_to_json(d)) for k, d in t.distributions.items()},
        "intermediate_values": {str(step): v for step, v in sorted(t.intermediate_values.items())},
        "user_attrs": t.user_attrs,
        "system_attrs": t.system_attrs,
    }


def _check_header(archive: Mapping[str, Any]) -> list[str]:
    if not isinstance(archive, Mapping) or archive.get("format") != ARCHIVE_FORMAT:
        raise SpecError(f'not an hpo study archive (no "format": "{ARCHIVE_FORMAT}")')
    if archive.get("version") != _VERSION:
        raise SpecError(
            f"archive version {archive.get('version')!r} is not supported (this hpo reads version {_VERSION})"
        )
    directions = archive.get("directions")
    if (
        not isinstance(directions, list)
        or not directions
        or any(d not in ("minimize", "maximize") for d in directions)
    ):
        raise SpecError(
            f"directions must be a list of 'minimize'/'maximize' (got {directions!r})", key="directions"
        )
    if not isinstance(archive.get("study_name"), str) or not isinstance(archive.get("trials"), list):
        raise SpecError("an archive needs a study_name and a list of trials")
    return directions


def _trial_from_json(data: Any, index: int) -> FrozenTrial:
    """The archived trial as a FrozenTrial ready for ``Study.add_trials``; RUNNING becomes FAIL."""
    number: Any = data.get("number", index) if isinstance(data, dict) else index
    try:
        number = int(number)
        state = TrialState[data["state"]]
        start, complete = _parse_time(data.get("datetime_start")), _parse_time(data.get("datetime_complete"))
        user_attrs = dict(data.get("user_attrs") or {})
        if state == TrialState.RUNNING:
            state, complete = TrialState.FAIL, start
            user_attrs[ERROR_ATTR] = _RUNNING_NOTE
        values = [float(v) for v in data["values"]] if data.get("values") is not None else None
        fields: dict[str, Any] = {
            "params": dict(data.get("params") or {}),
            "distributions": {
                k: json_to_distribution(json.dumps(v)) for k, v in (data.get("distributions") or {}).items()
            },
            "user_attrs": user_attrs,
            "system_attrs": dict(data.get("system_attrs") or {}),
            "intermediate_values": {
                int(k): float(v) for k, v in (data.get("intermediate_values") or {}).items()
            },
        }
        _check_marks(fields["system_attrs"], user_attrs)
        # create_trial checks values against the state and params against their distributions.
        optuna.trial.create_trial(state=state, values=values, **fields)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SpecError(f"trial {number}: {e}", key=f"trials[{index}]") from None
    return FrozenTrial(
        number=number,
        state=state,
        value=None,
        values=values,
        datetime_start=start,
        datetime_complete=complete,
        trial_id=-1,  # the database assigns one
        **fields,
    )


def _check_marks(system_attrs: dict[str, Any], user_attrs: dict[str, Any]) -> None:
    """The attributes hpo acts on later (continuation, checkpoint, resume point) are well formed."""
    mark = system_attrs.get(CONTINUES_ATTR)
    if mark is not None and not (isinstance(mark, dict) and _is_int(mark.get("trial"))):
        raise ValueError(f"{CONTINUES_ATTR} must be {{'trial': number, 'reason': text}}, got {mark!r}")
    for name, attrs in ((CHECKPOINT_ATTR, user_attrs), (RESUME_ATTR, system_attrs)):
        point = attrs.get(name)
        if point is not None and not (
            isinstance(point, dict) and _is_int(point.get("step")) and isinstance(point.get("path"), str)
        ):
            raise ValueError(f"{name} must be {{'step': number, 'path': text}}, got {point!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_time(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None
