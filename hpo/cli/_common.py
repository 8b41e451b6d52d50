"""What every ``hpo`` command shares: exit codes, the parser class, study references."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from hpo.exceptions import SpecError

__all__ = [
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STUDY",
    "Parser",
    "add_command",
    "database_url",
    "resolve_study",
    "study_ref",
]

EXIT_OK, EXIT_STUDY, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are bad input (exit 2) with one readable line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise SpecError(message)


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    help: str,
    run: Callable[[argparse.Namespace], int],
    example: str,
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` ends with an example; ``run(args)`` returns the exit code."""
    p = sub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"example:\n  {example}",
    )
    p.set_defaults(run=run)
    return p


def database_url(text: str) -> str:
    """argparse type of ``--storage``: a URL, never empty (an empty one would mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty database URL (e.g. sqlite:///hpo.db)")
    return text


def study_ref(p: argparse.ArgumentParser) -> None:
    """The ``STUDY [--storage URL]`` arguments of commands that read a stored study."""
    p.add_argument("study", help="a study file (studies/x.yaml) or a study name with --storage")
    p.add_argument("--storage", type=database_url,
                   help="database URL (default: the study file's, else sqlite:///hpo.db)")


def resolve_study(args: argparse.Namespace) -> tuple[str, str, int | None]:
    """(study name, storage URL, n_trials) from a study file or a name plus ``--storage``."""
    ref = Path(args.study)
    if ref.suffix in (".yaml", ".yml") or ref.is_file():
        from hpo.spec import load_spec

        spec = load_spec(ref, check_entrypoint=False)
        return spec.name, args.storage or spec.storage_url, spec.n_trials
    return args.study, args.storage or "sqlite:///hpo.db", None
