"""`hpo dashboard`: optuna-dashboard on the study's database, on loopback unless told otherwise."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from hpo.cli import build_parser, main

pytest.importorskip("optuna_dashboard")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _study(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = optuna.create_study(study_name="dash", storage=url, direction="maximize")
    dist = {"x": FloatDistribution(0, 1)}
    study.add_trials([create_trial(value=v, params={"x": v}, distributions=dist) for v in (0.2, 0.7)])
    return url


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def _dashboard(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", "dashboard", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serves_the_study_on_loopback(tmp_path) -> None:
    url, port = _study(tmp_path), _free_port()
    proc = _dashboard("dash", "--storage", url, "--port", str(port), cwd=tmp_path)
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                status, body = _get(f"http://127.0.0.1:{port}/api/studies")
                studies = json.loads(body)["study_summaries"]
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert studies is not None, "the dashboard did not answer within 60 s"
        assert [s["study_name"] for s in studies] == ["dash"]
        assert studies[0]["directions"] == ["maximize"]

        study_id = studies[0]["study_id"]
        status, body = _get(f"http://127.0.0.1:{port}/api/studies/{study_id}")
        assert status == 200 and len(json.loads(body)["trials"]) == 2
        status, page = _get(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}")
        assert status == 200 and b"<html" in page.lower()
        # Bound to 127.0.0.1 only: another loopback address of this machine is refused.
        with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=2):
            pass
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in out


def test_default_host_is_loopback() -> None:
    args = build_parser().parse_args(["dashboard", "s"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)


def test_unknown_study_is_exit_1_before_listening(tmp_path, capsys) -> None:
    url = _study(tmp_path)
    assert main(["dashboard", "nope", "--storage", url, "--port", str(_free_port())]) == 1
    assert "no study 'nope'" in capsys.readouterr().err


def test_busy_port_is_exit_1(tmp_path) -> None:
    url = _study(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = _dashboard("dash", "--storage", url, "--port", str(busy.getsockname()[1]), cwd=tmp_path)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "cannot serve on 127.0.0.1" in err


def test_bad_port_is_exit_2(tmp_path, capsys) -> None:
    assert main(["dashboard", "dash", "--port", "70000"]) == 2
    assert "a port is 0-65535" in capsys.readouterr().err
