"""Early stopping on the built-in tasks: best validation score and epochs spent, per method.

Every method searches the same task and search space with the same compute budget, once per
seed, one trial at a time. The budget is random search's: ``trials x max_epochs`` epochs, so a
method that stops trials early runs more of them (``--same-trials`` gives every method the
same number of trials instead):

    random          random search, no pruning (the reference)
    tpe             TPE, no pruning
    tpe+median      TPE + MedianPruner
    tpe+sha         TPE + Optuna's SuccessiveHalvingPruner (asha: stopped trials stay stopped)
    tpe+asha        TPE + asha_promote (paused trials resume from their checkpoints)
    tpe+hyperband   TPE + HyperbandPruner
    random+asha     random search + asha_promote (the sampler's share of tpe+asha; not run by default)
    optuna          plain Optuna, TPESampler + HyperbandPruner with study.optimize, calling
                    the same task function through a TrialContext whose report() calls
                    trial.report / trial.should_prune

Epochs are what count (the machine may be shared); a continuation counts only the epochs
it trained itself, and a trial that would end past the budget is not counted. "to target"
is the number of epochs, in trial order, until a completed trial matched random search's
final best of the same seed; its ratio is over the epochs random search needed for that
best (the median over seeds; "inf" when not reached within the budget), and its share of
random's budget is over all the epochs random search spent. The mean curve averages the
best value so far over the seeds, epoch by epoch: its columns give the first epoch at which
it matched random search's mean final best, and the ratio to the epoch at which random
search's own mean curve got there (the seeds' noise averages out instead of setting the
target).

    python benchmarks/early_stopping.py                         # both tasks, 5 seeds (~30 min)
    python benchmarks/early_stopping.py --tasks digits --seeds 2 --trials 12
    python benchmarks/early_stopping.py --tasks digits --max-epochs 27   # three ASHA rungs
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

import hpo
from hpo.execution import RESUME_ATTR, TrialJob, apply_engine_params, context_for
from hpo.pruning import rung_steps
from hpo.reporting import Progress
from hpo.spec import sample_params

optuna.logging.set_verbosity(optuna.logging.WARNING)

MAX_EPOCHS = 9
TPE = {"type": "tpe", "n_startup_trials": 5}
ASHA = {"min_resource": 1, "reduction_factor": 3}  # rungs end at epochs 1 and 3 of 9
PRUNERS: dict[str, dict[str, Any] | None] = {
    "random": {"type": "none"},
    "tpe": {"type": "none"},
    "tpe+median": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
    "tpe+sha": {"type": "asha", **ASHA},
    "tpe+asha": {"type": "asha_promote", **ASHA},
    "tpe+hyperband": {"type": "hyperband", **ASHA},
    "random+asha": {"type": "asha_promote", **ASHA},
    "optuna": None,
}


@dataclass(frozen=True)
class Task:
    """A built-in task with the search space and trial count the benchmark gives it."""

    entrypoint: str
    metric: str
    direction: str
    trials: int
    space: dict[str, Any]


TASKS = {
    "digits": Task(
        "hpo.tasks.digits:train",
        "val_accuracy",
        "maximize",
        30,
        {
            "optimizer": {"type": "categorical", "choices": ["AdamW", "SGD"]},
            "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
            "weight_decay": {
                "type": "float", "low": 1e-6, "high": 0.1, "log": True, "when": {"optimizer": "AdamW"},
            },
            "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"optimizer": "SGD"}},
            "hidden": {"type": "int", "low": 16, "high": 256, "step": 16},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
    ),
    "char_lm": Task(
        "hpo.tasks.char_lm:train",
        "val_loss",
        "minimize",
        16,
        {
            "lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
            "weight_decay": {"type": "float", "low": 1e-6, "high": 0.1, "log": True},
            "n_layer": {"type": "int", "low": 1, "high": 2},
            "n_embd": {"type": "categorical", "choices": [16, 32, 64]},
            "dropout": {"type": "float", "low": 0.0, "high": 0.2},
            "block_size": {"type": "categorical", "choices": [32]},
            "steps_per_epoch": {"type": "categorical", "choices": [8]},
        },
    ),
}


@dataclass(frozen=True)
class Run:
    """One study's outcome: per trial, in order, its epochs, final value (None: not complete) and curve."""

    epochs: list[int]
    values: list[float | None]
    seconds: float
    curves: list[dict[int, float]]

    def within(self, budget: float) -> Run:
        """The trials, in order, that ended within ``budget`` epochs."""
        n, spent = 0, 0
        while n < len(self.epochs) and spent + self.epochs[n] <= budget:
            spent += self.epochs[n]
            n += 1
        return Run(self.epochs[:n], self.values[:n], self.seconds, self.curves[:n])

    def best(self, maximize: bool) -> float:
        done = [v for v in self.values if v is not None]
        return (max if maximize else min)(done) if done else math.nan

    def epochs_to(self, target: float, maximize: bool) -> float:
        """Epochs spent until a completed trial's value matched ``target`` (inf: never)."""
        spent = 0
        for e, v in zip(self.epochs, self.values):
            spent += e
            if v is not None and (v >= target if maximize else v <= target):
                return float(spent)
        return math.inf


def _spec(task: Task, method: str, seed: int, root: Path, trials: int) -> hpo.StudySpec:
    return hpo.spec_from_dict(
        {
            "name": f"{method.replace('+', '-')}-{seed}",
            "storage": f"sqlite:///{root / 'studies.db'}",
            "direction": task.direction,
            "metric": task.metric,
            "sampler": {"type": "random", "seed": seed} if method.startswith("random") else {**TPE, "seed": seed},
            "pruner": PRUNERS[method] or {"type": "none"},
            "n_trials": trials,
            "run_dir": str(root / f"{method}-{seed}"),
            "executor": {"isolation": "thread"},
            "trial": {"entrypoint": task.entrypoint, "max_epochs": MAX_EPOCHS},
            "search_space": task.space,
        }
    )


def _trained_epochs(t: optuna.trial.FrozenTrial, resumed_at: int) -> int:
    return sum(1 for s in t.intermediate_values if s > resumed_at)


def _run_of(trials: list[optuna.trial.FrozenTrial], seconds: float) -> Run:
    epochs, values = [], []
    for t in trials:
        resume = t.system_attrs.get(RESUME_ATTR) or {}
        epochs.append(_trained_epochs(t, int(resume.get("step", 0))))
        values.append(t.value if t.state == optuna.trial.TrialState.COMPLETE else None)
    return Run(epochs, values, seconds, [dict(t.intermediate_values) for t in trials])


def run_hpo(task: Task, method: str, seed: int, root: Path, trials: int, budget: float | None) -> Run:
    """Run ``trials`` trials, then more until the study has spent ``budget`` epochs (None: no more)."""
    spec = _spec(task, method, seed, root, trials)
    t0 = time.perf_counter()
    n = trials
    while True:
        trials = hpo.optimize(spec, n_trials=n, progress=Progress()).get_trials(deepcopy=False)
        run = _run_of(trials, time.perf_counter() - t0)
        spent = sum(run.epochs)
        if budget is None or spent >= budget:
            return run if budget is None else run.within(budget)
        # More trials (lineages: continuations do not count), sized by what one has cost so far.
        lineages = sum(1 for t in trials if RESUME_ATTR not in t.system_attrs)
        n += max(1, math.ceil((budget - spent) / max(spent / max(lineages, 1), 1.0)))


class _OptunaChannel:
    """A trial's report goes straight to Optuna: ``trial.report`` then ``trial.should_prune``."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def report(self, value: float, step: int) -> bool:
        self.trial.report(value, step)
        return self.trial.should_prune()

    def checkpointed(self, step: int, path: str) -> None:
        """Plain Optuna does not resume trials: nothing to record."""

    def stopping(self) -> bool:
        return False


def run_optuna(task: Task, seed: int, root: Path, trials: int, budget: float | None) -> Run:
    """Optuna's recommended pairing, TPE + Hyperband, with ``study.optimize``, until ``budget`` epochs."""
    spec = _spec(task, "tpe", seed, root, trials)  # for the search space and metric only
    study = optuna.create_study(
        storage=f"sqlite:///{root / 'optuna.db'}",
        study_name=f"optuna-{seed}",
        direction=task.direction,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE["n_startup_trials"]),
        pruner=optuna.pruners.HyperbandPruner(max_resource=MAX_EPOCHS, **ASHA),
    )
    fn = hpo.spec.load_entrypoint(task.entrypoint)

    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial, spec.search_space)
        job = TrialJob(
            entrypoint=task.entrypoint,
            study_name=study.study_name,
            storage_url="",
            trial_id=trial._trial_id,  # noqa: SLF001 - Trial exposes no public id
            number=trial.number,
            params=params,
            engine_config=apply_engine_params({}, params),
            metric_names=[task.metric],
            max_epochs=MAX_EPOCHS,
            seed=zlib.crc32(f"{study.study_name}:{trial.number}".encode()),
        )
        return float(fn(context_for(job, _OptunaChannel(trial)))[task.metric])

    def stop_at_budget(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        done = study.get_trials(deepcopy=False)
        if len(done) >= trials and (budget is None or sum(_trained_epochs(t, 0) for t in done) >= budget):
            study.stop()

    t0 = time.perf_counter()
    study.optimize(objective, callbacks=[stop_at_budget])
    run = _run_of(study.get_trials(deepcopy=False), time.perf_counter() - t0)
    return run if budget is None else run.within(budget)


def mean_curve_epochs(runs: list[Run], target: float, maximize: bool) -> float:
    """The first epoch at which the mean over seeds of the best value so far matched ``target``.

    Each seed's best so far is that of the trials that ended by that epoch; the mean exists
    from the epoch by which every seed has completed a trial (inf: never within the budget).
    """
    ends = []
    for r in runs:
        spent, best, steps = 0, None, []
        for e, v in zip(r.epochs, r.values):
            spent += e
            if v is not None and (best is None or (v > best if maximize else v < best)):
                best = v
                steps.append((spent, best))
        ends.append(steps)
    for epoch in sorted({spent for steps in ends for spent, _ in steps}):
        now = [[b for spent, b in steps if spent <= epoch] for steps in ends]
        if all(now):
            mean = statistics.mean(b[-1] for b in now)
            if (mean >= target if maximize else mean <= target) or math.isclose(mean, target, rel_tol=1e-12):
                return float(epoch)
    return math.inf


def _fmt(x: float, digits: int = 4) -> str:
    return "inf" if math.isinf(x) else ("nan" if math.isnan(x) else f"{x:.{digits}f}")


def rung_agreement(runs: list[Run]) -> dict[int, float]:
    """Per rung epoch: Spearman's rho between random search's trials' values there and their final
    values (every one of them trains to the end), the mean over seeds. Near 1, a rung keeps the
    trials that end best; low, early stopping keeps the wrong ones."""
    from scipy.stats import spearmanr

    out = {}
    for k in rung_steps(MAX_EPOCHS, ASHA["min_resource"], ASHA["reduction_factor"], 0):
        rhos = []
        for r in runs:
            pairs = [(c[k], c[MAX_EPOCHS]) for c in r.curves if k in c and MAX_EPOCHS in c]
            if len(pairs) > 2:
                rhos.append(float(spearmanr(*zip(*pairs)).statistic))
        out[k] = statistics.mean(rhos) if rhos else math.nan
    return out


def report(task_name: str, task: Task, runs: dict[str, list[Run]], methods: list[str]) -> None:
    maximize = task.direction == "maximize"
    seeds = len(runs["random"])
    targets = [r.best(maximize) for r in runs["random"]]
    reference = [r.epochs_to(t, maximize) for r, t in zip(runs["random"], targets)]
    mean_target = statistics.mean(targets)
    mean_reference = mean_curve_epochs(runs["random"], mean_target, maximize)
    print(f"\n{task_name}: {task.metric} ({task.direction}), ", end="")
    print(f"random search: {task.trials} trials x {MAX_EPOCHS} epochs, {seeds} seeds\n")
    print(
        f"| method | best {task.metric} (mean +- sd) | trials (mean) | epochs (mean) | reached target "
        "| epochs to target (median) | ratio to random (median) | ratio per seed | of random's budget (median) "
        "| mean curve: epochs to random's mean best | ratio to random | s/study |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        rs = runs[m]
        bests = [r.best(maximize) for r in rs]
        to = [r.epochs_to(t, maximize) for r, t in zip(rs, targets)]
        ratios = [a / b for a, b in zip(to, reference)]
        shares = [a / sum(r.epochs) for a, r in zip(to, runs["random"])]
        mean_to = mean_curve_epochs(rs, mean_target, maximize)
        sd = statistics.stdev(bests) if len(bests) > 1 else 0.0
        print(
            f"| {m} | {_fmt(statistics.mean(bests))} +- {_fmt(sd)} "
            f"| {statistics.mean(len(r.epochs) for r in rs):.0f} "
            f"| {statistics.mean(sum(r.epochs) for r in rs):.0f} "
            f"| {sum(not math.isinf(x) for x in to)}/{seeds} | {_fmt(statistics.median(to), 0)} "
            f"| {_fmt(statistics.median(ratios), 2)}x | {' '.join(_fmt(x, 2) for x in ratios)} "
            f"| {_fmt(statistics.median(shares), 2)}x "
            f"| {_fmt(mean_to, 0)} | {_fmt(mean_to / mean_reference, 2)}x "
            f"| {statistics.mean(r.seconds for r in rs):.0f} |"
        )
    agreement = ", ".join(f"epoch {k}: {rho:.2f}" for k, rho in rung_agreement(runs["random"]).items())
    print(f"\nrank agreement of random search's trials at the rungs with their final {task.metric} (Spearman): {agreement}")


def main() -> None:
    global MAX_EPOCHS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="digits,char_lm", help="comma-separated: digits, char_lm")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-epochs", type=int, default=MAX_EPOCHS, help="epochs of a full trial (rungs at 1, 3, 9, ...)")
    ap.add_argument("--min-resource", type=int, default=ASHA["min_resource"], help="epochs of the first rung")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--trials", type=int, help="trials per study (default: 30 digits, 16 char_lm)")
    ap.add_argument("--methods", default=",".join(m for m in PRUNERS if m != "random+asha"),
                    help="comma-separated; random is always run")
    ap.add_argument("--same-trials", action="store_true", help="every method runs --trials trials (default: the same epochs)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = ap.parse_args()
    MAX_EPOCHS = args.max_epochs
    ASHA["min_resource"] = args.min_resource
    for pruner in PRUNERS.values():
        if pruner is not None and "min_resource" in pruner:
            pruner["min_resource"] = args.min_resource
    import torch

    torch.set_num_threads(args.threads)
    methods = ["random"] + [m for m in args.methods.split(",") if m in PRUNERS and m != "random"]
    t_start = time.perf_counter()
    for name in args.tasks.split(","):
        task = TASKS[name]
        if args.trials:
            task = Task(task.entrypoint, task.metric, task.direction, args.trials, task.space)
        runs: dict[str, list[Run]] = {m: [] for m in methods}
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                budget = None if args.same_trials else task.trials * MAX_EPOCHS
                for m in methods:
                    root = Path(tmp)
                    if m == "optuna":
                        r = run_optuna(task, seed, root, task.trials, budget)
                    else:
                        r = run_hpo(task, m, seed, root, task.trials, budget)
                    runs[m].append(r)
                    print(
                        f"{name} seed {seed} {m:<14} best {_fmt(r.best(task.direction == 'maximize'))} "
                        f"epochs {sum(r.epochs):>4} trials {len(r.epochs):>3} {r.seconds:6.1f}s "
                        f"(total {time.perf_counter() - t_start:.0f}s)",
                        flush=True,
                    )
        report(name, task, runs, methods)


if __name__ == "__main__":
    main()
