"""The study loop: ask, run, tell, until ``n_trials`` trials have finished."""

from __future__ import annotations

import json
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.exceptions import SpecError
from hpo.execution._base import Executor, TrialChannel, TrialJob
from hpo.execution._heartbeat import Heartbeats
from hpo.execution._inprocess import InProcessExecutor
from hpo.execution._outcome import Outcome, TrialResult
from hpo.execution._pool import ProcessExecutor
from hpo.execution._resources import plan_slots
from hpo.execution._resume import (
    CHECKPOINT_ATTR,
    ERROR_ATTR,
    METRICS_ATTR,
    NOT_CONTINUED_ATTR,
    PROMOTED,
    PROMOTED_AT_END,
    RESUME_ATTR,
    enqueue_continuation,
)
from hpo.execution._retention import collect_checkpoints, trial_checkpoint_dir
from hpo.execution._study import budget, fail_lost_trials, open_study, report, tell
from hpo.reporting import Progress, make_progress
from hpo.spec import StudySpec, apply_engine_params, sample_params, spec_from_dict
from hpo.storage import StudyLock, study_lock

__all__ = ["optimize"]

RUN_DIR_ATTR = "hpo:run_dir"
RUN_DIRS_ATTR = "hpo:run_dirs"  # every run directory the study has used
CHECKPOINT_ROOT_ATTR = "hpo:checkpoint_root"


def optimize(
    spec: StudySpec,
    *,
    n_trials: int | None = None,
    storage: str | None = None,
    concurrency: int | None = None,
    timeout: float | None = None,
    reuse_workers: bool | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> optuna.Study:
    """Run (or continue) the study ``spec`` describes until it has ``n_trials`` finished trials.

    Args:
        spec: The validated study (see :func:`hpo.load_spec`).
        n_trials: Override ``spec.n_trials``: the total of finished trials wanted.
        storage: Override ``spec.storage``.
        concurrency: Override ``spec.concurrency``: trials run at once.
        timeout: Override ``spec.timeout``: seconds after which no new trial starts.
        reuse_workers: Override ``spec.executor.reuse_workers`` (False: fresh processes per trial).
        executor: Where trials run (default: as ``spec.executor`` says: worker processes,
            threads of this process, or Ray actors).
        progress: Where progress goes (default: a live display on a terminal, else log lines).
            A sink that raises is dropped with a note, never failing a trial.

    Returns:
        The Optuna study, with ``best_params``, ``best_value``, ``trials``...
    """
    spec = _override(
        spec,
        n_trials=n_trials,
        storage=storage,
        concurrency=concurrency,
        timeout=timeout,
        **{"executor.reuse_workers": reuse_workers},
    )
    executor = executor or make_executor(spec)  # resources are checked before the database is touched
    study, rdb = open_study(spec)
    from hpo.integrations import CompositeProgress

    sink = progress or make_progress()
    loop = _Loop(spec, study, rdb, executor, sink if isinstance(sink, CompositeProgress) else CompositeProgress(sink))
    try:
        loop.run()
    finally:
        loop.progress.close()
    return study


def make_executor(spec: StudySpec) -> Executor:
    """The executor ``spec.executor`` asks for, with this machine's resources divided
    (``type: ray``: connected to its cluster, see :class:`hpo.execution._ray.RayExecutor`).

    Raises:
        SpecError: The trials need more CPUs or GPUs than the machine (or the Ray cluster) has.
    """
    res = spec.trial.resources
    if spec.executor.type == "ray":
        try:
            from hpo.execution._ray import RayExecutor
        except ImportError as e:
            raise SpecError(
                f"type: ray needs Ray ({e}); install it with: pip install 'hpo[ray]'", key="executor.type"
            ) from None
        return RayExecutor(spec)
    if spec.executor.isolation == "thread":
        return InProcessExecutor()
    slots = plan_slots(
        workers=res.workers, device=res.device, gpus_per_worker=res.gpus_per_worker, concurrency=spec.concurrency
    )
    return ProcessExecutor(slots, res.workers, reuse=spec.executor.reuse_workers)


def _override(spec: StudySpec, **changes: Any) -> StudySpec:
    data = json.loads(spec.model_dump_json())
    for key, value in changes.items():
        if value is not None:
            *parents, leaf = key.split(".")
            node = data
            for p in parents:
                node = node[p]
            node[leaf] = value
    # A SpecError names the keyword argument's key, and no file: the value is not the study file's.
    return spec_from_dict(data, check_entrypoint=False, check_engine=False)


class _Loop:
    """Runs up to ``concurrency`` trials at once in worker threads; the main thread watches."""

    def __init__(
        self,
        spec: StudySpec,
        study: optuna.Study,
        storage: optuna.storages.RDBStorage,
        executor: Executor,
        progress: Progress,
    ) -> None:
        self.spec = spec
        self.study = study
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(spec.name)
        self.executor = executor
        self.progress = progress
        self.stop = threading.Event()
        self.lock = threading.Lock()  # serializes the budget check with ask()
        self.study_lock = StudyLock(storage, spec.name)  # ... across processes
        self.deadline = time.monotonic() + spec.timeout if spec.timeout else None
        self.errors: list[BaseException] = []
        self.next_stale_check = 0.0
        self.unbeaten: dict[int, float] = {}  # RUNNING trials seen without a heartbeat, since when
        self.maybe_continuation: dict[int, bool] = {}
        self.run_dir = Path(spec.run_dir or Path("hpo_runs") / spec.name).resolve()
        self.ckpt_root = Path(spec.checkpoints.root).resolve() if spec.checkpoints.root else self.run_dir / "checkpoints"
        self.heartbeats = Heartbeats(storage, spec.executor.heartbeat_interval)
        self.heartbeat_s = spec.executor.heartbeat_interval

    def run(self) -> None:
        for key, value in ((RUN_DIR_ATTR, str(self.run_dir)), (CHECKPOINT_ROOT_ATTR, str(self.ckpt_root))):
            if self.study.user_attrs.get(key) != value:
                self.study.set_user_attr(key, value)
        used = list(self.study.user_attrs.get(RUN_DIRS_ATTR) or [])
        if str(self.run_dir) not in used:  # runs from other directories leave their trials' logs there
            self.study.set_user_attr(RUN_DIRS_ATTR, [*used, str(self.run_dir)])
        b = budget(self.storage, self.study_id, self.spec.n_trials)
        self.progress.start(self.spec, b.done, self.study)
        # Each slot thread sets its event when it ends. The main thread waits on those events,
        # never in Thread.join: a join interrupted by Ctrl-C marks the thread finished while
        # it still runs (CPython 3.11), and we must wait for running trials to wind down.
        ended = [threading.Event() for _ in range(self.spec.concurrency)]
        for i, event in enumerate(ended):
            threading.Thread(target=self._worker, args=(event,), name=f"hpo-trial-slot-{i}", daemon=True).start()
        try:
            while not all(e.wait(timeout=0.2 / len(ended)) for e in ended):
                self.progress.refresh()
        except KeyboardInterrupt:
            # Running trials see `stopping()` at their next report and end as INTERRUPTED.
            self.stop.set()
            self.progress.note("interrupted: finishing running trials (Ctrl-C again to abandon them)")
            for event in ended:
                event.wait()
            raise
        finally:
            self.executor.close()
            self.heartbeats.close()
            self.study_lock.close()
        if (self.deadline is not None and time.monotonic() >= self.deadline and not self.errors
                and not budget(self.storage, self.study_id, self.spec.n_trials).finished):
            self.progress.note(f"timeout of {self.spec.timeout:g}s reached: no new trial was started after it")
        if self.spec.checkpoints.enabled:
            with study_lock(self.storage, self.spec.name):
                collect_checkpoints(self.study, self.ckpt_root, self.spec.checkpoints.keep.best)
        if self.errors:
            raise self.errors[0]

    def _next_trial(self) -> optuna.Trial | None:
        """Ask for a trial if the budget allows; None when this slot should stop."""
        while not self.stop.is_set():
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return None
            with self.lock, self.study_lock.hold() as conn:
                now = time.monotonic()
                if now >= self.next_stale_check:  # a query per trial would cost more than it finds
                    fail_lost_trials(
                        self.study, self.storage, self.study_id, self.spec.executor.grace_period, self.unbeaten
                    )
                    self.next_stale_check = now + self.heartbeat_s
                b = budget(self.storage, self.study_id, self.spec.n_trials, conn)
                if b.finished or (self._space_exhausted() and not b.waiting):
                    # No new trial will start. A promotion is no new trial: one the last trials
                    # made promotable still resumes (queued retries run first, through ask()).
                    if not self._promote(budget_spent=True):
                        return None
                    trial = self.study.ask()
                    self.maybe_continuation[trial.number] = True
                    return trial
                if b.can_start:
                    waiting = self._promote() or b.waiting > 0
                    trial = self.study.ask()
                    self.maybe_continuation[trial.number] = waiting
                    return trial
            # Others (threads here or other processes) hold the rest of the budget: wait.
            self.stop.wait(1.0)
        return None

    def _promote(self, budget_spent: bool = False) -> bool:
        """Let a pruner that pauses trials resume one (it runs before any new trial)."""
        pick = getattr(self.study.pruner, "next_promotion", None)  # a hpo.pruning.PromotingPruner
        if pick is not None and (paused := pick(self.study, budget_spent)) is not None:
            reason = PROMOTED_AT_END if budget_spent else PROMOTED
            return enqueue_continuation(self.study, paused, reason=reason, max_attempts=None, retry=False)
        return False

    def _space_exhausted(self) -> bool:
        """Whether a grid or brute-force sampler has tried every combination."""
        sampler = self.study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler):
            return sampler.is_exhausted(self.study)
        return bool(getattr(sampler, "exhausted", False))

    def _worker(self, ended: threading.Event) -> None:
        try:
            while (trial := self._next_trial()) is not None:
                self._run_one(trial)
        except BaseException as e:  # noqa: BLE001 - surfaced by run()
            self.errors.append(e)
            self.stop.set()
        finally:
            ended.set()

    def _run_one(self, trial: optuna.Trial) -> None:
        number = trial.number
        # Only a queued trial (it comes with its parameters) can be a continuation.
        maybe = self.maybe_continuation.pop(number, True)
        queued = bool(trial.params) or not self.spec.search_space or maybe
        params = sample_params(trial, self.spec.search_space)
        resume: dict = {}
        if queued:
            resume = self.storage.get_trial_system_attrs(trial._trial_id).get(RESUME_ATTR) or {}  # noqa: SLF001
        trial_dir = self.run_dir / f"trial_{number}"
        job = TrialJob(
            entrypoint=self.spec.trial.entrypoint,
            study_name=self.spec.name,
            storage_url=self.spec.storage_url,
            trial_id=trial._trial_id,  # noqa: SLF001 - Trial exposes no public id
            number=number,
            params=params,
            engine_config=apply_engine_params(self.spec.trial.engine, params),
            metric_names=self.spec.metric_names,
            max_epochs=self.spec.trial.max_epochs,
            workers=self.spec.trial.resources.workers,
            device=self.spec.trial.resources.device,
            run_dir=trial_dir,
            seed=zlib.crc32(f"{self.spec.name}:{number}".encode()),
            checkpoint_dir=trial_checkpoint_dir(self.ckpt_root, number) if self.spec.checkpoints.enabled else None,
            keep_latest=self.spec.checkpoints.keep.latest,
            resume_from=Path(resume["path"]) if resume else None,
            start_step=int(resume.get("step", 0)),
        )
        self.progress.trial_started(number, params)
        with self.heartbeats.running(job.trial_id):  # until recorded: waiting for the lock is no loss
            result = self.executor.run(job, _StudyChannel(self, trial))
            self._tell(trial, result)

    def _tell(self, trial: optuna.Trial, result: TrialResult) -> None:
        # Under the study's lock, so that no checkpoint clean-up (another slot's or another
        # process's) sees a failed trial before the continuation that resumes from its
        # checkpoint is queued.
        with self.lock, self.study_lock.hold() as conn:
            frozen, recorded = self._record(trial, result)
            if not recorded:
                # Taken for lost while it ran (its heartbeat stalled past the grace period), it
                # is FAIL and already continued: this result is dropped, the continuation redoes it.
                result = TrialResult(Outcome.INTERRUPTED, error="taken for lost while it ran; continued by another trial")
            elif trial_checkpoint_dir(self.ckpt_root, frozen.number).is_dir():
                collect_checkpoints(self.study, self.ckpt_root, self.spec.checkpoints.keep.best)
            self.progress.counted(budget(self.storage, self.study_id, self.spec.n_trials, conn).done)
        self.progress.trial_finished(frozen, result)

    def _record(self, trial: optuna.Trial, result: TrialResult) -> tuple[FrozenTrial, bool]:
        """Store ``result``: the trial as stored, and False if someone else had already
        finished it (nothing is written then). Called under the study's lock."""
        tid = trial._trial_id  # noqa: SLF001 - Trial exposes no public id
        state = {Outcome.COMPLETE: TrialState.COMPLETE, Outcome.PRUNED: TrialState.PRUNED}.get(
            result.outcome, TrialState.FAIL
        )
        try:
            if result.metrics and set(result.metrics) != set(self.spec.metric_names):
                trial.set_user_attr(METRICS_ATTR, dict(result.metrics))
            if result.error:
                trial.set_user_attr(ERROR_ATTR, result.error)
            if state is TrialState.FAIL:
                # Its continuation is queued before the trial ends: killed between the two
                # writes, the trial stays RUNNING and is found lost with its continuation
                # there already (see fail_lost_trials), rather than FAIL with none.
                stored = self.storage.get_trial(tid)
                if stored.state.is_finished():
                    return stored, False
                if result.outcome is Outcome.INTERRUPTED:  # not the trial's fault: the next run starts with it
                    enqueue_continuation(self.study, stored, reason="interrupted", max_attempts=None)
                elif not enqueue_continuation(
                    self.study, stored, reason="error", max_attempts=self.spec.trial.max_retries + 1
                ):
                    # Its retries are used up: found lost after a crash before the FAIL below,
                    # it is failed, not continued as a trial lost with its orchestrator.
                    self.storage.set_trial_system_attr(tid, NOT_CONTINUED_ATTR, "retries used up")
            frozen = tell(self.study, trial, state, result.values, reread=not self.executor.writes_through_channel)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):  # "Cannot tell a FAIL trial"
            stored = self.storage.get_trial(tid)
            if stored.state.is_finished():
                return stored, False
            raise
        return frozen, True


class _StudyChannel(TrialChannel):
    """A trial's link to the study database, used from the trial's own thread."""

    def __init__(self, loop: _Loop, trial: optuna.Trial) -> None:
        self.loop = loop
        self.trial = trial

    def report(self, value: float, step: int) -> bool:
        prune = report(self.trial, value, step)
        self.loop.progress.trial_reported(self.trial.number, step, value)
        return prune

    def checkpointed(self, step: int, path: str) -> None:
        self.trial.set_user_attr(CHECKPOINT_ATTR, {"step": step, "path": path})

    def stopping(self) -> bool:
        return self.loop.stop.is_set()
