"""What running trials on Ray costs: `hpo`'s Ray executor vs Ray Tune and Ray Train.

Two measurements on one Ray cluster (started here on free ports unless ``--address``):

1. Per-trial orchestration overhead on a trivial objective (no training, no reports),
   trials one at a time: ``hpo`` with ``executor: {type: ray}`` (1 worker, warm actor)
   vs Ray Tune with ``TuneConfig(reuse_actors=True, max_concurrent_trials=1)``; the local
   process executor is printed as a reference. Time per trial is the wall time of the
   whole run divided by the trials (start-up included), and the steady-state spacing of
   trial completions (start-up excluded).
2. Dead time of 2-worker trials: wall time of a trial not spent in its training function
   (a fixed 0.2 s job between two all-reduces). ``hpo`` keeps its gang warm across trials;
   Ray Train's ``TorchTrainer(ScalingConfig(num_workers=2))`` starts a worker group and a
   process group per ``fit()``.

    python benchmarks/ray_overhead.py                    # 100 trivial trials, 5 two-worker trials
    python benchmarks/ray_overhead.py --trials 30 --train-trials 3 --address 127.0.0.1:6380

Needs ``hpo[ray]``; part 2's Ray Train column needs ``ray[train]`` (skipped without it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

JOB_S = 0.2  # the "training" of part 2, per trial


def fixed_job(ctx: Any) -> dict[str, float]:
    """hpo entrypoint of part 2: all-reduce, sleep JOB_S, all-reduce; timestamps on rank 0."""
    import torch
    import torch.distributed as dist

    t = torch.ones(1)
    dist.all_reduce(t)
    t_start = time.time()
    time.sleep(JOB_S)
    dist.all_reduce(t)
    return {"value": float(t.item()), "t_start": t_start, "t_end": time.time()}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextlib.contextmanager
def local_cluster(cpus: int) -> Iterator[str]:
    """A one-node Ray cluster on free ports (never 6379), stopped afterwards; yields its address."""
    gcs, dash, client, nm, om, agent, agent_grpc, env_agent, metrics = _free_ports(9)
    temp = Path(tempfile.mkdtemp(prefix="hpo-bench-ray-"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(temp / "head.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={gcs}",
         f"--num-cpus={cpus}", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}",
         f"--ray-client-server-port={client}", f"--node-manager-port={nm}", f"--object-manager-port={om}",
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}", f"--temp-dir={temp}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (temp / "head.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((temp / "head.log").read_text()[-2000:])
            time.sleep(0.5)
        os.environ["RAY_AUTH_MODE"] = "disabled"
        yield f"127.0.0.1:{gcs}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _hpo_spec(address: str | None, storage: str, n: int, entrypoint: str, workers: int) -> Any:
    import hpo

    executor: dict[str, Any] = {"type": "ray", "address": address} if address else {"isolation": "process"}
    return hpo.spec_from_dict(
        {
            "name": f"bench-{uuid.uuid4().hex[:8]}",
            "storage": storage,
            "direction": "minimize",
            "sampler": {"type": "random", "seed": 0},
            "n_trials": n,
            "executor": executor,
            "checkpoints": {"enabled": False},
            "trial": {"entrypoint": entrypoint, "resources": {"workers": workers}},
            "search_space": {"x": {"type": "float", "low": -5, "high": 5}},
        },
        check_entrypoint=False,
    )


def run_hpo(address: str | None, storage: str, n: int, entrypoint: str = "hpo.tasks.synthetic:quadratic",
            workers: int = 1) -> tuple[float, Any]:
    """Seconds per trial of one `hpo.optimize` run (start-up included) and the study."""
    import hpo
    from hpo.reporting import Progress

    spec = _hpo_spec(address, storage, n, entrypoint, workers)
    t0 = time.perf_counter()
    study = hpo.optimize(spec, progress=Progress())
    return (time.perf_counter() - t0) / n, study


def steady_spacing(study: Any) -> float:
    """Median seconds between consecutive trial completions (start-up excluded)."""
    ends = sorted(t.datetime_complete.timestamp() for t in study.trials)
    return statistics.median(b - a for a, b in zip(ends, ends[1:]))


def run_tune(address: str, n: int) -> tuple[float, float]:
    """Seconds per trial of a Ray Tune run with reuse_actors=True, and completion spacing."""
    import ray
    from ray import tune

    def objective(config: dict[str, float]) -> None:
        tune.report({"value": (config["x"] - 2.0) ** 2, "t_end": time.time()})

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                objective,
                param_space={"x": tune.uniform(-5, 5)},
                tune_config=tune.TuneConfig(num_samples=n, reuse_actors=True, max_concurrent_trials=1),
                run_config=tune.RunConfig(storage_path=storage, name="bench", verbose=0),
            )
            t0 = time.perf_counter()
            grid = tuner.fit()
            per_trial = (time.perf_counter() - t0) / n
            ends = sorted(r.metrics["t_end"] for r in grid)
    finally:
        ray.shutdown()
    return per_trial, statistics.median(b - a for a, b in zip(ends, ends[1:]))


def run_train(address: str, n: int) -> list[float]:
    """Dead time of each of ``n`` sequential 2-worker TorchTrainer fits."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def loop(config: dict) -> None:
        import json

        import torch
        import torch.distributed as dist

        t = torch.ones(1)
        dist.all_reduce(t)
        t_start = time.time()
        time.sleep(JOB_S)
        dist.all_reduce(t)
        if dist.get_rank() == 0:  # Train v2 keeps metrics only with checkpoints: a file instead
            Path(config["out"]).write_text(json.dumps({"t_start": t_start, "t_end": time.time()}))

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    dead = []
    try:
        with tempfile.TemporaryDirectory() as storage:
            for i in range(n):
                out = Path(storage) / f"fit{i}.json"
                trainer = TorchTrainer(loop, train_loop_config={"out": str(out)},
                                       scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
                                       run_config=RunConfig(storage_path=storage, name=f"fit{i}"))
                t0 = time.time()
                trainer.fit()
                m = json.loads(out.read_text())
                dead.append(time.time() - t0 - (m["t_end"] - m["t_start"]))
    finally:
        ray.shutdown()
    return dead


def _hpo_dead_times(study: Any, started: float) -> list[float]:
    m = sorted((t.user_attrs["hpo:metrics"] for t in study.trials), key=lambda m: m["t_start"])
    ends = [started] + [x["t_end"] for x in m[:-1]]
    return [x["t_start"] - e for x, e in zip(m, ends)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trivial trials per system (part 1)")
    parser.add_argument("--train-trials", type=int, default=5, help="2-worker trials per system (part 2)")
    parser.add_argument("--address", help="an existing cluster's GCS host:port (default: start one here)")
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs of the cluster started here")
    parser.add_argument("--storage", help="study database (default: SQLite in a temp dir; one node only)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.ray_overhead` for the actors

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, (
        contextlib.nullcontext(args.address) if args.address else local_cluster(args.cpus)
    ) as address:
        storage = args.storage or f"sqlite:///{tmp}/bench.db"
        print(f"cluster {address}, storage {storage.split('://')[0]}, {os.cpu_count()} cores")

        print(f"\n1. trivial trials, one at a time, {args.trials} per system")
        local, local_study = run_hpo(None, storage, args.trials)
        ray_t, ray_study = run_hpo(address, storage, args.trials)
        tune_t, tune_steady = run_tune(address, args.trials)
        rows = [("hpo local (process)", local, steady_spacing(local_study)),
                ("hpo ray executor", ray_t, steady_spacing(ray_study)),
                ("ray tune reuse_actors", tune_t, tune_steady)]
        for name, per, steady in rows:
            print(f"  {name:24s} {per * 1000:8.1f} ms/trial overall, {steady * 1000:8.1f} ms/trial steady")
        ray_steady = steady_spacing(ray_study)
        print(f"  ratio tune / hpo-ray: {tune_t / ray_t:.2f}x overall, {tune_steady / ray_steady:.2f}x steady "
              "(below 1: tune is faster)")

        print(f"\n2. dead time of 2-worker trials ({JOB_S:.1f} s job each), {args.train_trials} per system")
        started = time.time()
        job = "benchmarks.ray_overhead:fixed_job"
        _, study = run_hpo(address, storage, args.train_trials, job, workers=2)
        hpo_dead = _hpo_dead_times(study, started)
        print(f"  hpo ray executor: first (cold) {hpo_dead[0]:.2f} s, then warm median "
              f"{statistics.median(hpo_dead[1:]) * 1000:.0f} ms; mean {statistics.mean(hpo_dead):.3f} s")
        try:
            train_dead = run_train(address, args.train_trials)
        except ImportError as e:
            print(f"  ray train: not measured ({e}); pip install 'ray[train]'")
            return
        print(f"  ray train TorchTrainer: median {statistics.median(train_dead):.2f} s per fit "
              f"(first {train_dead[0]:.2f} s); mean {statistics.mean(train_dead):.3f} s")
        mean_ratio = statistics.mean(train_dead) / statistics.mean(hpo_dead)
        warm_ratio = statistics.median(train_dead) / statistics.median(hpo_dead[1:])
        print(f"  ratio train / hpo-ray: {mean_ratio:.1f}x mean, {warm_ratio:.1f}x warm median")


if __name__ == "__main__":
    main()
