"""The ``hpo`` command line.

Exit codes: 0 success, 1 the study could not run or be found, 2 bad input (study file,
flag or argument), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from hpo.exceptions import HpoError, SpecError

__all__ = ["main"]

EXIT_OK, EXIT_STUDY, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are bad input (exit 2) with one readable line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise SpecError(message)


def _study_ref(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="a study file (studies/x.yaml) or a study name with --storage")
    p.add_argument("--storage", help="database URL (default: the study file's, else sqlite:///hpo.db)")


def _build() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="hpo", description="Hyperparameter optimization of PyTorch training jobs.")
    parser.add_argument("--traceback", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "optimize",
        help="run or continue a study",
        formatter_class=fmt,
        epilog="example:\n  hpo optimize studies/quickstart.yaml --n-trials 40 --concurrency 2",
    )
    p.add_argument("spec", help="study file (YAML)")
    p.add_argument("--n-trials", type=int, help="total finished trials wanted (overrides n_trials)")
    p.add_argument("--storage", help="database URL (overrides storage)")
    p.add_argument("--concurrency", type=int, help="trials at once (overrides concurrency)")
    p.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser(
        "validate",
        help="check a study file without running it",
        formatter_class=fmt,
        epilog="example:\n  hpo validate studies/quickstart.yaml",
    )
    p.add_argument("spec", help="study file (YAML)")

    p = sub.add_parser(
        "status",
        help="summary of a study",
        formatter_class=fmt,
        epilog="examples:\n  hpo status studies/quickstart.yaml\n  hpo status quickstart --storage sqlite:///quickstart.db",
    )
    _study_ref(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser(
        "best",
        help="the best trial's parameters and value",
        formatter_class=fmt,
        epilog="example:\n  hpo best studies/quickstart.yaml --json",
    )
    _study_ref(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser(
        "trials",
        help="every trial of a study",
        formatter_class=fmt,
        epilog="example:\n  hpo trials studies/quickstart.yaml --format csv > trials.csv",
    )
    _study_ref(p)
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--curves", action="store_true", help="include learning curves (intermediate values)")
    return parser


def _resolve(args: argparse.Namespace) -> tuple[str, str, int | None]:
    """(study name, storage URL, n_trials) from a study file or a name plus --storage."""
    ref = Path(args.study)
    if ref.suffix in (".yaml", ".yml") or ref.is_file():
        from hpo.spec import load_spec

        spec = load_spec(ref, check_entrypoint=False)
        return spec.name, args.storage or spec.storage_url, spec.n_trials
    return args.study, args.storage or "sqlite:///hpo.db", None


def _cmd_optimize(args: argparse.Namespace) -> int:
    from hpo.execution import optimize
    from hpo.reporting import make_progress
    from hpo.spec import load_spec

    spec = load_spec(args.spec)
    study = optimize(
        spec,
        n_trials=args.n_trials,
        storage=args.storage,
        concurrency=args.concurrency,
        timeout=args.timeout,
        progress=make_progress(quiet=args.quiet),
    )
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print("no trial completed; see `hpo trials` for the errors", file=sys.stderr)
        return EXIT_STUDY
    return EXIT_OK


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

    name, url, n = _resolve(args)
    s = status_summary(load_study(name, url), n)
    s["storage"] = redact_url(url)
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

    name, url, _ = _resolve(args)
    study = load_study(name, url)
    try:
        best = best_summary(study)
    except ValueError:
        raise HpoError(f"study {name!r} has no completed trial yet") from None
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

    name, url, _ = _resolve(args)
    write_trials(trial_rows(load_study(name, url), curves=args.curves), args.format, sys.stdout)
    return EXIT_OK


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "optimize": _cmd_optimize,
    "validate": _cmd_validate,
    "status": _cmd_status,
    "best": _cmd_best,
    "trials": _cmd_trials,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hpo`` command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_tb = "--traceback" in argv
    try:
        args = _build().parse_args(argv)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return _COMMANDS[args.command](args)
    except SpecError as e:
        if show_tb:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except HpoError as e:
        if show_tb:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_STUDY
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
