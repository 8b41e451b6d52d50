"""For tests that interrupt a subprocess with SIGINT (Ctrl-C)."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn`` that gives the child SIGINT's default action.

    A shell that starts the test run in the background sets SIGINT to ignored, children
    inherit that, and Python then installs no KeyboardInterrupt handler: the test's Ctrl-C
    would go unnoticed.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
