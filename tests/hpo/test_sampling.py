"""Sampling: seeded studies are reproducible; conditional and grid spaces sample as declared."""

from __future__ import annotations

import hpo
from hpo.reporting import Progress


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
