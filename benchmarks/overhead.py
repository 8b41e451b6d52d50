"""Per-trial orchestration overhead: `hpo` vs plain Optuna on a trivial objective.

Both run the same objective (no training) with the same storage kind and sampler, in this
one process, alternating, and the script prints the ratio hpo/optuna of the time per
trial. A second part measures how the cost of one trial grows with the study size: the mean
cost of trials 2,000-2,100 over that of trials 100-200 (random sampler, SQLite).

    python benchmarks/overhead.py                       # SQLite; add --postgres URL too
    python benchmarks/overhead.py --trials 500 --growth 2100 \
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


class _Runner:
    """One study of one tool, grown in chunks so tools can alternate and share the load."""

    def __init__(self, tool: str, url: str, sampler: str) -> None:
        self.tool, self.url, self.sampler = tool, url, sampler
        self.name = f"{tool}-{sampler}-{uuid.uuid4().hex[:8]}"
        self.n = 0
        self.seconds = 0.0
        self.chunk_costs: list[float] = []
        if tool == "optuna":
            self.study = optuna.create_study(storage=url, sampler=_sampler(sampler), study_name=self.name)

    def grow(self, chunk: int) -> None:
        t0 = time.perf_counter()
        if self.tool == "optuna":
            self.study.optimize(_objective, n_trials=chunk)
        else:
            spec = _spec(self.name, self.url, self.sampler, self.n + chunk, self.tool.split("-")[1])
            hpo.optimize(spec, progress=Progress())
        dt = time.perf_counter() - t0
        self.n += chunk
        self.seconds += dt
        self.chunk_costs.append(dt / chunk)

    @property
    def per_trial(self) -> float:
        return self.seconds / self.n


def _alternate(runners: list[_Runner], total: int, chunk: int) -> None:
    for _ in range(total // chunk):
        for r in runners:
            r.grow(chunk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--growth", type=int, default=2100, help="study size for the growth part (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="repeats of the main table's runs")
    ap.add_argument("--chunk", type=int, default=100, help="growth part: trials each tool runs before the other")
    ap.add_argument("--postgres", help="PostgreSQL URL of an existing database to add to the runs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hpo-bench-"))
    backends = {"sqlite": f"sqlite:///{tmp}/bench.db"}
    optuna.storages.RDBStorage(backends["sqlite"])  # both tools then share one file, in the same journal mode
    from hpo.storage import create_storage

    create_storage(backends["sqlite"])
    if args.postgres:
        backends["postgresql"] = args.postgres
    print(f"ms per trial of a {args.trials}-trial study, median of {args.rounds} rounds; ratio = hpo / optuna.")
    print("Each round runs every tool once, one after the other, so load on the machine hits all alike.")
    print("'thread': trials in the orchestrator, like Optuna; 'process': in a warm worker process")
    print(f"{'backend':<11}{'sampler':<8}{'optuna':>9}{'hpo thread':>12}{'ratio':>7}{'hpo process':>13}{'ratio':>7}")
    for backend, url in backends.items():
        for sampler in ("random", "tpe"):
            costs: dict[str, list[float]] = {t: [] for t in ("optuna", "hpo-thread", "hpo-process")}
            for _ in range(args.rounds):
                for tool in costs:
                    r = _Runner(tool, url, sampler)
                    r.grow(args.trials)
                    costs[tool].append(r.per_trial)
            o, h, p = (statistics.median(c) for c in costs.values())
            print(
                f"{backend:<11}{sampler:<8}{o * 1e3:>9.2f}{h * 1e3:>12.2f}{h / o:>7.3f}{p * 1e3:>13.2f}{p / o:>7.3f}",
                flush=True,
            )
    if args.growth:
        url = f"sqlite:///{tmp}/growth.db"
        runners = [_Runner(t, url, "random") for t in ("optuna", "hpo-thread")]
        _alternate(runners, args.growth, args.chunk)
        last = (args.growth - 1) // args.chunk
        print(f"growth of one trial's cost, trials {last * args.chunk}-{(last + 1) * args.chunk} vs 100-200 "
              f"(random, sqlite, chunk means): " + ", ".join(
                  f"{r.tool} {r.chunk_costs[last] / r.chunk_costs[1]:.2f}x" for r in runners))


if __name__ == "__main__":
    main()
