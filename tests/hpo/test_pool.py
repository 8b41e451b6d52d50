"""Trials in worker processes: multi-worker process groups, warm reuse, failures, resources."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

import hpo
from hpo.execution import ERROR_ATTR
from hpo.execution._resources import plan_slots
from hpo.reporting import Progress
from tests.hpo._signals import interrupt_once_started

OBJ = "tests.hpo._objectives"


def _spec(write_study, tmp_path, name: str, trial: dict, **top) -> hpo.StudySpec:
    return hpo.load_spec(
        write_study(
            {
                "name": top.pop("study_name", name),
                "run_dir": str(tmp_path / "runs" / name),
                "executor": {"isolation": "process", **top.pop("executor", {})},
                "trial": {"max_epochs": 3, **trial},
                **top,
            },
            name=f"{name}.yaml",
        )
    )


def _digits(write_study, tmp_path, name: str, workers: int, stage: int) -> float:
    spec = _spec(
        write_study,
        tmp_path,
        name,
        {
            "entrypoint": "hpo.tasks.digits:train",
            "max_epochs": 2,
            "resources": {"workers": workers},
            "engine": {"precision": "fp32", "train_batch_size": 64, "zero_optimization": {"stage": stage}},
        },
        study_name="digits",
        n_trials=1,
        storage=f"sqlite:///{tmp_path / name}.db",  # same study name, so the same seeds
        metric="val_accuracy",
        direction="maximize",
        search_space={"lr": {"type": "categorical", "choices": [0.01]}, "hidden": {"type": "categorical", "choices": [32]}},
    )
    study = hpo.optimize(spec, progress=Progress())
    assert study.trials[0].state == TrialState.COMPLETE, study.trials[0].user_attrs.get(ERROR_ATTR)
    return study.trials[0].value


def test_two_worker_trial_matches_one_worker_with_same_global_batch(write_study, tmp_path) -> None:
    one = _digits(write_study, tmp_path, "w1", workers=1, stage=0)
    for stage in (0, 3):
        two = _digits(write_study, tmp_path, f"w2s{stage}", workers=2, stage=stage)
        assert two == pytest.approx(one, abs=0.006)  # at most two of 359 validation images differ


def test_params_identical_on_every_rank(write_study, tmp_path) -> None:
    spec = _spec(write_study, tmp_path, "agree", {"entrypoint": f"{OBJ}:ranks_agree", "resources": {"workers": 2}}, n_trials=3)
    study = hpo.optimize(spec, progress=Progress())
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3, study.trials[0].user_attrs.get(ERROR_ATTR)
    assert all(t.value == 2 for t in study.trials)


def test_pruned_two_worker_trial_stops_every_rank_at_the_same_step(write_study, tmp_path) -> None:
    spec = _spec(
        write_study,
        tmp_path,
        "prune2",
        {"entrypoint": f"{OBJ}:stop_step_per_rank", "resources": {"workers": 2}, "max_epochs": 8},
        n_trials=1,
        pruner={"type": "threshold", "upper": 2.5},
    )
    t0 = time.monotonic()
    study = hpo.optimize(spec, progress=Progress())
    assert time.monotonic() - t0 < 60
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    run = tmp_path / "runs" / "prune2" / "trial_0"
    assert (run / "stopped_rank0").read_text() == (run / "stopped_rank1").read_text() == "3"


def test_failing_or_killed_rank_fails_the_trial_quickly_and_the_study_goes_on(write_study, tmp_path) -> None:
    spec = _spec(
        write_study,
        tmp_path,
        "misbehave",
        {"entrypoint": f"{OBJ}:misbehaving_rank", "resources": {"workers": 2}},
        n_trials=3,
        sampler={"type": "grid", "seed": 0},
        search_space={"mode": {"type": "categorical", "choices": ["raise", "kill", "ok"]}},
    )
    study = hpo.optimize(spec, progress=Progress())
    by_mode = {t.params["mode"]: t for t in study.trials}
    assert set(by_mode) == {"raise", "kill", "ok"}
    assert by_mode["ok"].state == TrialState.COMPLETE and by_mode["ok"].value == 2
    assert by_mode["raise"].state == TrialState.FAIL
    assert "rank 1" in by_mode["raise"].user_attrs[ERROR_ATTR] and "rank 1 broke" in by_mode["raise"].user_attrs[ERROR_ATTR]
    assert by_mode["kill"].state == TrialState.FAIL and "died" in by_mode["kill"].user_attrs[ERROR_ATTR]
    for t in study.trials:
        assert (t.datetime_complete - t.datetime_start).total_seconds() < 60


def test_warm_workers_are_reused_but_state_does_not_leak(write_study, tmp_path) -> None:
    spec = _spec(write_study, tmp_path, "leaky", {"entrypoint": f"{OBJ}:leaky"}, n_trials=3)
    study = hpo.optimize(spec, progress=Progress())
    metrics = [t.user_attrs["hpo:metrics"] for t in study.trials]
    assert len({m["pid"] for m in metrics}) == 1  # one warm worker ran all three
    for m in metrics:
        assert m["seed_ok"] == m["dtype_ok"] == m["grad_ok"] == 1.0
    cold = hpo.optimize(_spec(write_study, tmp_path, "cold", {"entrypoint": f"{OBJ}:leaky"}, n_trials=2), reuse_workers=False, progress=Progress())
    assert len({t.user_attrs["hpo:metrics"]["pid"] for t in cold.trials}) == 2


def test_two_concurrent_one_worker_trials_overlap(write_study, tmp_path) -> None:
    spec = _spec(write_study, tmp_path, "conc", {"entrypoint": f"{OBJ}:sleepy"}, n_trials=4, concurrency=2)
    study = hpo.optimize(spec, progress=Progress())
    m = sorted((t.user_attrs["hpo:metrics"] for t in study.trials), key=lambda m: m["t0"])
    assert len({x["pid"] for x in m}) == 2
    assert m[1]["t0"] < m[0]["t1"]  # the second started before the first ended


def test_more_gpus_than_the_machine_has_is_refused_before_anything_runs(write_study, tmp_path) -> None:
    path = write_study(
        {
            "executor": {"isolation": "process"},
            "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic", "resources": {"workers": 4, "device": "cuda", "gpus_per_worker": 1}},
        }
    )
    proc = subprocess.run([sys.executable, "-m", "hpo.cli", "optimize", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "needs 4 worker(s) x 1 GPU(s) = 4 GPU(s), but this machine has 0" in proc.stderr
    assert not (tmp_path / "db.sqlite").exists()


def test_slot_planning_divides_gpus_and_cpus() -> None:
    slots = plan_slots(workers=2, device="cuda", gpus_per_worker=1, concurrency=2, gpus=[0, 1, 2, 3], cpus=16)
    assert [s.gpu_ids for s in slots] == [((0,), (1,)), ((2,), (3,))]
    assert slots[0].threads_per_worker == 4
    with pytest.raises(hpo.SpecError, match="lower concurrency to 2"):
        plan_slots(workers=2, device="cuda", gpus_per_worker=1, concurrency=3, gpus=[0, 1, 2, 3])
    with pytest.raises(hpo.SpecError, match="^concurrency: concurrency 2 x 2 worker.* this machine has 2 CPU"):
        plan_slots(workers=2, device="cpu", gpus_per_worker=0, concurrency=2, cpus=2)
    with pytest.raises(hpo.SpecError, match="^trial.resources.workers: a trial needs 4 worker processes"):
        plan_slots(workers=4, device="cpu", gpus_per_worker=0, concurrency=1, cpus=2)


def test_ctrl_c_ends_trials_requeues_them_and_leaves_no_workers(write_study, tmp_path) -> None:
    path = write_study(
        {
            "run_dir": str(tmp_path / "runs"),
            "executor": {"isolation": "process"},
            "n_trials": 2,
            "trial": {"entrypoint": f"{OBJ}:slow_with_pid_file", "resources": {"workers": 2}},
        }
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    pid_files = [tmp_path / "runs" / "trial_0" / f"pid_{r}" for r in (0, 1)]
    code, err = interrupt_once_started([sys.executable, "-m", "hpo.cli", "optimize", str(path)], pid_files,
                                       cwd=tmp_path, env=env)
    assert code == 130, err
    for p in pid_files:
        with pytest.raises(ProcessLookupError):
            os.kill(int(p.read_text()), 0)
    study = hpo.load_study("t", f"sqlite:///{tmp_path / 'db.sqlite'}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]


def test_a_report_the_database_refuses_fails_the_trial_not_the_study(write_study, tmp_path, monkeypatch) -> None:
    """The orchestrator cannot record rank 0's report (the trial was taken for lost): the
    trial ends there, its workers are replaced, and the study goes on."""
    monkeypatch.setenv("HPO_TEST_STORAGE", f"sqlite:///{tmp_path / 'db.sqlite'}")
    spec = _spec(write_study, tmp_path, "t", {"entrypoint": f"{OBJ}:taken_for_lost_while_running"},
                 study_name="t", n_trials=2, storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = hpo.optimize(spec, progress=Progress())
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


def _running(pid: int) -> bool:
    """Whether our child ``pid`` has not exited yet (without reaping it: its Popen does that)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None


class _Quiet:
    """A channel for a trial that never reports."""

    def report(self, value: float, step: int) -> bool:
        return False

    def checkpointed(self, step: int, path: str) -> None:
        pass

    def stopping(self) -> bool:
        return False


def test_a_warm_worker_that_died_between_trials_is_replaced_before_the_next_trial(tmp_path) -> None:
    from hpo.execution import TrialJob
    from hpo.execution._pool import ProcessExecutor

    slots = plan_slots(workers=1, device="cpu", gpus_per_worker=0, concurrency=1, cpus=2)
    executor = ProcessExecutor(slots, workers=1)
    job = TrialJob(entrypoint=f"{OBJ}:pid", study_name="t", storage_url="sqlite://", trial_id=0, number=0,
                   params={"x": 1.0}, engine_config={}, metric_names=["value"], max_epochs=1)
    try:
        first = executor.run(job, _Quiet())
        pid = int(first.metrics["pid"])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while _running(pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = executor.run(job, _Quiet())
    finally:
        executor.close()
    assert second.outcome.value == "COMPLETE", second.error
    assert int(second.metrics["pid"]) != pid
