"""Trials on a real two-node Ray cluster: placement-group gangs, pruning through the
database, failures, retries, Ctrl-C, the SQLite refusal and `hpo submit`.

One cluster (a head and a second node, both on this machine, on free ports) serves the
whole module. Skipped when Ray is not installed, unless HPO_REQUIRE_RAY=1 (CI).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from optuna.trial import TrialState

import hpo
from hpo.execution import ERROR_ATTR
from hpo.reporting import Progress
from tests.hpo._signals import interrupt_once_started

try:
    import ray
except ImportError:
    if os.environ.get("HPO_REQUIRE_RAY") == "1":
        raise
    pytest.skip("ray is not installed (pip install 'hpo[ray]')", allow_module_level=True)

OBJ = "tests.hpo._objectives"
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PATH = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # `ray` and `hpo` of this environment


@dataclass(frozen=True)
class Cluster:
    gcs: str
    """host:port of the head node's GCS (what `executor.address` takes)."""
    dashboard: str
    """http://host:port of the job server."""
    client: str
    """ray://host:port of the Ray Client server."""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _free_range(width: int, avoid: range = range(0)) -> range:
    """``width`` consecutive ports nobody listens on (for a node's worker processes), above
    23000-23999, where Ray Client starts a server per client."""
    bases = list(range(24100, 32000, width))
    random.shuffle(bases)  # two clusters starting at once should not pick the same range
    for base in bases:
        r = range(base, base + width)
        if set(r) & set(avoid):
            continue
        try:
            for port in r:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return r
    raise RuntimeError("no free port range")


def _node_args(workers: range) -> list[str]:
    """Every port a node listens on, chosen free (two nodes share this machine)."""
    nm, om, agent, agent_grpc, env_agent, metrics = _free_ports(6)
    return [
        "--num-cpus=2", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
        f"--node-manager-port={nm}", f"--object-manager-port={om}", f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}", f"--min-worker-port={workers.start}",
        f"--max-worker-port={workers.stop - 1}",
    ]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """`ray start --block ...` in a session of its own; returns once the node runs."""
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "ray"), "start", "--block", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"ray start failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """Stop one node: SIGTERM to `ray start --block` (it stops its processes), then SIGKILL
    whatever is left in its session; never touches other Ray processes of this machine."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head node and a second node (resource `node2`), 2 CPUs each, on free ports."""
    temp = Path(tempfile.mkdtemp(prefix="hpo-ray-"))
    saved_auth = os.environ.get("RAY_AUTH_MODE")
    # Explicit, so a token left in ~/.ray by another cluster does not turn authentication
    # on for some of this cluster's processes and not for others.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "PATH": PATH, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    gcs, dash, client = _free_ports(3)
    nodes: list[subprocess.Popen] = []
    try:
        head_workers = _free_range(100)
        nodes.append(_start(
            ["--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
             f"--ray-client-server-port={client}", f"--temp-dir={temp}", *_node_args(head_workers)],
            temp / "head.log", env,
        ))
        nodes.append(_start(
            [f"--address=127.0.0.1:{gcs}", '--resources={"node2": 1}',
             *_node_args(_free_range(100, head_workers))],
            temp / "node2.log", env,
        ))
        ray.init(address=f"127.0.0.1:{gcs}", log_to_driver=False, logging_level="WARNING")
        deadline = time.monotonic() + 60
        while sum(n["Alive"] for n in ray.nodes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert sum(n["Alive"] for n in ray.nodes()) == 2
        ray.shutdown()
        yield Cluster(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", f"ray://127.0.0.1:{client}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(temp, ignore_errors=True)
        if saved_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_auth


def _spec(
    write_study, tmp_path: Path, name: str, storage: str, address: str, trial: dict, **top
) -> hpo.StudySpec:
    data = {
        "name": name,
        "storage": storage,
        "run_dir": str(tmp_path / "runs" / name),
        "executor": {"type": "ray", "address": address, **top.pop("executor", {})},
        "trial": {"max_epochs": 3, **trial},
        **top,
    }
    return hpo.load_spec(write_study(data, name=f"{name}.yaml"))


def _states(study) -> list[TrialState]:
    return [t.state for t in study.trials]


def test_gangs_are_placement_groups_across_nodes_reused_and_report_to_the_database(
    cluster, postgres_url, write_study, tmp_path
) -> None:
    spec = _spec(
        write_study, tmp_path, "ray-gangs", postgres_url, cluster.gcs,
        {"entrypoint": f"{OBJ}:ray_placement", "resources": {"workers": 2}},
        n_trials=3, executor={"cpus_per_worker": 2},  # 2 x 2 CPUs: one rank on each node
        search_space={"x": {"type": "float", "low": 0.0, "high": 0.5}},
    )
    hpo.optimize(spec, progress=Progress())
    study = hpo.load_study("ray-gangs", postgres_url)  # what the database holds
    assert _states(study) == [TrialState.COMPLETE] * 3, study.trials[0].user_attrs.get(ERROR_ATTR)
    for t in study.trials:
        assert t.value == pytest.approx(2.0 + t.params["x"])  # the all-reduce spanned both ranks
        assert t.intermediate_values == {1: 2.0}  # reported by rank 0 straight to the database
    run = tmp_path / "runs" / "ray-gangs"
    ranks = [
        [json.loads((run / f"trial_{t.number}" / f"placement_rank{r}.json").read_text()) for r in (0, 1)]
        for t in study.trials
    ]
    for r0, r1 in ranks:
        assert r0["placement_group"] is not None and r0["placement_group"] == r1["placement_group"]
        assert r0["node"] != r1["node"]
    assert len({(r0["pid"], r1["pid"], r0["placement_group"]) for r0, r1 in ranks}) == 1  # one warm gang
    from ray.util.state import list_placement_groups

    pg_id = ranks[0][0]["placement_group"]
    groups = list_placement_groups(address=cluster.dashboard, filters=[("placement_group_id", "=", pg_id)])
    assert [g.state for g in groups] == ["REMOVED"]  # released when the study ended


def test_a_pruned_trial_stops_at_the_same_step_on_every_worker(
    cluster, postgres_url, write_study, tmp_path
) -> None:
    spec = _spec(
        write_study, tmp_path, "ray-prune", postgres_url, cluster.gcs,
        {"entrypoint": f"{OBJ}:stop_step_per_rank", "resources": {"workers": 2}, "max_epochs": 8},
        n_trials=1, pruner={"type": "threshold", "upper": 2.5},
    )
    trial = hpo.optimize(spec, progress=Progress()).trials[0]
    assert trial.state == TrialState.PRUNED, trial.user_attrs.get(ERROR_ATTR)
    assert trial.intermediate_values == {1: 1.0, 2: 2.0, 3: 3.0}
    run = tmp_path / "runs" / "ray-prune" / "trial_0"
    assert (run / "stopped_rank0").read_text() == (run / "stopped_rank1").read_text() == "3"


def test_a_failing_or_killed_worker_fails_its_trial_quickly_and_the_study_goes_on(
    cluster, postgres_url, write_study, tmp_path
) -> None:
    spec = _spec(
        write_study, tmp_path, "ray-misbehave", postgres_url, cluster.gcs,
        {"entrypoint": f"{OBJ}:misbehaving_rank", "resources": {"workers": 2}},
        n_trials=3, sampler={"type": "grid", "seed": 0},
        search_space={"mode": {"type": "categorical", "choices": ["raise", "kill", "ok"]}},
    )
    study = hpo.optimize(spec, progress=Progress())
    by_mode = {t.params["mode"]: t for t in study.trials}
    assert set(by_mode) == {"raise", "kill", "ok"}
    assert by_mode["ok"].state == TrialState.COMPLETE and by_mode["ok"].value == 2
    raised, killed = by_mode["raise"].user_attrs[ERROR_ATTR], by_mode["kill"].user_attrs[ERROR_ATTR]
    assert by_mode["raise"].state == TrialState.FAIL
    assert raised.startswith("rank 1: ") and "rank 1 broke" in raised
    assert by_mode["kill"].state == TrialState.FAIL and killed.startswith("rank 1: worker process died")
    for t in study.trials:
        assert (t.datetime_complete - t.datetime_start).total_seconds() < 60


def test_a_failed_trial_is_retried_from_the_checkpoint_rank_0_recorded(
    cluster, postgres_url, write_study, tmp_path
) -> None:
    spec = _spec(
        write_study, tmp_path, "ray-retry", postgres_url, cluster.gcs,
        {"entrypoint": f"{OBJ}:crash_once_at_3", "max_epochs": 5, "max_retries": 1},
        n_trials=1,
    )
    first, retry = hpo.optimize(spec, progress=Progress()).trials
    assert first.state == TrialState.FAIL and "node lost" in first.user_attrs[ERROR_ATTR]
    assert first.user_attrs["hpo:checkpoint"]["step"] == 3
    assert retry.state == TrialState.COMPLETE and retry.value == 5
    assert retry.user_attrs["hpo:metrics"]["start"] == 3  # resumed, not started over


def test_trials_wait_for_free_cluster_resources(cluster, postgres_url, write_study, tmp_path) -> None:
    spec = _spec(
        write_study, tmp_path, "ray-conc", postgres_url, cluster.gcs,
        {"entrypoint": f"{OBJ}:sleepy"},
        n_trials=5, concurrency=3, executor={"cpus_per_worker": 2},  # 4 CPUs hold 2 such trials
    )
    study = hpo.optimize(spec, progress=Progress())
    assert _states(study) == [TrialState.COMPLETE] * 5
    spans = [(m["t0"], m["t1"]) for m in (t.user_attrs["hpo:metrics"] for t in study.trials)]
    at_once = max(sum(a0 <= t < a1 for a0, a1 in spans) for t, _ in spans)
    assert at_once == 2


def test_a_study_runs_through_ray_client(cluster, postgres_url, write_study, tmp_path) -> None:
    spec = _spec(
        write_study, tmp_path, "ray-client", postgres_url, cluster.client,
        {"entrypoint": "hpo.tasks.synthetic:curve"}, n_trials=2, metric="score",
        search_space={"quality": {"type": "float", "low": 0.1, "high": 1.0}},
    )
    study = hpo.optimize(spec, progress=Progress())
    assert _states(study) == [TrialState.COMPLETE] * 2, study.trials[0].user_attrs.get(ERROR_ATTR)
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in study.trials)


def _running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_ctrl_c_ends_ray_trials_requeues_them_and_leaves_no_actors(
    cluster, postgres_url, write_study, tmp_path
) -> None:
    path = write_study({
        "name": "ray-interrupt", "storage": postgres_url, "run_dir": str(tmp_path / "runs"), "n_trials": 2,
        "executor": {"type": "ray", "address": cluster.gcs},
        "trial": {"entrypoint": f"{OBJ}:slow_with_pid_file", "resources": {"workers": 2}},
    })
    pid_files = [tmp_path / "runs" / "trial_0" / f"pid_{r}" for r in (0, 1)]
    code, err = interrupt_once_started([sys.executable, "-m", "hpo.cli", "optimize", str(path)], pid_files, cwd=REPO)
    assert code == 130, err
    assert _states(hpo.load_study("ray-interrupt", postgres_url)) == [TrialState.FAIL, TrialState.WAITING]
    alive, deadline = [int(p.read_text()) for p in pid_files], time.monotonic() + 20
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.2)
    assert not alive  # the actors went with their placement group


def test_sqlite_on_a_multi_node_cluster_is_refused_before_anything_runs(
    cluster, write_study, tmp_path
) -> None:
    path = write_study({"executor": {"isolation": "process"}})
    flags = ["--executor", "ray", "--address", cluster.gcs]
    cmd = [sys.executable, "-m", "hpo.cli", "optimize", str(path), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "storage: SQLite" in proc.stderr and "2 nodes" in proc.stderr
    assert not (tmp_path / "db.sqlite").exists()


def test_a_trial_the_cluster_cannot_place_is_refused_before_the_database_is_touched(
    cluster, postgres_url, write_study, tmp_path
) -> None:
    cases = [
        ({"device": "cuda"}, {}, "a worker needs 1 CPU + 1 GPU, but no node of the Ray cluster has that"),
        ({"workers": 2}, {"cpus_per_worker": 3}, "a worker needs 3 CPU, but no node"),
        ({"workers": 3}, {"cpus_per_worker": 2}, "needs 3 worker(s) x 2 CPU = 6 CPU, but the Ray cluster has 4"),
    ]
    for resources, executor, message in cases:
        trial = {"entrypoint": "hpo.tasks.synthetic:quadratic", "resources": resources}
        name = "ray-unplaceable"
        spec = _spec(write_study, tmp_path, name, postgres_url, cluster.gcs, trial, executor=executor)
        with pytest.raises(hpo.SpecError) as e:
            hpo.optimize(spec, progress=Progress())
        assert e.value.key == "trial.resources" and message in str(e.value)
    with pytest.raises(hpo.StudyNotFoundError):
        hpo.load_study("ray-unplaceable", postgres_url)


def _hpo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": PATH}
    return subprocess.run(
        [str(BIN / "hpo"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=240
    )


def test_submit_runs_the_study_as_a_ray_job_and_wait_returns_its_outcome(
    cluster, postgres_url, tmp_path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    study = {
        "name": "ray-submitted", "storage": postgres_url, "n_trials": 3, "run_dir": str(tmp_path / "runs"),
        "sampler": {"type": "random", "seed": 0},
        "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic", "max_epochs": 2},
        "search_space": {"x": {"type": "float", "low": -5, "high": 5}},
    }
    (code / "study.yaml").write_text(yaml.safe_dump(study))
    submit = ("submit", "--address", cluster.dashboard, "--working-dir", "code", "--wait")
    proc = _hpo(*submit, "code/study.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = proc.stdout.split()[0]
    assert "SUCCEEDED" in proc.stderr and "3/3 trials finished" in proc.stderr
    assert _states(hpo.load_study("ray-submitted", postgres_url)) == [TrialState.COMPLETE] * 3

    status = _hpo("job", "status", job_id, "--address", cluster.dashboard, cwd=tmp_path)
    assert status.returncode == 0 and f"{job_id}: SUCCEEDED" in status.stdout
    logs = _hpo("job", "logs", job_id, "--address", cluster.dashboard, cwd=tmp_path)
    assert "3/3 trials finished" in logs.stdout

    broken = {**study, "name": "ray-broken", "trial": {"entrypoint": "nowhere:train"}}
    (code / "broken.yaml").write_text(yaml.safe_dump(broken))
    failed = _hpo(*submit, "code/broken.yaml", cwd=tmp_path)
    assert failed.returncode == 1
    assert "FAILED" in failed.stderr and "cannot import 'nowhere'" in failed.stderr


def test_submit_refuses_a_relative_sqlite_path_and_a_study_outside_the_working_directory(
    write_study, tmp_path
) -> None:
    (tmp_path / "code").mkdir()
    submit = ("submit", "--address", "http://127.0.0.1:1", "--working-dir", "code")
    relative = _hpo(*submit, str(write_study({"storage": "sqlite:///relative.db"})), cwd=tmp_path)
    assert relative.returncode == 2 and "storage: a relative SQLite path" in relative.stderr
    absolute = write_study({"storage": f"sqlite:///{tmp_path / 'db.sqlite'}"})
    outside = _hpo(*submit, str(absolute), cwd=tmp_path)
    assert outside.returncode == 2 and "is not inside the working directory" in outside.stderr


def test_executor_flags_override_the_study_file(write_study) -> None:
    from hpo.cli._ray_cmds import with_executor

    spec = hpo.load_spec(write_study())  # executor.isolation: thread
    on_ray = with_executor(spec, "ray", "ray://head:10001").executor
    assert (on_ray.type, on_ray.address, on_ray.isolation) == ("ray", "ray://head:10001", "process")
    assert with_executor(spec, "ray", None).executor.address is None  # ray's default: auto
    assert with_executor(with_executor(spec, "ray", "auto"), "local", None).executor.address is None
    with pytest.raises(hpo.SpecError, match="^--address: applies to --executor ray"):
        with_executor(spec, None, "auto")
    with pytest.raises(hpo.SpecError, match="^--address: must be auto, local"):
        with_executor(spec, "ray", "http://head:8265")
    with pytest.raises(hpo.SpecError, match="executor.cpus_per_worker: applies to type: ray only"):
        hpo.spec_from_dict({
            "name": "t",
            "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic"},
            "executor": {"cpus_per_worker": 2},
        })


def test_a_ray_client_connection_is_tried_again_when_its_server_fails_to_start(monkeypatch) -> None:
    import ray

    from hpo.exceptions import HpoError
    from hpo.execution import _ray

    calls: list[str] = []

    def init(address: str, **_: object) -> None:
        calls.append(address)
        if len(calls) == 1:
            raise ConnectionError("Initialization failure from server: ZombieProcess")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(_ray.time, "sleep", lambda s: None)
    assert _ray.connect("ray://127.0.0.1:1") is True and len(calls) == 2
    calls.clear()

    def refused(address: str, **_: object) -> None:
        calls.append(address)
        raise ConnectionError("refused")

    monkeypatch.setattr(ray, "init", refused)
    with pytest.raises(HpoError, match="refused"):
        _ray.connect("ray://127.0.0.1:1")  # any other error is final at once
    assert len(calls) == 1
