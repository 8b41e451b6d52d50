"""Pruners: options, what each one stops, decisions across concurrent trials, and promotion."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import hpo
from hpo.execution import CHECKPOINT_ATTR, CONTINUES_ATTR, PROMOTED, PROMOTED_AT_END, RESUME_ATTR
from hpo.pruning import PromotingASHAPruner, create_pruner
from hpo.reporting import Progress
from hpo.tasks.synthetic import TRAINED_STEPS_FILE, curve_value

REPO = Path(__file__).resolve().parents[2]
GOOD = {"quality": 0.9, "tau": 3.0}
BAD = {"quality": 0.1, "tau": 3.0}
SPACE = {
    "quality": {"type": "float", "low": 0.0, "high": 1.0},
    "tau": {"type": "float", "low": 0.5, "high": 10.0},
    "decline": {"type": "float", "low": 0.0, "high": 0.1},
}


def _spec(tmp_path: Path, pruner: dict[str, Any], **top: Any) -> hpo.StudySpec:
    data: dict[str, Any] = {
        "name": "p",
        "storage": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "direction": "maximize",
        "metric": "score",
        "sampler": {"type": "random", "seed": 0},
        "pruner": pruner,
        "n_trials": 2,
        "run_dir": str(tmp_path / "runs"),
        "executor": {"isolation": "thread"},
        "trial": {"entrypoint": "hpo.tasks.synthetic:resumable_curve", "max_epochs": 8},
        "search_space": SPACE,
    }
    data.update(top)
    return hpo.spec_from_dict(data)


def _run(spec: hpo.StudySpec, *params: dict[str, float]) -> list[optuna.trial.FrozenTrial]:
    """Run ``spec`` with its first trials' parameters fixed to ``params``, in that order."""
    first = optuna.create_study(study_name=spec.name, storage=spec.storage_url, direction="maximize")
    for p in params:
        first.enqueue_trial({"decline": 0.0, **p})
    return hpo.optimize(spec, progress=Progress()).trials


def _trained(tmp_path: Path, number: int) -> list[int]:
    return [int(s) for s in (tmp_path / "runs" / f"trial_{number}" / TRAINED_STEPS_FILE).read_text().split()]


@pytest.mark.parametrize(
    ("pruner", "key", "fragment"),
    [
        ({"type": "asha", "reduction_factor": 1}, "pruner.reduction_factor", ">= 2 (got reduction_factor=1)"),
        ({"type": "hyperband", "reduction_factor": 1}, "pruner.reduction_factor", "got reduction_factor=1"),
        ({"type": "percentile", "percentile": 150}, "pruner.percentile", "[0, 100] (got percentile=150)"),
        ({"type": "percentile"}, "pruner.percentile", "needs percentile"),
        ({"type": "median", "n_startup_trials": 1.5}, "pruner.n_startup_trials", "got n_startup_trials=1.5"),
        ({"type": "median", "interval_steps": 0}, "pruner.interval_steps", "got interval_steps=0"),
        ({"type": "hyperband", "min_resource": 20}, "pruner.min_resource", "max_resource=8"),
        ({"type": "threshold"}, "pruner.lower", "lower, upper or both"),
        ({"type": "threshold", "lower": 2, "upper": 1}, "pruner.upper", "greater than lower"),
        (
            {"type": "patience", "wrapped": {"type": "percentile", "percentile": -1}},
            "pruner.wrapped.percentile",
            "got percentile=-1",
        ),
        ({"type": "patience", "wrapped": {"type": "asha_promote"}}, "pruner.wrapped.type", "be wrapped"),
        ({"type": "wilcoxon", "p_threshold": 2}, "pruner.p_threshold", "[0, 1]"),
        ({"type": "asha", "min_resource": 9}, "pruner.min_resource", "no trial would ever be stopped"),
        ({"type": "asha_promote", "min_resource": 8}, "pruner.min_resource", "not before the last step (8)"),
        ({"type": "asha_promote", "bootstrap_count": 1}, "pruner.bootstrap_count", "unknown option"),
    ],
)
def test_bad_pruner_options_name_their_key_and_line(write_study, pruner, key, fragment) -> None:
    trial = {"entrypoint": "hpo.tasks.synthetic:curve", "max_epochs": 8}
    path = write_study({"pruner": pruner, "trial": trial})
    with pytest.raises(hpo.SpecError) as e:
        hpo.load_spec(path)
    assert e.value.key == key and fragment in str(e.value)
    # The line is the option's own, or the pruner's when the option is missing.
    text = path.read_text()
    option = key.rsplit(".", 1)[-1]
    assert e.value.line is not None
    assert (f"{option}:" if f"{option}:" in text else "pruner:") in text.splitlines()[e.value.line - 1]


def test_asha_promote_needs_checkpoints_and_takes_max_resource_from_max_epochs(tmp_path) -> None:
    assert create_pruner(_spec(tmp_path, {"type": "asha_promote", "reduction_factor": 2})).rungs == [1, 2, 4]
    assert create_pruner(_spec(tmp_path, {"type": "asha_promote", "max_resource": 7})).rungs == [1, 3]
    with pytest.raises(hpo.SpecError, match="max_resource: must be <= trial.max_epochs"):
        _spec(tmp_path, {"type": "asha_promote", "max_resource": 9})  # rung 9 would be past step 8
    with pytest.raises(hpo.SpecError, match="checkpoints.enabled is false"):
        _spec(tmp_path, {"type": "asha_promote"}, checkpoints={"enabled": False})
    with pytest.raises(ValueError, match="reduction_factor=1"):
        PromotingASHAPruner(max_resource=8, reduction_factor=1)


@pytest.mark.parametrize(
    ("pruner", "bad"),
    [
        ({"type": "median", "n_startup_trials": 1}, BAD),
        ({"type": "percentile", "percentile": 25.0, "n_startup_trials": 1}, BAD),
        ({"type": "successive_halving", "min_resource": 1, "reduction_factor": 2}, BAD),
        ({"type": "asha", "min_resource": 2, "reduction_factor": 3}, BAD),
        ({"type": "threshold", "lower": 0.2}, BAD),
        ({"type": "wilcoxon", "p_threshold": 0.1}, BAD),
        # Improves a little, then falls: patience stops it once it has not improved for a step.
        (
            {"type": "patience", "patience": 1, "wrapped": {"type": "median", "n_startup_trials": 1}},
            {"quality": 0.1, "tau": 0.5, "decline": 0.05},
        ),
    ],
    ids=lambda v: v["type"] if "type" in v else "",
)
def test_each_pruner_stops_a_bad_trial_and_keeps_a_good_one(tmp_path, pruner, bad) -> None:
    good, worse = _run(_spec(tmp_path, pruner), GOOD, bad)
    assert good.state == TrialState.COMPLETE and good.last_step == 8
    assert worse.state == TrialState.PRUNED and worse.last_step < 8
    assert _trained(tmp_path, worse.number) == list(range(1, worse.last_step + 1))


def test_asha_promote_pauses_until_a_rung_fills_and_promotes_the_best_once_the_budget_is_spent(tmp_path) -> None:
    """Rungs end at steps 1, 2 and 4 (eta 2, max 8)."""
    spec = _spec(tmp_path, {"type": "asha_promote", "min_resource": 1, "reduction_factor": 2}, n_trials=3)
    trials = _run(spec, GOOD, BAD, BAD)
    # Alone at step 1 the good trial is paused (ASHA promotes floor(n / eta) of a rung's n
    # trials); each bad one is paused there as the worse of the rung.
    assert [(t.state, t.last_step) for t in trials[:3]] == [(TrialState.PRUNED, 1)] * 3
    promoted, last = trials[3:]
    # The second trial filled the rung: the good one resumed, and was paused alone at step 2.
    assert promoted.system_attrs[CONTINUES_ATTR] == {"trial": 0, "reason": PROMOTED}
    assert (promoted.state, promoted.last_step) == (TrialState.PRUNED, 2)
    # With the budget spent no trial will come to fill that rung: the best of each goes on.
    assert last.system_attrs[CONTINUES_ATTR] == {"trial": promoted.number, "reason": PROMOTED_AT_END}
    assert (last.state, last.last_step) == (TrialState.COMPLETE, 8)
    assert _trained(tmp_path, 0) == [1] and _trained(tmp_path, last.number) == list(range(3, 9))
    assert all(_trained(tmp_path, n) == [1] for n in (1, 2))


def test_no_pruner_runs_every_trial_to_the_end(tmp_path) -> None:
    trials = _run(_spec(tmp_path, {"type": "none"}), GOOD, BAD)
    assert [(t.state, t.last_step) for t in trials] == [(TrialState.COMPLETE, 8)] * 2


def test_hyperband_stops_bad_trials_within_their_bracket(tmp_path) -> None:
    spec = _spec(tmp_path, {"type": "hyperband", "min_resource": 1, "reduction_factor": 3}, n_trials=6)
    trials = _run(spec, GOOD, BAD, BAD, BAD, BAD, BAD)
    assert trials[0].state == TrialState.COMPLETE and trials[0].last_step == 8
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["quality"] == BAD["quality"] and t.last_step < 8 for t in pruned)


def lockstep_curve(ctx: Any) -> dict[str, float]:
    """``resumable_curve``'s values, two trials in lockstep: the good one reports each step first.

    The bad trial reports step ``s`` only once the good one has reported it, and the good one
    goes on to ``s + 1`` only once the bad one has reported ``s`` or stopped: both run at once.
    """
    sync = Path(ctx.run_dir).parent / "sync"
    sync.mkdir(parents=True, exist_ok=True)
    me, other = ("good", "bad") if ctx.params["quality"] > 0.5 else ("bad", "good")
    value = 0.0
    try:
        for step in range(1, ctx.max_epochs + 1):
            if me == "bad":
                _wait(sync / f"good_{step}")
            elif step > 1:
                _wait(sync / f"bad_{step - 1}", sync / "bad_stopped")
            value = curve_value(float(ctx.params["quality"]), step)
            ctx.report(value, step)
            (sync / f"{me}_{step}").touch()
    finally:
        (sync / f"{me}_stopped").touch()
    return {"score": value}


def _wait(*paths: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {paths[0].name} after {timeout}s")
        time.sleep(0.01)


@pytest.mark.parametrize("kind", ["asha", "asha_promote"])
def test_concurrent_trials_are_judged_on_each_others_reports(tmp_path, kind) -> None:
    spec = _spec(
        tmp_path,
        {"type": kind, "min_resource": 1, "reduction_factor": 2},
        concurrency=2,
        trial={"entrypoint": "tests.hpo.test_pruning:lockstep_curve", "max_epochs": 8},
    )
    good, bad = _run(spec, GOOD, BAD)
    # Alone at step 1 the bad trial would be the best so far and go on; it was stopped there
    # on the good trial's report, read from the database while the good trial still ran (the
    # good trial reports step 2 only after the bad one has reported step 1).
    assert bad.state == TrialState.PRUNED and bad.last_step == 1
    assert good.state == TrialState.COMPLETE and good.last_step == 8
    assert good.datetime_start < bad.datetime_complete and bad.datetime_start < good.datetime_complete


def test_paused_trial_is_promoted_and_resumes_from_its_checkpoint(tmp_path) -> None:
    """Rungs end at steps 2 and 4 (eta 2, max 8); a slow starter is paused, then promoted.

    The fast starter is promoted first, from step 2 to step 4, where it waits for a second
    trial; the slow one, promoted next, overtakes it there and goes on to the end.
    """
    fast, slow = {"quality": 0.5, "tau": 1.0}, {"quality": 0.9, "tau": 4.0}
    bad1, bad2 = {"quality": 0.1, "tau": 1.0}, {"quality": 0.2, "tau": 1.0}
    spec = _spec(tmp_path, {"type": "asha_promote", "min_resource": 2, "reduction_factor": 2}, n_trials=5)
    trials = _run(spec, fast, slow, bad1, bad2)
    paused = trials[1]
    assert paused.state == TrialState.PRUNED and paused.last_step == 2
    assert paused.user_attrs[CHECKPOINT_ATTR]["step"] == 2
    (cont,) = [t for t in trials if t.system_attrs.get(CONTINUES_ATTR, {}).get("trial") == paused.number]
    assert cont.system_attrs[CONTINUES_ATTR]["reason"] == "promoted"
    assert cont.number == 5 and cont.params == paused.params
    assert cont.system_attrs[RESUME_ATTR]["step"] == 2
    # Trained on from step 2 to the end, through the rung at step 4, not pruned again.
    assert cont.state == TrialState.COMPLETE and cont.last_step == 8
    assert cont.user_attrs["hpo:metrics"]["steps"] == 8 and cont.user_attrs["hpo:metrics"]["first_step"] == 3
    before, after = _trained(tmp_path, paused.number), _trained(tmp_path, cont.number)
    assert before == [1, 2] and after == [3, 4, 5, 6, 7, 8]
    # The continuation's curve is the paused trial's, continued: no restart.
    curve = [cont.intermediate_values[s] for s in range(1, 9)]
    assert curve == [pytest.approx(curve_value(0.9, n, 4.0)) for n in range(1, 9)]
    assert all(a < b for a, b in zip(curve, curve[1:]))
    assert [paused.intermediate_values[s] for s in (1, 2)] == [cont.intermediate_values[s] for s in (1, 2)]
    fast_cont = trials[4]
    assert fast_cont.system_attrs[CONTINUES_ATTR]["trial"] == 0 and fast_cont.state == TrialState.PRUNED
    assert fast_cont.last_step == 4 and fast_cont.intermediate_values[4] < cont.intermediate_values[4]
    # Promotions do not count as finished trials: 5 lineages, 7 trials.
    assert len(trials) == 7 and [t.number for t in trials if CONTINUES_ATTR in t.system_attrs] == [4, 5]


def test_trials_curves_include_pruned_trials(tmp_path) -> None:
    spec = _spec(tmp_path, {"type": "median", "n_startup_trials": 1})
    _run(spec, GOOD, BAD)
    out = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "hpo.cli", "trials", "p", "--storage", spec.storage_url, "--curves"]
        + ["--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = {r["number"]: r for r in json.loads(out.stdout)}
    assert rows[1]["state"] == "PRUNED" and list(rows[1]["curve"]) == ["1"]
    assert rows[1]["curve"]["1"] == pytest.approx(curve_value(0.1, 1))
    assert rows[0]["state"] == "COMPLETE" and len(rows[0]["curve"]) == 8


# The promoting pruner on hand-made studies: rung edges at steps 2 and 4 (eta 2, max 8).

_DIST = {"quality": FloatDistribution(0.0, 1.0)}


def _add(
    study: optuna.Study,
    values: dict[int, float],
    *,
    state: TrialState = TrialState.PRUNED,
    checkpoint: Path | None = None,
    checkpoint_step: int | None = None,
    continues: int | None = None,
) -> optuna.trial.FrozenTrial:
    user: dict[str, Any] = {}
    if checkpoint is not None:
        checkpoint.mkdir(parents=True, exist_ok=True)
        user[CHECKPOINT_ATTR] = {"step": checkpoint_step or max(values), "path": str(checkpoint)}
    system = {CONTINUES_ATTR: {"trial": continues, "reason": "promoted"}} if continues is not None else {}
    study.add_trial(
        create_trial(
            state=state,
            value=values[max(values)] if state == TrialState.COMPLETE else None,
            params={"quality": 0.5},
            distributions=_DIST,
            intermediate_values=values,
            user_attrs=user,
            system_attrs=system,
        )
    )
    return study.get_trials(deepcopy=False)[-1]


def _pruner() -> PromotingASHAPruner:
    return PromotingASHAPruner(max_resource=8, min_resource=2, reduction_factor=2)


def test_continuation_is_not_judged_again_at_the_rung_it_was_promoted_from(tmp_path) -> None:
    study = optuna.create_study(direction="maximize")
    paused = _add(study, {1: 0.1, 2: 0.3}, checkpoint=tmp_path / "p")
    for v in (0.5, 0.6, 0.7, 0.8):  # arrived later: at step 2 the paused trial now ranks last
        _add(study, {1: v, 2: v, 3: v, 4: v}, state=TrialState.COMPLETE)
    cont = _add(study, {1: 0.1, 2: 0.3, 3: 0.35}, state=TrialState.RUNNING, continues=paused.number)
    pruner = _pruner()
    assert not pruner.prune(study, cont)
    # At step 4 it is judged at that rung, among the five lineages that reached it.
    at4 = copy.deepcopy(cont)
    at4.intermediate_values = {**cont.intermediate_values, 4: 0.4}
    assert pruner.prune(study, at4)  # 0.4 is not among the best 2 of 5
    at4.intermediate_values = {**cont.intermediate_values, 4: 0.75}
    assert not pruner.prune(study, at4)  # 0.75 is
    assert pruner.next_promotion(study) is None  # already continued: never promoted twice


def test_lineage_counts_once_and_only_checkpointed_rung_pauses_are_promoted(tmp_path) -> None:
    study = optuna.create_study(direction="maximize")
    _add(study, {1: 0.9, 2: 0.9}, state=TrialState.COMPLETE)
    parent = _add(study, {1: 0.8, 2: 0.8}, checkpoint=tmp_path / "a")
    _add(study, {1: 0.8, 2: 0.8, 3: 0.85}, state=TrialState.RUNNING, continues=parent.number)
    unsaved = _add(study, {1: 0.6, 2: 0.6})  # no checkpoint: cannot resume
    target = _add(study, {1: 0.5, 2: 0.5}, checkpoint=tmp_path / "b")
    for i, v in enumerate((0.1, 0.05)):
        _add(study, {1: v, 2: v}, checkpoint=tmp_path / f"w{i}")
    # Six lineages reached step 2 (the continuation shares its parent's), so the best three
    # are promotable: 0.9 (complete), 0.8 (continued) and 0.6, which has no checkpoint.
    pruner = _pruner()
    assert pruner.next_promotion(study) is None
    _add(study, {1: 0.01, 2: 0.01}, checkpoint=tmp_path / "w2")
    _add(study, {1: 0.02, 2: 0.02})
    # Eight lineages: the best four are promotable, and the paused one with a checkpoint among
    # them is ``target``. Counting the continuation apart from its parent would make nine
    # values, whose best four (0.9, 0.8, 0.8, 0.6) leave ``target`` out.
    chosen = pruner.next_promotion(study)
    assert chosen is not None and chosen.number == target.number
    assert unsaved.number != chosen.number
    # Not paused, so never promoted: a trial pruned between rung ends (by another pruner), one
    # whose checkpoint is not at its pause step, and one whose checkpoint was deleted.
    other = optuna.create_study(direction="maximize")
    _add(other, {1: 0.9, 2: 0.9, 3: 0.9}, state=TrialState.COMPLETE)
    between = _add(other, {1: 0.8, 2: 0.8, 3: 0.8}, checkpoint=tmp_path / "c")
    early = _add(other, {1: 0.7, 2: 0.7}, checkpoint=tmp_path / "d", checkpoint_step=1)
    gone = _add(other, {1: 0.6, 2: 0.6}, checkpoint=tmp_path / "e")
    (tmp_path / "e").rmdir()
    for v in (0.1, 0.2, 0.3, 0.4, 0.5):
        _add(other, {1: v, 2: v})
    assert pruner.next_promotion(other) is None
    assert not any(pruner.may_promote(other, t) for t in (between, early, gone))
    assert pruner.may_promote(study, target)


def test_second_continuation_of_one_trial_is_stopped(tmp_path) -> None:
    study = optuna.create_study(direction="minimize")
    parent = _add(study, {1: 1.0, 2: 1.0}, checkpoint=tmp_path / "p")
    first = _add(study, {1: 1.0, 2: 1.0, 3: 0.9}, state=TrialState.RUNNING, continues=parent.number)
    second = _add(study, {1: 1.0, 2: 1.0, 3: 0.9}, state=TrialState.RUNNING, continues=parent.number)
    pruner = _pruner()
    assert not pruner.prune(study, first)
    assert pruner.prune(study, second)


def test_a_grid_that_is_used_up_still_promotes_its_best_lineage_to_the_end(tmp_path) -> None:
    """No new trial comes from an exhausted grid; paused trials are still promoted."""
    spec = _spec(
        tmp_path, {"type": "asha_promote", "min_resource": 1, "reduction_factor": 3}, n_trials=9,
        sampler={"type": "grid"}, trial={"entrypoint": "hpo.tasks.synthetic:resumable_curve", "max_epochs": 9},
        search_space={"quality": {"type": "float", "low": 0.1, "high": 0.9, "step": 0.1}},
    )
    trials = hpo.optimize(spec, progress=Progress()).trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert done and max(t.last_step for t in done) == 9
    assert max(done, key=lambda t: t.value).params["quality"] == pytest.approx(0.9)
