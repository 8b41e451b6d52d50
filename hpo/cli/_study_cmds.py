"""Commands that run and inspect studies: optimize, validate, status, best, trials."""

from __future__ import annotations

import argparse
import json
import sys

from hpo.cli._common import EXIT_OK, EXIT_STUDY, add_command, database_url, resolve_study, study_ref
from hpo.exceptions import HpoError, SpecError

__all__ = ["register"]


def _cmd_optimize(args: argparse.Namespace) -> int:
    from hpo.cli._ray_cmds import with_executor
    from hpo.execution import optimize
    from hpo.reporting import make_progress
    from hpo.spec import load_spec

    spec = with_executor(load_spec(args.spec), args.executor, args.address)
    try:
        study = optimize(
            spec,
            n_trials=args.n_trials,
            storage=args.storage,
            concurrency=args.concurrency,
            timeout=args.timeout,
            reuse_workers=False if args.no_reuse else None,
            progress=make_progress(quiet=args.quiet),
        )
    except SpecError as e:
        if e.file is not None:
            raise
        flag = (e.key or "").replace("_", "-")
        if e.key in ("storage", "n_trials", "concurrency", "timeout") and getattr(args, e.key) is not None:
            raise SpecError(e.message, key=f"--{flag}") from None
        if e.key in ("executor.type", "executor.address") and (args.executor or args.address) is not None:
            raise SpecError(e.message, key="--executor" if args.executor else "--address") from None
        from hpo.spec._load import error_in_file

        raise error_in_file(e.message, args.spec, e.key) from None  # what the study file says is refused
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.COMPLETE for t in trials):
        return EXIT_OK
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.last_step is not None]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    text = f"no trial completed ({len(pruned)} pruned, {failed} failed)"
    if pruned:  # e.g. a timeout before any paused trial was promoted to the end
        sign = 1.0 if spec.study_directions[0].value == "maximize" else -1.0
        top = max(pruned, key=lambda t: (t.last_step, sign * t.intermediate_values[t.last_step]))
        text += (f"; the furthest trained is trial {top.number}: {spec.metric_names[0]}="
                 f"{top.intermediate_values[top.last_step]:.6g} at step {top.last_step}")
    if failed:
        text += "; see `hpo trials` for the errors"
    print(text, file=sys.stderr)
    return EXIT_STUDY


def _cmd_validate(args: argparse.Namespace) -> int:
    from hpo.spec import load_spec

    spec = load_spec(args.spec)
    space = ", ".join(spec.search_space) or "(empty)"
    print(f"{args.spec}: ok: study {spec.name!r}, {spec.n_trials} trials, {spec.sampler.type} sampler, parameters: {space}")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from hpo.execution import load_study
    from hpo.reporting import status_summary
    from hpo.storage import redact_url

    name, url, n = resolve_study(args)
    study = load_study(name, url)
    if n is None:  # named, not given as a file: the budget of its latest run
        from hpo.execution._study import N_TRIALS_ATTR, SPEC_ATTR

        n = study.user_attrs.get(N_TRIALS_ATTR, (study.user_attrs.get(SPEC_ATTR) or {}).get("n_trials"))
    s = status_summary(study, n)
    s["storage"] = redact_url(url)
    from hpo.execution._optimize import CHECKPOINT_ROOT_ATTR

    root = study.user_attrs.get(CHECKPOINT_ROOT_ATTR)
    if root:
        from pathlib import Path

        from hpo.execution._retention import disk_usage

        s["checkpoints"] = root
        s["checkpoint_mb"] = round(disk_usage(Path(root)) / 2**20, 2)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"study {name}", show_header=False)
    for k, v in s.items():
        t.add_row(k, str(v))
    Console().print(t)
    return EXIT_OK


def _cmd_best(args: argparse.Namespace) -> int:
    from hpo.execution import load_study
    from hpo.reporting import best_summary

    name, url, _ = resolve_study(args)
    study = load_study(name, url)
    try:
        best = best_summary(study)
    except ValueError:
        best = []
    if not best:
        raise HpoError(f"study {name!r} has no completed trial yet")
    if args.json:
        print(json.dumps(best if len(best) > 1 else best[0], indent=2, default=str))
        return EXIT_OK
    metrics = study.metric_names or ["value"]
    for b in best:
        vals = ", ".join(f"{m}={v:.6g}" for m, v in zip(metrics, b["values"]))
        print(f"best trial {b['number']}: {vals}")
        for k, v in b["params"].items():
            print(f"  {k}: {v}")
    return EXIT_OK


def _cmd_trials(args: argparse.Namespace) -> int:
    from hpo.execution import load_study
    from hpo.reporting import trial_rows, write_trials

    name, url, _ = resolve_study(args)
    write_trials(trial_rows(load_study(name, url), curves=args.curves), args.format, sys.stdout)
    return EXIT_OK


def _cmd_logs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hpo.execution import load_study
    from hpo.execution._optimize import RUN_DIR_ATTR, RUN_DIRS_ATTR

    name, url, _ = resolve_study(args)
    study = load_study(name, url)
    run_dir = study.user_attrs.get(RUN_DIR_ATTR)
    if run_dir is None:
        raise HpoError(f"study {name!r} has no run directory recorded (it has not run yet)")
    n = len(study.get_trials(deepcopy=False))
    if not 0 <= args.trial < n:
        raise SpecError(f"study {name!r} has no trial {args.trial} (its trials are 0-{n - 1})" if n else
                        f"study {name!r} has no trials yet", key="TRIAL")
    # The latest run's directory first, then those of earlier runs (made elsewhere).
    dirs = [run_dir, *reversed([d for d in study.user_attrs.get(RUN_DIRS_ATTR) or [] if d != run_dir])]
    candidates = [Path(d) / f"trial_{args.trial}" for d in dirs]
    trial_dir = next((c for c in candidates if c.is_dir()), candidates[0])
    logs = sorted(trial_dir.glob("rank_*.log"), key=lambda p: int(p.stem.split("_")[1]))
    if args.rank is not None:
        ranks = [p.stem for p in logs]
        logs = [p for p in logs if p.stem == f"rank_{args.rank}"]
        if ranks and not logs:
            raise SpecError(f"trial {args.trial} has no rank {args.rank} (it ran {', '.join(ranks)})", key="--rank")
    if not logs:
        raise HpoError(
            f"no logs for trial {args.trial} in {' or '.join(map(str, candidates))} "
            "(trials run with executor.isolation: thread write to the orchestrator's own output; a study "
            "submitted with hpo submit keeps them on the cluster's head node)"
        )
    for path in logs:
        if len(logs) > 1:
            print(f"==> {path.stem} <==")
        text = path.read_text(errors="replace")
        sys.stdout.write(text)
        if not text:  # said on stderr, so `hpo logs ... > file` keeps only what the trial wrote
            print(f"({path.stem} of trial {args.trial} wrote nothing: {path})", file=sys.stderr)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the ``hpo`` parser."""
    p = add_command(sub, "optimize", "run or continue a study", _cmd_optimize,
                    "hpo optimize studies/quickstart.yaml --n-trials 40 --concurrency 2")
    p.add_argument("spec", help="study file (YAML)")
    p.add_argument("--n-trials", type=int, help="total finished trials wanted (overrides n_trials)")
    p.add_argument("--storage", type=database_url, help="database URL (overrides storage)")
    p.add_argument("--concurrency", type=int, help="trials at once (overrides concurrency)")
    p.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-reuse", action="store_true", help="start fresh worker processes for every trial")
    p.add_argument("--executor", choices=["local", "ray"], help="where trials run (overrides executor.type)")
    p.add_argument("--address", help="with --executor ray: the cluster, auto, local, ray://HOST:PORT "
                   "or HOST:PORT (overrides executor.address)")

    p = add_command(sub, "validate", "check a study file without running it", _cmd_validate,
                    "hpo validate studies/quickstart.yaml")
    p.add_argument("spec", help="study file (YAML)")

    p = add_command(sub, "status", "summary of a study", _cmd_status,
                    "hpo status studies/quickstart.yaml\n  hpo status quickstart --storage sqlite:///quickstart.db")
    study_ref(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add_command(sub, "best", "the best trial's parameters and value", _cmd_best,
                    "hpo best studies/quickstart.yaml --json")
    study_ref(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add_command(sub, "trials", "every trial of a study", _cmd_trials,
                    "hpo trials studies/quickstart.yaml --format csv > trials.csv")
    study_ref(p)
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="table (default), csv or json; csv and json have a column per parameter and metric")
    p.add_argument("--curves", action="store_true", help="include learning curves (intermediate values)")

    p = add_command(sub, "logs", "a trial's per-rank stdout/stderr", _cmd_logs,
                    "hpo logs studies/quickstart.yaml 3 --rank 0")
    study_ref(p)
    p.add_argument("trial", type=int, help="trial number")
    p.add_argument("--rank", type=int, help="only this rank's log")
