"""Trials on a Ray cluster: each trial's workers are a gang of Ray actors in one placement group.

The study loop (ask, tell, budget, retries, continuations) stays where ``hpo optimize``
runs and the study database stays the one source of truth; Ray only places and runs the
workers. A gang is ``workers`` actors created in one placement group (one bundle of
``{"CPU": c, "GPU": g}`` per worker, strategy PACK), so a trial's workers are scheduled
together or not at all; a trial whose placement group does not fit yet waits for the
cluster's resources to free up. The actors form one torch process group, are reused by
later trials while healthy, and are killed with their placement group removed when a
rank fails, dies or hangs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from sqlalchemy.engine import make_url

from hpo.exceptions import HpoError, SpecError
from hpo.execution._base import FAILURE_GRACE_S, START_TIMEOUT_S, Executor, TrialChannel, TrialJob
from hpo.execution._outcome import Outcome, TrialResult, gang_result
from hpo.execution._ray_worker import RankActor
from hpo.spec import StudySpec
from hpo.storage import redact_url

__all__ = ["RayExecutor", "check_cluster", "connect"]

# Timeout of the gang's collectives (a rank that stops answering fails the others).
PG_TIMEOUT_S = 300.0
# How long `close` lets running trials end (at their next report, once the study stops).
CLOSE_WAIT_S = 30.0
# Attempts at a Ray Client (ray://) connection whose server failed to start.
CLIENT_TRIES = 3

_RankActor = ray.remote(RankActor)


def connect(address: str) -> bool:
    """Connect this process to the Ray cluster at ``address`` unless it is connected already.

    Args:
        address: ``auto`` (the cluster this machine belongs to, or ``$RAY_ADDRESS``),
            ``local`` (start a cluster in this process), ``ray://host:port`` (Ray Client)
            or ``host:port`` (the head node's GCS).

    Returns:
        Whether this call connected (and so whoever called it should disconnect).

    Raises:
        HpoError: No cluster answers at ``address``.
    """
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        options["include_dashboard"] = False
    # Ray Client's proxy starts a server process per connection and can fail while doing so
    # ("Initialization failure from server"); a second try gets a fresh one.
    tries = CLIENT_TRIES if address.startswith("ray://") else 1
    for attempt in range(1, tries + 1):
        try:
            ray.init(address=address, **options)
            break
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds; each means "no cluster there"
            ray.shutdown()  # a failed init can leave half of Ray's global state behind
            text = str(e).strip()[-2000:] or type(e).__name__
            if attempt == tries or "Initialization failure from server" not in text:
                hint = ""
                if (Path.home() / ".ray" / "auth_token").exists() or os.environ.get("RAY_AUTH_MODE"):
                    hint = (" (if the cluster uses token authentication, this process needs the same "
                            "RAY_AUTH_TOKEN, or RAY_AUTH_MODE=disabled everywhere: docs/RAY.md)")
                raise HpoError(f"cannot connect to the Ray cluster at {address!r}: {text}{hint}") from None
            time.sleep(attempt)
    return True


def _bundle(spec: StudySpec) -> dict[str, float]:
    res = spec.trial.resources
    gpus = res.gpus_per_worker or (1 if res.device == "cuda" else 0)
    bundle = {"CPU": float(spec.executor.cpus_per_worker or 1.0)}
    if gpus:
        bundle["GPU"] = float(gpus)
    return bundle


def _is_sqlite(url: str) -> bool:
    try:
        return make_url(url).get_backend_name() == "sqlite"
    except Exception:  # noqa: BLE001 - create_storage reports unparsable URLs
        return False


def check_cluster(spec: StudySpec) -> None:
    """Refuse, before anything runs, what this connected Ray cluster cannot do for ``spec``.

    Raises:
        SpecError: The storage is SQLite but the cluster has several nodes (``storage``), or
            no placement of one trial's workers fits the cluster (``trial.resources``).
    """
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if _is_sqlite(spec.storage_url) and len(nodes) > 1:
        raise SpecError(
            f"SQLite ({redact_url(spec.storage_url)}) cannot be shared by the {len(nodes)} nodes of this Ray "
            "cluster: use a server database, e.g. postgresql://user@host/db",
            key="storage",
        )
    bundle, workers = _bundle(spec), spec.trial.resources.workers
    need = " + ".join(f"{v:g} {k}" for k, v in bundle.items())
    if not any(all(n["Resources"].get(k, 0.0) >= v for k, v in bundle.items()) for n in nodes):
        raise SpecError(
            f"a worker needs {need}, but no node of the Ray cluster has that much", key="trial.resources"
        )
    for key, per_worker in bundle.items():
        total = sum(n["Resources"].get(key, 0.0) for n in nodes)
        if per_worker * workers > total:
            raise SpecError(
                f"a trial needs {workers} worker(s) x {per_worker:g} {key} = {per_worker * workers:g} {key}, "
                f"but the Ray cluster has {total:g}",
                key="trial.resources",
            )


def _summary(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


class _Gang:
    """The actors of one trial slot, in their placement group."""

    def __init__(
        self, spec_data: dict[str, Any], bundle: dict[str, float], workers: int, device: str
    ) -> None:
        self.spec_data, self.bundle, self.workers, self.device = spec_data, bundle, workers, device
        self.healthy = True
        self.pg: PlacementGroup = placement_group([dict(bundle)] * workers, strategy="PACK")
        self.placed = self.pg.ready()  # resolves once the cluster has reserved every bundle
        self.actors: list[Any] = []

    def start(self) -> None:
        """Start one actor per bundle and form their process group."""
        threads = max(1, int(self.bundle["CPU"]))
        self.actors = [
            _RankActor.options(
                num_cpus=self.bundle["CPU"],
                num_gpus=self.bundle.get("GPU", 0),
                max_concurrency=2,  # `request_stop` must reach rank 0 while it runs a trial
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self.pg, placement_group_bundle_index=rank
                ),
            ).remote(rank, self.workers, self.spec_data, self.device, threads)
            for rank in range(self.workers)
        ]
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            addr, port = ray.get(self.actors[0].rendezvous.remote(), timeout=START_TIMEOUT_S)
            joins = [a.join.remote(addr, port, PG_TIMEOUT_S) for a in self.actors]
            for rank, ref in enumerate(joins):
                try:
                    ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
                except ray.exceptions.GetTimeoutError:
                    raise
                except ray.exceptions.RayError as e:
                    raise HpoError(f"worker rank {rank} did not start: {_summary(e)}") from None
        except ray.exceptions.GetTimeoutError:
            raise HpoError(f"workers did not form a process group within {START_TIMEOUT_S:.0f}s") from None
        except ray.exceptions.RayError as e:
            raise HpoError(f"worker rank 0 did not start: {_summary(e)}") from None

    def run(self, job: TrialJob, channel: TrialChannel) -> TrialResult:
        """Send ``job`` to every rank; return rank 0's result, or the first failure."""
        pending = {actor.run.remote(job): rank for rank, actor in enumerate(self.actors)}
        results: dict[int, TrialResult] = {}
        failure: tuple[int, str] | None = None
        died = False
        fail_deadline: float | None = None
        while pending:
            if fail_deadline is not None and time.monotonic() > fail_deadline:
                break
            if channel.stopping():  # repeated: cheap, and a stop must not be lost
                self.actors[0].request_stop.remote()
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in done:
                rank = pending.pop(ref)
                try:
                    result = ray.get(ref)
                    results[rank] = result
                except ray.exceptions.RayActorError as e:
                    # A death is the cause; the survivors' collective errors are its
                    # consequences, and Ray may tell of them first.
                    if not died:
                        failure, died = (rank, f"worker process died ({_summary(e)})"), True
                    result = TrialResult(Outcome.FAIL, error=failure[1])
                except ray.exceptions.RayError as e:
                    result = TrialResult(Outcome.FAIL, error=_summary(e))
                if result.outcome is Outcome.FAIL and failure is None:
                    failure = (rank, result.error or "failed")
                if result.outcome is Outcome.FAIL and fail_deadline is None:
                    fail_deadline = time.monotonic() + FAILURE_GRACE_S
        if pending or len(results) < self.workers:
            self.healthy = False  # a rank died or hangs: its process group cannot be trusted
        return gang_result(results, failure, pending.values(), self.workers)

    def close(self) -> None:
        """Leave the process group cleanly, then release the actors and the placement group."""
        if self.healthy and self.actors:
            try:
                ray.get([a.shutdown.remote() for a in self.actors], timeout=10)
            except ray.exceptions.RayError:
                pass
        self.kill()

    def kill(self) -> None:
        """Kill the actors and remove the placement group (its resources return to the cluster)."""
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except ray.exceptions.RayError:
                pass
        self.actors = []
        try:
            remove_placement_group(self.pg)
        except Exception:  # noqa: BLE001 - the cluster may be gone; nothing is left to free then
            pass


class RayExecutor(Executor):
    """Runs each trial on a gang of ``trial.resources.workers`` Ray actors.

    Rank 0 reports to the study database itself and its prune decisions reach every rank
    by broadcast, so a trial function runs unchanged under this executor and the local
    one. At most ``concurrency`` gangs exist; each holds its placement group while warm.

    Args:
        spec: The study; ``spec.executor`` must have ``type: ray``.
        reuse: Keep gangs warm across trials (default: ``spec.executor.reuse_workers``).

    Raises:
        HpoError: The cluster does not answer.
        SpecError: The cluster cannot run this study (see :func:`check_cluster`).
    """

    writes_through_channel = False  # rank 0's actor reports to the database itself

    def __init__(self, spec: StudySpec, *, reuse: bool | None = None) -> None:
        if spec.executor.type != "ray":
            raise SpecError(
                f"RayExecutor needs type: ray (got type: {spec.executor.type})", key="executor.type"
            )
        self.reuse = spec.executor.reuse_workers if reuse is None else reuse
        self.workers = spec.trial.resources.workers
        self.device = spec.trial.resources.device
        self.bundle = _bundle(spec)
        self._spec_data = json.loads(spec.model_dump_json())
        self._connected = connect(spec.executor.address or "auto")
        try:
            check_cluster(spec)
        except BaseException:
            self._disconnect()
            raise
        self._lock = threading.Condition()
        self._running = 0
        self._idle: list[_Gang] = []
        self._gangs: set[_Gang] = set()

    def run(self, job: TrialJob, channel: TrialChannel) -> TrialResult:
        """Run ``job`` on a warm gang, or on a new one once the cluster can place it."""
        url = _absolute_sqlite(job.storage_url)
        if url != job.storage_url:
            job = dataclasses.replace(job, storage_url=url)
        gang: _Gang | None = None
        with self._lock:
            self._running += 1
        try:
            gang = self._acquire(channel)
            if gang is None:
                return TrialResult(Outcome.INTERRUPTED, error="interrupted")
            return gang.run(job, channel)
        except (HpoError, ray.exceptions.RayError) as e:
            if gang is not None:
                gang.healthy = False
            return TrialResult(Outcome.FAIL, error=str(e) if isinstance(e, HpoError) else _summary(e))
        finally:
            if gang is not None:
                self._release(gang)
            with self._lock:
                self._running -= 1
                self._lock.notify_all()

    def _acquire(self, channel: TrialChannel) -> _Gang | None:
        """A warm gang, or a new one once placed, whichever is first; None if the study stops.

        A new gang's placement group waits for free resources; a gang another trial leaves
        warm in the meantime is taken instead, since it may hold the very resources waited for.
        """
        new: _Gang | None = None
        try:
            while True:
                with self._lock:
                    warm = self._idle.pop() if self._idle else None
                if warm is not None:
                    if new is not None:
                        new.kill()
                    return warm
                if new is None:
                    new = _Gang(self._spec_data, self.bundle, self.workers, self.device)
                if ray.wait([new.placed], timeout=0.5)[0]:
                    ray.get(new.placed)
                    new.start()
                    with self._lock:
                        self._gangs.add(new)
                    return new
                if channel.stopping():
                    new.kill()
                    return None
        except BaseException:
            if new is not None:
                new.kill()
            raise

    def _release(self, gang: _Gang) -> None:
        if gang.healthy and self.reuse:
            with self._lock:
                self._idle.append(gang)
            return
        gang.kill()
        with self._lock:
            self._gangs.discard(gang)

    def close(self) -> None:
        """Stop every actor, remove every placement group, and disconnect if this executor connected.

        Trials still running get :data:`CLOSE_WAIT_S` to end first (a stopping study ends
        them at their next report).
        """
        with self._lock:
            self._lock.wait_for(lambda: self._running == 0, timeout=CLOSE_WAIT_S)
            gangs, self._gangs, self._idle = list(self._gangs), set(), []
        for gang in gangs:
            gang.close()
        self._disconnect()

    def _disconnect(self) -> None:
        if self._connected:
            ray.shutdown()
            self._connected = False


def _absolute_sqlite(url: str) -> str:
    """A relative SQLite path made absolute: actors do not run in this process's directory."""
    if not _is_sqlite(url):
        return url
    u = make_url(url)
    if not u.database or u.database == ":memory:" or Path(u.database).is_absolute():
        return url
    return u.set(database=str(Path(u.database).resolve())).render_as_string(hide_password=False)
