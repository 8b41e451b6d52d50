"""Nothing is lost: orchestrator crashes, killed workers, many processes on one database."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

import hpo
from hpo.execution import ERROR_ATTR, RESUME_ATTR
from hpo.reporting import Progress

REPO = Path(__file__).resolve().parents[2]
OBJ = "tests.hpo._objectives"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", *args], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres_url")


def _n_trials(url: str) -> int:
    try:
        return len(hpo.load_study("crash", url).trials)
    except hpo.StudyNotFoundError:
        return 0


def _resume_steps(study) -> dict[int, int]:
    storage = study._storage
    return {
        t.number: storage.get_trial_system_attrs(t._trial_id).get(RESUME_ATTR, {}).get("step", 0)
        for t in study.trials
    }


def test_orchestrator_killed_three_times_loses_and_duplicates_nothing(write_study, tmp_path, storage_url) -> None:
    path = write_study(
        {
            "name": "crash",
            "storage": storage_url,
            "n_trials": 30,
            "run_dir": str(tmp_path / "runs"),
            "executor": {"isolation": "thread", "heartbeat_interval": 1, "grace_period": 3},
            "trial": {"entrypoint": f"{OBJ}:steady"},
        }
    )
    rng = random.Random(7)
    seen = 0
    for _ in range(3):
        proc = _cli("optimize", str(path), "--quiet", cwd=tmp_path)
        # Kill at a random moment once this run has made progress (a few trials in).
        while _n_trials(storage_url) < seen + 3 and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = _n_trials(storage_url)
    final = _cli("optimize", str(path), "--quiet", cwd=tmp_path)
    assert final.wait(timeout=240) == 0, final.stderr.read()
    study = hpo.load_study("crash", storage_url)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 30
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    lost = [t for t in study.trials if t.state == TrialState.FAIL]
    assert lost, "a kill at a random moment should catch a trial running"
    steps = _resume_steps(study)
    continued = [t for t in study.trials if t.system_attrs.get("hpo:continues")]
    assert len(continued) == len(lost)
    assert any(steps[t.number] > 0 for t in continued)  # resumed from a checkpoint, not from scratch
    for t in continued:
        if t.state == TrialState.COMPLETE:  # a continuation lost in turn was continued again
            assert sorted(t.intermediate_values) == [1, 2, 3, 4, 5]


def test_killed_worker_is_retried_from_its_checkpoint_within_a_minute(write_study, tmp_path) -> None:
    path = write_study(
        {
            "name": "killw",
            "n_trials": 1,
            "run_dir": str(tmp_path / "runs"),
            "executor": {"isolation": "process"},
            "trial": {"entrypoint": f"{OBJ}:two_rank_checkpointing", "resources": {"workers": 2}, "max_retries": 1},
        }
    )
    proc = _cli("optimize", str(path), "--quiet", cwd=tmp_path)
    # Step 4's checkpoint is written after step 3 was reported: step 3 is then a resume point.
    ckpts = tmp_path / "runs" / "checkpoints" / "trial_0"
    deadline = time.monotonic() + 120
    while (
        not any(p.name[5:].isdigit() and int(p.name[5:]) >= 4 for p in ckpts.glob("step_*"))
        and time.monotonic() < deadline
        and proc.poll() is None
    ):
        time.sleep(0.1)
    os.kill(int((tmp_path / "runs" / "trial_0" / "pid_1").read_text()), signal.SIGKILL)
    killed_at = time.monotonic()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    study = hpo.load_study("killw", f"sqlite:///{tmp_path / 'db.sqlite'}")
    first, retry = study.trials
    assert first.state == TrialState.FAIL and "rank 1" in first.user_attrs[ERROR_ATTR] and "died" in first.user_attrs[ERROR_ATTR]
    assert retry.state == TrialState.COMPLETE and retry.value >= 3  # the step it resumed after
    assert _resume_steps(study)[1] == retry.value
    assert retry.datetime_start.timestamp() - first.datetime_start.timestamp() < 120
    assert time.monotonic() - killed_at < 60 + 30  # failed, retried and finished


def test_four_processes_share_one_study_exactly(write_study, tmp_path, storage_url) -> None:
    path = write_study(
        {
            "name": "many",
            "storage": storage_url,
            "n_trials": 200,
            "executor": {"isolation": "thread"},
            "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic"},
        }
    )
    procs = [_cli("optimize", str(path), "--quiet", cwd=tmp_path) for _ in range(4)]
    codes = [p.wait(timeout=600) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert codes == [0, 0, 0, 0], errors
    assert not any("locked" in e for e in errors)
    study = hpo.load_study("many", storage_url)
    assert len(study.trials) == 200
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sorted(t.number for t in study.trials) == list(range(200))


def test_only_the_checkpoints_the_policy_keeps_remain(write_study, tmp_path) -> None:
    spec = hpo.load_spec(
        write_study(
            {
                "n_trials": 5,
                "direction": "maximize",
                "run_dir": str(tmp_path / "runs"),
                "checkpoints": {"keep": {"best": 2, "latest": 1}},
                "trial": {"entrypoint": f"{OBJ}:ckpt_quality"},
                "search_space": {"quality": {"type": "float", "low": 0, "high": 1}},
            }
        )
    )
    study = hpo.optimize(spec, progress=Progress())
    best_two = sorted(study.trials, key=lambda t: -t.value)[:2]
    root = tmp_path / "runs" / "checkpoints"
    kept = sorted(str(p.relative_to(root)) for p in root.glob("trial_*/step_*"))
    assert kept == sorted(f"trial_{t.number}/step_3" for t in best_two)


def test_password_is_never_printed(write_study, tmp_path, postgres_url) -> None:
    with_password = postgres_url.replace("postgres@", "postgres:s3cret-pw@")
    spec = hpo.load_spec(write_study({"storage": with_password, "n_trials": 1}))
    hpo.optimize(spec, progress=Progress())
    for args in (["status", "t", "--storage", with_password], ["status", "nope", "--storage", with_password]):
        res = subprocess.run([sys.executable, "-m", "hpo.cli", *args], capture_output=True, text=True, cwd=tmp_path, env=ENV)
        assert "s3cret-pw" not in res.stdout + res.stderr
        assert "***" in res.stdout + res.stderr
    # Nor stored with the study, so an export or report of it holds none either.
    res = subprocess.run([sys.executable, "-m", "hpo.cli", "export", "t", "-", "--storage", with_password],
                         capture_output=True, text=True, cwd=tmp_path, env=ENV)
    assert res.returncode == 0 and "s3cret-pw" not in res.stdout and "***" in res.stdout


def test_a_trial_that_fails_before_recording_its_checkpoint_leaves_none(write_study, tmp_path) -> None:
    spec = hpo.load_spec(write_study({
        "n_trials": 2, "run_dir": str(tmp_path / "runs"),
        "trial": {"entrypoint": f"{OBJ}:diverge_after_checkpoint", "max_epochs": 3},
    }))
    study = hpo.optimize(spec, progress=Progress())
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert not list((tmp_path / "runs" / "checkpoints").glob("trial_*"))
