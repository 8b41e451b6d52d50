"""The ``hpo`` command line.

Exit codes: 0 success, 1 the study could not run or be found, 2 bad input (study file,
flag or argument), 130 interrupted. ``--traceback`` shows Python tracebacks.
"""

from __future__ import annotations

import os
import select
import sys
from typing import Sequence

from hpo.cli import _ray_cmds, _results_cmds, _study_cmds
from hpo.cli._common import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_STUDY, Parser
from hpo.exceptions import HpoError, SpecError

__all__ = ["build_parser", "main"]

# Each module adds its commands through `register(subparsers)`.
_COMMAND_MODULES = [_study_cmds, _results_cmds, _ray_cmds]


def build_parser() -> Parser:
    """The full ``hpo`` argument parser."""
    parser = Parser(prog="hpo", description="Hyperparameter optimization of PyTorch training jobs.")
    parser.add_argument("--traceback", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hpo`` command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # --traceback is taken anywhere before a `--` (after it, arguments are someone else's).
    cut = argv.index("--") if "--" in argv else len(argv)
    show_tb = "--traceback" in argv[:cut]
    argv = [a for a in argv[:cut] if a != "--traceback"] + argv[cut:]
    try:
        args = build_parser().parse_args(argv)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return args.run(args)
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
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe: a real error
        # The reader went away (`hpo trials ... | head`): nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _stdout_closed() -> bool:
    """Whether the reader of stdout has gone (a pipe whose other end is closed)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False
