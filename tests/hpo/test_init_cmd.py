"""`hpo init`: a starter study and training function that validate and run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna

from hpo.cli import main
from hpo.cli._results_cmds import INIT_FILES


def _hpo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "hpo.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_init_writes_a_study_that_validates_and_runs(tmp_path, capsys, monkeypatch) -> None:
    project = tmp_path / "proj"
    assert main(["init", str(project)]) == 0
    assert "PYTHONPATH=. hpo optimize studies/my_study.yaml" in capsys.readouterr().out
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == sorted(
        INIT_FILES
    )
    assert "import engine" in (project / "my_task.py").read_text()

    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))  # what PYTHONPATH=. does for the hpo command
    assert main(["validate", "studies/my_study.yaml"]) == 0  # imports my_task:train
    assert "ok: study 'my_study'" in capsys.readouterr().out

    res = _hpo("optimize", "studies/my_study.yaml", "--n-trials", "2", cwd=project)
    assert res.returncode == 0, res.stderr[-3000:]
    study = optuna.load_study(study_name="my_study", storage=f"sqlite:///{project / 'my_study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(0.0 <= t.value <= 1.0 for t in done)
    # The template reports a learning curve and the engine's throughput.
    assert all(len(t.intermediate_values) == 5 for t in done)
    assert all(t.user_attrs["hpo:metrics"]["samples_per_s"] > 0 for t in done)


def test_init_refuses_to_overwrite(tmp_path, capsys) -> None:
    (tmp_path / "my_task.py").write_text("# mine\n")
    assert main(["init", str(tmp_path)]) == 2
    assert "will not overwrite" in capsys.readouterr().err
    assert (tmp_path / "my_task.py").read_text() == "# mine\n"
    assert not (tmp_path / "studies").exists()  # nothing written, not even the other file
