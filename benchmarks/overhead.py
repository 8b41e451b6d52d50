"""Per-trial orchestration overhead: `hpo` vs plain Optuna on a trivial objective.

Both run the same objective (no training) with the same storage kind and sampler, in this
one process, alternating, and the script prints the ratio hpo/optuna of the time per
trial, two ways: over the whole study (wall time / trials: set-up included, such as
starting hpo's warm worker process), and per trial once running (from the end of the
first trial to the end of the last, over trials - 1: each trial's own cost). The set-up
of hpo's process isolation is printed on its own. A second part measures how the cost of one trial grows with the study size: the running
cost per trial of trials 2,000-2,100 over that of trials 100-200 (random sampler, SQLite;
each chunk of 100 is one `optimize` call, the tools alternating chunk by chunk).

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
        self.steady = 0.0  # seconds from the end of the first trial to the end of the last
        self.chunk_costs: list[float] = []  # running cost per trial of each grow()
        self.chunk_walls: list[float] = []  # wall time per trial of each grow(), opening included

    def grow(self, chunk: int) -> None:
        t0 = time.perf_counter()
        if self.tool == "optuna":  # opens the study each time, as hpo.optimize does
            study = optuna.create_study(
                storage=self.url, sampler=_sampler(self.sampler), study_name=self.name, load_if_exists=True
            )
            study.optimize(_objective, n_trials=chunk)
        else:
            spec = _spec(self.name, self.url, self.sampler, self.n + chunk, self.tool.split("-")[1])
            hpo.optimize(spec, progress=Progress())
        dt = time.perf_counter() - t0
        ends = [t.datetime_complete for t in optuna.load_study(study_name=self.name, storage=self.url).trials]
        steady = (ends[-1] - ends[self.n]).total_seconds()
        self.steady += steady
        self.n += chunk
        self.seconds += dt
        self.chunk_costs.append(steady / (chunk - 1))
        self.chunk_walls.append(dt / chunk)

    @property
    def per_trial(self) -> float:
        """Wall time per trial, set-up included."""
        return self.seconds / self.n

    @property
    def per_running_trial(self) -> float:
        """Time per trial once the study runs: set-up and the first trial excluded."""
        return self.steady / (self.n - 1)

    @property
    def setup(self) -> float:
        """Seconds of the study not explained by its trials' running cost."""
        return self.seconds - self.per_running_trial * self.n


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
    ap.add_argument("--growth-only", action="store_true", help="skip the main table")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hpo-bench-"))
    backends = {"sqlite": f"sqlite:///{tmp}/bench.db"}
    optuna.storages.RDBStorage(backends["sqlite"])  # both tools then share one file, in the same journal mode
    from hpo.storage import create_storage

    create_storage(backends["sqlite"])
    if args.postgres:
        backends["postgresql"] = args.postgres
    for tool in ("optuna", "hpo-thread", "hpo-process"):  # imports (hpo's spec check loads torch) once
        _Runner(tool, backends["sqlite"], "random").grow(3)
    print(f"ms per trial of a {args.trials}-trial study, median of {args.rounds} rounds; ratio = hpo / optuna.")
    print("Each round runs every tool once, one after the other, so load on the machine hits all alike.")
    print("'thread': trials in the orchestrator, like Optuna; 'process': in a warm worker process.")
    print("'study': wall time / trials; 'running': end of trial 1 to end of the last, / (trials - 1);")
    print("'set-up': the process column's seconds not explained by its running cost (worker start).")
    print(f"{'':<19}{'study':-^34}  {'running':-^34}")
    print(f"{'backend':<11}{'sampler':<8}" + f"{'optuna':>8}{'thread':>8}{'ratio':>6}{'process':>8}{'ratio':>6}  " * 2
          + f"{'set-up s':>9}")
    for backend, url in ({} if args.growth_only else backends).items():
        for sampler in ("random", "tpe"):
            runs: dict[str, list[_Runner]] = {t: [] for t in ("optuna", "hpo-thread", "hpo-process")}
            for _ in range(args.rounds):
                for tool in runs:
                    r = _Runner(tool, url, sampler)
                    r.grow(args.trials)
                    runs[tool].append(r)
            line = f"{backend:<11}{sampler:<8}"
            for cost in ("per_trial", "per_running_trial"):
                o, h, p = (statistics.median(getattr(r, cost) for r in rs) for rs in runs.values())
                line += f"{o * 1e3:>8.2f}{h * 1e3:>8.2f}{h / o:>6.3f}{p * 1e3:>8.2f}{p / o:>6.3f}  "
            print(line + f"{statistics.median(r.setup for r in runs['hpo-process']):>9.2f}", flush=True)
    if args.growth:
        url = f"sqlite:///{tmp}/growth.db"
        runners = [_Runner(t, url, "random") for t in ("optuna", "hpo-thread")]
        _alternate(runners, args.growth, args.chunk)
        last = (args.growth - 1) // args.chunk
        print(f"growth of one trial's cost, trials {last * args.chunk}-{(last + 1) * args.chunk} vs 100-200 "
              f"(random, sqlite), running cost per trial: " + ", ".join(
                  f"{r.tool} {r.chunk_costs[last] / r.chunk_costs[1]:.2f}x" for r in runners)
              + "; wall time per trial of the chunk, opening the study included: " + ", ".join(
                  f"{r.tool} {r.chunk_walls[last] / r.chunk_walls[1]:.2f}x" for r in runners))

if __name__ == "__main__":
    main()
