"""Sampling: seeded studies are reproducible; conditional and grid spaces sample as declared;
learning samplers see one trial per lineage of promotions."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

import hpo
from hpo.execution import CONTINUES_ATTR, PROMOTED
from hpo.reporting import Progress
from hpo.sampling import create_sampler
from hpo.sampling._lineage import LineageSampler


def _params(write_study, tmp_path, sampler: dict, name: str, n: int = 12) -> list[dict]:
    spec = hpo.load_spec(
        write_study(
            {
                "name": name,
                "sampler": sampler,
                "n_trials": n,
                "search_space": {
                    "x": {"type": "float", "low": -5, "high": 5},
                    "y": {"type": "int", "low": -3, "high": 3},
                    "c": {"type": "categorical", "choices": ["a", "b", "c"]},
                },
            },
            name=f"{name}.yaml",
        )
    )
    study = hpo.optimize(spec, progress=Progress())
    return [t.params for t in study.trials]


def test_same_spec_and_seed_give_same_sequence(write_study, tmp_path) -> None:
    for sampler in ({"type": "random", "seed": 3}, {"type": "tpe", "seed": 3, "n_startup_trials": 4}):
        a = _params(write_study, tmp_path, sampler, f"a_{sampler['type']}")
        b = _params(write_study, tmp_path, sampler, f"b_{sampler['type']}")
        assert a == b
        c = _params(write_study, tmp_path, {**sampler, "seed": 4}, f"c_{sampler['type']}")
        assert a != c


def test_continued_seeded_study_does_not_repeat_first_params(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 4}))
    first = [t.params for t in hpo.optimize(spec, progress=Progress()).trials]
    study = hpo.optimize(spec, n_trials=8, progress=Progress())
    later = [t.params for t in study.trials[4:]]
    assert len(later) == 4 and not any(p in first for p in later)


def test_conditional_parameters_exist_only_when_their_condition_holds(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 20, "search_space": {"include": ["optimizers"]}}))
    study = hpo.optimize(spec, progress=Progress())
    seen = set()
    for t in study.trials:
        seen.add(t.params["optimizer"])
        assert ("momentum" in t.params) == (t.params["optimizer"] == "SGD")
        assert ("weight_decay" in t.params) == (t.params["optimizer"] == "AdamW")
    assert seen == {"SGD", "AdamW"}


def test_grid_sampler_visits_every_point_once(write_study) -> None:
    spec = hpo.load_spec(
        write_study(
            {
                "sampler": {"type": "grid", "seed": 0},
                "n_trials": 6,
                "search_space": {
                    "x": {"type": "float", "low": 0, "high": 1, "step": 0.5},
                    "y": {"type": "categorical", "choices": [1, 2]},
                },
            }
        )
    )
    study = hpo.optimize(spec, progress=Progress())
    points = sorted((t.params["x"], t.params["y"]) for t in study.trials)
    assert points == [(0.0, 1), (0.0, 2), (0.5, 1), (0.5, 2), (1.0, 1), (1.0, 2)]


class _Recorder(optuna.samplers.RandomSampler):
    """Records the trials a sampler is shown when it asks the study for finished ones."""

    seen: list[int] = []

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
        done = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True)
        type(self).seen = [t.number for t in done]
        return super().sample_independent(study, trial, param_name, param_distribution)


def _trial(number: int, state: TrialState, continues: int | None = None) -> optuna.trial.FrozenTrial:
    attrs = {} if continues is None else {CONTINUES_ATTR: {"trial": continues, "reason": PROMOTED}}
    return optuna.trial.create_trial(
        state=state,
        value=float(number) if state == TrialState.COMPLETE else None,
        params={"x": 0.1 * number},
        distributions={"x": FloatDistribution(0.0, 1.0)},
        intermediate_values={1: float(number)},
        system_attrs=attrs,
    )


def test_a_learning_sampler_sees_only_the_latest_trial_of_each_promoted_lineage() -> None:
    """Trial 0 was paused and promoted into trial 2 (done); trial 1 was promoted into 3 (running)."""
    study = optuna.create_study(sampler=LineageSampler(_Recorder()))
    for t in (_trial(0, TrialState.PRUNED), _trial(1, TrialState.PRUNED), _trial(2, TrialState.COMPLETE, continues=0)):
        study.add_trial(t)
    study.enqueue_trial({"x": 0.1}, user_attrs={})
    running = study.ask()
    study._storage.set_trial_system_attr(running._trial_id, CONTINUES_ATTR, {"trial": 1, "reason": PROMOTED})
    study.ask().suggest_float("x", 0.0, 1.0)
    # 0 is continued by a finished trial: left out. 1's continuation still runs: 1 holds what is known.
    assert _Recorder.seen == [1, 2]
    assert len(study.get_trials()) == 5  # the study itself is untouched


def test_a_running_continuation_never_hides_its_trial_even_when_running_trials_are_asked_for() -> None:
    """CMA-ES asks for every state, TPE's constant liar for RUNNING ones too."""
    from hpo.sampling._lineage import latest_of_lineages

    paused, running = _trial(0, TrialState.PRUNED), _trial(1, TrialState.COMPLETE, continues=0)
    paused.number, running.number = 0, 1  # as the study numbers them
    running.state = TrialState.RUNNING
    assert [t.number for t in latest_of_lineages([paused, running])] == [0, 1]
    running.state = TrialState.COMPLETE
    assert [t.number for t in latest_of_lineages([paused, running])] == [1]


def test_only_learning_samplers_under_asha_promote_are_wrapped(write_study) -> None:
    def sampler(sampler: dict, pruner: dict) -> optuna.samplers.BaseSampler:
        return create_sampler(hpo.load_spec(write_study({"sampler": sampler, "pruner": pruner})))

    promote = {"type": "asha_promote", "min_resource": 1, "reduction_factor": 3}
    assert isinstance(sampler({"type": "tpe"}, promote), LineageSampler)
    assert isinstance(sampler({"type": "tpe"}, promote).base, optuna.samplers.TPESampler)
    assert isinstance(sampler({"type": "tpe"}, {"type": "asha"}), optuna.samplers.TPESampler)
    assert isinstance(sampler({"type": "random"}, promote), optuna.samplers.RandomSampler)


def test_a_brute_force_sampler_that_has_tried_everything_ends_the_study(write_study) -> None:
    spec = hpo.load_spec(write_study({
        "n_trials": 5, "sampler": {"type": "bruteforce", "seed": 0},
        "search_space": {"c": {"type": "categorical", "choices": ["a", "b", "c"]}},
    }))
    study = hpo.optimize(spec, progress=Progress())
    assert sorted(t.params["c"] for t in study.trials) == ["a", "b", "c"]
