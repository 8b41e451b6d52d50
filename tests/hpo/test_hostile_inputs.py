"""Malformed study files and hostile inputs: each a clear error, exit 2, database untouched."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from hpo.cli import main
from hpo.execution import TrialContext

QUAD = "hpo.tasks.synthetic:quadratic"
BASE = f"name: t\nstorage: sqlite:///{{db}}\ntrial: {{{{entrypoint: {QUAD}}}}}\n"

CASES = {
    "python_object_tag": "name: !!python/object/apply:os.system ['touch {marker}']\ntrial: {{entrypoint: x:y}}\n",
    "python_name_tag": "name: !!python/name:os.system\ntrial: {{entrypoint: x:y}}\n",
    "not_a_mapping": "- a\n- b\n",
    "unclosed_bracket": "name: [t\n",
    "tab_indentation": "name: t\ntrial:\n\tentrypoint: x:y\n",
    "empty_file": "",
    "path_traversal_name": BASE.replace("name: t", "name: ../../etc/x"),
    "absolute_name": BASE.replace("name: t", "name: /etc/passwd"),
    "name_with_slash": BASE.replace("name: t", "name: a/b"),
    "include_traversal": BASE + "search_space: {{include: [../../etc/passwd]}}\n",
    "include_absolute": BASE + "search_space: {{include: [/etc/passwd]}}\n",
    "entrypoint_eval": "name: t\nstorage: sqlite:///{db}\ntrial: {{entrypoint: \"__import__('os').system('touch {marker}')\"}}\n",
    "entrypoint_no_function": "name: t\nstorage: sqlite:///{db}\ntrial: {{entrypoint: os.path}}\n",
    "entrypoint_missing_module": "name: t\nstorage: sqlite:///{db}\ntrial: {{entrypoint: no_such_pkg_q:train}}\n",
    "unknown_top_key": BASE + "n_trails: 3\n",
    "wrong_type": BASE + "n_trials: lots\n",
    "negative_trials": BASE + "n_trials: -1\n",
    "low_above_high": BASE + "search_space: {{x: {{type: int, low: 9, high: 1}}}}\n",
    "log_nonpositive": BASE + "search_space: {{x: {{type: float, low: 0, high: 1, log: true}}}}\n",
    "empty_choices": BASE + "search_space: {{x: {{type: categorical, choices: []}}}}\n",
    "unknown_sampler": BASE + "sampler: {{type: anneal}}\n",
    "unknown_pruner": BASE + "pruner: {{type: sometimes}}\n",
    "bad_sampler_option": BASE + "sampler: {{type: tpe, n_startup_trials: -5}}\n",
    "condition_cycle": BASE + "search_space: {{a: {{type: categorical, choices: [1], when: {{b: 1}}}}, b: {{type: categorical, choices: [1], when: {{a: 1}}}}}}\n",
    "infinite_bound": BASE + "search_space: {{x: {{type: float, low: -.inf, high: 1}}}}\n",
    "gpus_on_cpu": BASE.replace("trial: {{", "trial: {{resources: {{gpus_per_worker: 2}}, ") ,
    "grace_below_heartbeat": BASE + "executor: {{heartbeat_interval: 10, grace_period: 5}}\n",
    "billion_laughs": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_hostile_input_is_exit_2_and_touches_nothing(case, tmp_path, capsys) -> None:
    db, marker = tmp_path / "db.sqlite", tmp_path / "pwned"
    path = tmp_path / "study.yaml"
    path.write_text(CASES[case].format(db=db, marker=marker))
    for command in ("validate", "optimize"):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
        assert str(path) in err  # names the file
    assert not db.exists() and not marker.exists()


def _engine_with_checkpoint(tmp_path: Path):
    import engine

    eng = engine.initialize(torch.nn.Linear(4, 2), {"train_micro_batch_size_per_gpu": 2})
    ckpt = tmp_path / "ckpt"
    eng.save_checkpoint(ckpt)
    return eng, ckpt


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_planted_in_a_checkpoint_is_not_executed(tmp_path, capsys) -> None:
    eng, ckpt = _engine_with_checkpoint(tmp_path)
    marker = tmp_path / "pwned"
    for rng_file in (ckpt / "rng").glob("*.pt"):
        rng_file.write_bytes(pickle.dumps(_Payload(marker)))
    ctx = TrialContext(params={}, number=0, max_epochs=3, resume_from=ckpt, start_step=2)
    assert ctx.resume(eng) == 0  # refused, reported, and the trial starts over
    assert not marker.exists()
    assert "unusable" in capsys.readouterr().err


def test_truncated_checkpoint_means_starting_over(tmp_path, capsys) -> None:
    eng, ckpt = _engine_with_checkpoint(tmp_path)
    for f in ckpt.rglob("*.distcp"):
        f.write_bytes(f.read_bytes()[:10])
    ctx = TrialContext(params={}, number=0, max_epochs=3, resume_from=ckpt, start_step=2)
    assert ctx.resume(eng) == 0
    assert "starting from scratch" in capsys.readouterr().err
