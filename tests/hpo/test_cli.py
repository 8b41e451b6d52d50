"""The command line end to end on a tiny study, as a user runs it."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def hpo_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the test objectives import as tests.hpo._objectives
    return subprocess.run([sys.executable, "-m", "hpo.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env=env)


def test_optimize_status_best_trials(write_study, tmp_path) -> None:
    path = write_study({"n_trials": 6, "metric": "loss"})
    run = hpo_cli("optimize", str(path), "--n-trials", "5", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "5/5 trials finished" in run.stdout and "Traceback" not in run.stderr

    status = json.loads(hpo_cli("status", str(path), "--json", cwd=tmp_path).stdout)
    assert status["complete"] == 5 and status["metrics"] == ["loss"]

    best = json.loads(hpo_cli("best", str(path), "--json", cwd=tmp_path).stdout)
    assert best["values"][0] == status["best_value"] and "x" in best["params"]

    out = hpo_cli("trials", str(path), "--format", "csv", cwd=tmp_path).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 5 and {"number", "state", "loss", "param.x"} <= set(rows[0])

    table = hpo_cli("trials", "t", "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}", cwd=tmp_path)
    assert table.returncode == 0 and "COMPLETE" in table.stdout
    by_name = hpo_cli("status", "t", "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}", "--json", cwd=tmp_path)
    assert json.loads(by_name.stdout)["complete"] == 5
    assert hpo_cli("status", cwd=tmp_path).returncode == 2

    again = hpo_cli("optimize", str(path), cwd=tmp_path)  # file says 6: one more trial
    assert again.returncode == 0
    assert json.loads(hpo_cli("status", str(path), "--json", cwd=tmp_path).stdout)["complete"] == 6


def test_unknown_study_is_exit_1_with_available_names(write_study, tmp_path) -> None:
    path = write_study({"n_trials": 1})
    hpo_cli("optimize", str(path), cwd=tmp_path)
    res = hpo_cli("status", "nope", "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}", cwd=tmp_path)
    assert res.returncode == 1 and "no study 'nope'" in res.stderr and "t" in res.stderr
    # --traceback is taken after the command as well as before it.
    res = hpo_cli("status", "nope", "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}", "--traceback", cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" in res.stderr and "StudyNotFoundError: no study 'nope'" in res.stderr


def test_bad_flag_is_exit_2(tmp_path) -> None:
    res = hpo_cli("optimize", str(REPO / "studies" / "quickstart.yaml"), "--n-trials", "zero", cwd=tmp_path)
    assert res.returncode == 2 and "invalid int value" in res.stderr
    res = hpo_cli("optimize", str(REPO / "studies" / "quickstart.yaml"), "--n-trials", "0", cwd=tmp_path)
    assert res.returncode == 2 and "error: --n-trials: Input should be greater than or equal to 1 (got 0)" in res.stderr
    res = hpo_cli("optimize", str(REPO / "studies" / "quickstart.yaml"), "--storage", "bogus://x", cwd=tmp_path)
    assert res.returncode == 2 and "error: --storage: unknown database 'bogus'" in res.stderr, res.stderr
    res = hpo_cli("optimize", str(REPO / "studies" / "quickstart.yaml"), "--concurrency", "64", cwd=tmp_path)
    assert res.returncode == 2 and "error: --concurrency: " in res.stderr, res.stderr
    assert not list(tmp_path.iterdir())


def test_commands_that_read_create_no_database(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'none.db'}"
    for cmd in (("status", "x"), ("trials", "x"), ("best", "x"), ("export", "x", "-")):
        res = hpo_cli(*cmd, "--storage", url, cwd=tmp_path)
        assert res.returncode == 1 and "there is no database file" in res.stderr, (cmd, res.stderr)
    assert not list(tmp_path.iterdir())


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch) -> None:
    from hpo.cli import _study_cmds, main

    def broken(args) -> int:
        raise BrokenPipeError(32, "a worker's pipe")

    monkeypatch.setattr(_study_cmds, "_cmd_validate", broken)
    with pytest.raises(BrokenPipeError):
        main(["validate", str(REPO / "studies" / "quickstart.yaml")])


def test_a_reader_that_goes_away_ends_the_output_quietly(write_study, tmp_path) -> None:
    path = write_study({"n_trials": 300})  # more JSON than a pipe holds
    assert hpo_cli("optimize", str(path), "--quiet", cwd=tmp_path).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(f"'{sys.executable}' -m hpo.cli trials '{path}' --format json | head -c 10; "
                         "echo \" ${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash", capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=120)
    assert run.stdout.endswith(" 0\n") and "Traceback" not in run.stderr, run.stderr


def test_a_study_continued_with_another_metric_is_refused(write_study, tmp_path) -> None:
    path = write_study({"n_trials": 1, "metric": "loss"})
    assert hpo_cli("optimize", str(path), cwd=tmp_path).returncode == 0
    other = write_study({"n_trials": 2, "metric": "accuracy"}, name="other.yaml")
    res = hpo_cli("optimize", str(other), cwd=tmp_path)
    assert res.returncode == 2
    line = 1 + other.read_text().splitlines().index("metric: accuracy")
    assert f"error: {other}:{line}: metric: study 't' already exists with metric(s) ['loss'], not ['accuracy']" in res.stderr


def test_progress_counts_a_retried_failure_once(write_study, tmp_path) -> None:
    path = write_study({"n_trials": 1, "trial": {"entrypoint": "tests.hpo._objectives:crash_once_at_3",
                                                 "max_epochs": 4, "max_retries": 1}})
    res = hpo_cli("optimize", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "trial 0 FAIL [" in res.stdout and "node lost" in res.stdout and "| 0/1 done" in res.stdout
    assert "trial 1 COMPLETE" in res.stdout and "| 1/1 done" in res.stdout
    assert "1/1 trials finished" in res.stdout


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:  # noqa: SLF001 - argparse lists subcommands nowhere else
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                found[prefix + name] = sub
                found.update(_commands(sub, prefix + name + " "))
    return found


def test_every_command_has_help_with_an_example_and_every_option_a_text(tmp_path) -> None:
    from hpo.cli import build_parser

    commands = _commands(build_parser())
    assert {"optimize", "validate", "job status", "job logs", "job stop"} <= set(commands)
    for name, parser in commands.items():
        text = parser.format_help()
        assert "example:\n  hpo " + name.split()[0] in text, name
        assert parser.description, name
        for action in parser._actions:  # noqa: SLF001
            if action.option_strings and not isinstance(action, argparse._HelpAction):  # noqa: SLF001
                assert action.help, f"{name} {action.option_strings}"
    res = hpo_cli("optimize", "--help", cwd=tmp_path)
    assert res.returncode == 0 and "example" in res.stdout


def test_a_study_without_a_completed_trial_says_how_far_it_got(write_study, tmp_path) -> None:
    path = write_study({
        "n_trials": 3, "metric": "score", "direction": "maximize", "pruner": {"type": "threshold", "lower": 0.9},
        "trial": {"entrypoint": "hpo.tasks.synthetic:curve", "max_epochs": 3},
        "search_space": {"quality": {"type": "float", "low": 0.1, "high": 0.5}},
    })
    res = hpo_cli("optimize", str(path), cwd=tmp_path)
    assert res.returncode == 1
    assert "no trial completed (3 pruned, 0 failed); the furthest trained is trial" in res.stderr
    assert "score=" in res.stderr and "at step 1" in res.stderr and "hpo trials" not in res.stderr


def test_logs_are_found_in_the_run_directory_of_an_earlier_run(write_study, tmp_path) -> None:
    path = write_study({"n_trials": 2, "executor": {"isolation": "process"}})
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    assert hpo_cli("optimize", str(path), "--n-trials", "1", cwd=first).returncode == 0
    assert hpo_cli("optimize", str(path), cwd=second).returncode == 0  # run_dir hpo_runs/t: another place
    assert (first / "hpo_runs" / "t" / "trial_0").is_dir() and (second / "hpo_runs" / "t" / "trial_1").is_dir()
    for trial in ("0", "1"):
        res = hpo_cli("logs", str(path), trial, cwd=second)
        assert res.returncode == 0, res.stderr
        # The quadratic objective prints nothing: an empty log is said to be empty, on stderr.
        assert res.stdout == "" and f"(rank_0 of trial {trial} wrote nothing: " in res.stderr
