"""Running trial functions in threads of the orchestrator's own process.

The cheapest way to run single-worker trials: no process start, no serialization. A
trial that crashes the interpreter takes the study process with it; the heartbeat then
lets the next run of the study retry it.
"""

from __future__ import annotations

from typing import Any, Callable

from hpo.execution._base import Executor, TrialJob
from hpo.execution._context import TrialContext
from hpo.execution._outcome import TrialResult, classify
from hpo.spec import load_entrypoint

__all__ = ["InProcessExecutor"]


class InProcessExecutor(Executor):
    """Calls the entrypoint directly as ``fn(ctx)`` in the calling thread."""

    def run(
        self,
        job: TrialJob,
        report: Callable[[float, int], bool],
        stopping: Callable[[], bool],
    ) -> TrialResult:
        """Run ``job``'s function to its end and classify the outcome."""
        ctx = TrialContext(
            params=dict(job.params),
            number=job.number,
            max_epochs=job.max_epochs,
            device=job.device,
            engine_config=dict(job.engine_config),
            run_dir=job.run_dir,
            seed=job.seed,
            _report=report,
            _stopping=stopping,
        )
        returned: Any = None
        exc: BaseException | None = None
        try:
            fn = load_entrypoint(job.entrypoint)
            returned = fn(ctx)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - classify decides
            exc = e
        return classify(returned, exc, job.metric_names)
