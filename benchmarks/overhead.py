"""Per-trial orchestration overhead: `hpo` vs plain Optuna on a trivial objective.

Both run the same objective (no training) with the same storage kind and sampler, in this
one process, alternating, and the script prints the ratio hpo/optuna of the time per
trial. A second part measures how the cost of one trial grows with the study size: the
median duration of trials 90-110 vs 1,990-2,010 (random sampler, SQLite).

    python benchmarks/overhead.py                       # SQLite; add --postgres URL too
    python benchmarks/overhead.py --trials 500 --growth 2010 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import optuna

import hpo
from hpo.reporting import Progress

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    y = trial.suggest_float("y", -5, 5)
    return (x - 2) ** 2 + (y + 1) ** 2


def _spec(name: str, url: str, sampler: str, n: int, isolation: str) -> hpo.StudySpec:
    return hpo.spec_from_dict(
        {
            "name": name,
            "executor": {"isolation": isolation},
            "storage": url,
            "direction": "minimize",
            "sampler": {"type": sampler, "seed": 0},
            "n_trials": n,
            "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic"},
            "search_space": {"x": {"type": "float", "low": -5, "high": 5}, "y": {"type": "float", "low": -5, "high": 5}},
        }
    )


def _sampler(kind: str) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=0) if kind == "random" else optuna.samplers.TPESampler(seed=0)


def run_hpo(url: str, sampler: str, n: int, isolation: str = "thread") -> tuple[float, optuna.Study]:
    spec = _spec(f"hpo-{uuid.uuid4().hex[:8]}", url, sampler, n, isolation)
    t0 = time.perf_counter()
    study = hpo.optimize(spec, progress=Progress())
    return (time.perf_counter() - t0) / n, study


def run_optuna(url: str, sampler: str, n: int) -> tuple[float, optuna.Study]:
    t0 = time.perf_counter()
    study = optuna.create_study(storage=url, sampler=_sampler(sampler), study_name=f"opt-{uuid.uuid4().hex[:8]}")
    study.optimize(_objective, n_trials=n)
    return (time.perf_counter() - t0) / n, study


def growth(study: optuna.Study, lo: int, hi: int) -> float:
    """Median start-to-start time around trial ``hi`` over that around trial ``lo``."""
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False)]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    return statistics.median(gaps[hi - 10 : hi + 10]) / statistics.median(gaps[lo - 10 : lo + 10])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--growth", type=int, default=2010, help="study size for the growth part (0: skip)")
    ap.add_argument("--postgres", help="PostgreSQL URL of an existing database to add to the runs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hpo-bench-"))
    backends = {"sqlite": f"sqlite:///{tmp}/bench.db"}
    optuna.storages.RDBStorage(backends["sqlite"])  # both tools then share one file, in the same journal mode
    from hpo.storage import create_storage

    create_storage(backends["sqlite"])
    if args.postgres:
        backends["postgresql"] = args.postgres
    print("ms per trial; ratio = hpo / optuna; 'thread' runs trials in the orchestrator like Optuna,")
    print("'process' in a warm worker process (the default isolation)")
    print(f"{'backend':<11}{'sampler':<8}{'optuna':>9}{'hpo thread':>12}{'ratio':>7}{'hpo process':>13}{'ratio':>7}")
    for backend, url in backends.items():
        for sampler in ("random", "tpe"):
            o, _ = run_optuna(url, sampler, args.trials)
            h, _ = run_hpo(url, sampler, args.trials, "thread")
            p, _ = run_hpo(url, sampler, args.trials, "process")
            print(
                f"{backend:<11}{sampler:<8}{o * 1e3:>9.2f}{h * 1e3:>12.2f}{h / o:>7.3f}{p * 1e3:>13.2f}{p / o:>7.3f}",
                flush=True,
            )
    if args.growth:
        url = f"sqlite:///{tmp}/growth.db"
        _, os_ = run_optuna(url, "random", args.growth)
        _, hs = run_hpo(url, "random", args.growth)
        hi = args.growth - 20
        print(f"growth of one trial's cost, trial {hi} vs trial 100 (random, sqlite): "
              f"optuna {growth(os_, 100, hi):.2f}x, hpo {growth(hs, 100, hi):.2f}x")


if __name__ == "__main__":
    main()
