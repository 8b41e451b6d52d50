"""Running trial functions in threads of the orchestrator's own process.

The cheapest way to run single-worker trials: no process start, no serialization. A
trial that crashes the interpreter takes the study process with it; the heartbeat then
lets the next run of the study retry it.
"""

from __future__ import annotations

from typing import Any

from hpo.execution._base import Executor, TrialChannel, TrialJob
from hpo.execution._context import TrialContext, settle_interruption
from hpo.execution._outcome import TrialResult, classify
from hpo.spec import load_entrypoint

__all__ = ["InProcessExecutor", "context_for"]


class InProcessExecutor(Executor):
    """Calls the entrypoint directly as ``fn(ctx)`` in the calling thread."""

    def run(self, job: TrialJob, channel: TrialChannel) -> TrialResult:
        """Run ``job``'s function to its end and classify the outcome."""
        ctx = context_for(job, channel)
        returned: Any = None
        exc: BaseException | None = None
        try:
            fn = load_entrypoint(job.entrypoint)
            returned = fn(ctx)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - classify decides
            exc = e
        return classify(returned, settle_interruption(ctx, exc, channel.stopping()), job.metric_names)


def context_for(
    job: TrialJob,
    channel: TrialChannel,
    rank: int = 0,
    world_size: int = 1,
    device: str | None = None,
) -> TrialContext:
    """The :class:`TrialContext` a trial function gets for ``job`` on ``rank``."""
    return TrialContext(
        params=dict(job.params),
        number=job.number,
        max_epochs=job.max_epochs,
        device=device or job.device,
        rank=rank,
        world_size=world_size,
        engine_config=dict(job.engine_config),
        run_dir=job.run_dir,
        seed=job.seed,
        checkpoint_dir=job.checkpoint_dir,
        keep_latest=job.keep_latest,
        resume_from=job.resume_from,
        start_step=job.start_step,
        _checkpointed=channel.checkpointed,
        _report=channel.report,
        _stopping=channel.stopping,
    )
