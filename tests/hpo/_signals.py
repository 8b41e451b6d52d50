"""For tests that interrupt a subprocess with SIGINT (Ctrl-C)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path


def default_sigint() -> None:
    """``preexec_fn`` that gives the child SIGINT's default action.

    A shell that starts the test run in the background sets SIGINT to ignored, children
    inherit that, and Python then installs no KeyboardInterrupt handler: the test's Ctrl-C
    would go unnoticed.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_once_started(command: list[str], pid_files: list[Path], **popen: object) -> tuple[int, str]:
    """Run ``command``, press Ctrl-C once every file of ``pid_files`` exists; (exit code, stderr).

    Waits at most 90 s for the files (or for the process to end on its own) and 60 s for the
    process to exit after the signal.
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint, **popen)  # type: ignore[call-overload]
    deadline = time.monotonic() + 90
    while not all(p.exists() for p in pid_files) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err
