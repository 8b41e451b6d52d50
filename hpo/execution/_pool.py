"""Trials in worker processes: one process group per trial, kept warm across trials.

A *gang* is the ``workers`` processes of one trial, joined in one process group. Gangs
are reused by later trials of the same study (torch imported, process group formed,
device context created), each trial still starting from fresh seeds and objects. A gang
in which any rank failed or died is killed and replaced, since its process group can
no longer be trusted.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait

from hpo.exceptions import HpoError
from hpo.execution._base import (
    CONTINUE,
    FAILURE_GRACE_S,
    PRUNE,
    START_TIMEOUT_S,
    STOP,
    Executor,
    TrialChannel,
    TrialJob,
)
from hpo.execution._outcome import Outcome, TrialResult, gang_result
from hpo.execution._resources import Slot

__all__ = ["ProcessExecutor"]

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Worker:
    """One worker process, started as ``python -m hpo.execution._worker`` (never by forking
    or re-running the user's ``__main__``). It talks over one end of a socket pair it
    inherits; a pidfd becomes readable when it exits."""

    def __init__(self, args: list[str]) -> None:
        mine, theirs = socket.socketpair()
        # The orchestrator's import path, so the entrypoint imports in the worker as it did here.
        path = os.pathsep.join([p or os.getcwd() for p in sys.path if p == "" or os.path.isdir(p)])
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "hpo.execution._worker", str(theirs.fileno()), *args],
            pass_fds=[theirs.fileno()],
            env={**os.environ, "PYTHONPATH": path},
        )
        theirs.close()
        self.conn = Connection(mine.detach())
        self.sentinel = os.pidfd_open(self.popen.pid)

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.is_alive():
            self.popen.kill()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self.conn.close()
        os.close(self.sentinel)


class _GangLost(Exception):
    """A worker of a warm gang died between trials: the job never started."""


class _Gang:
    """The processes of one trial slot."""

    def __init__(self, slot: Slot, workers: int, pg_timeout_s: float) -> None:
        self.slot = slot
        self.healthy = True
        port = _free_port()
        self.procs = [
            _Worker(
                [str(rank), str(workers), str(port), ",".join(map(str, slot.gpu_ids[rank])),
                 str(slot.threads_per_worker), str(pg_timeout_s)]
            )
            for rank in range(workers)
        ]
        self.conns = [p.conn for p in self.procs]
        self._await_ready()

    def _await_ready(self) -> None:
        """Wait until every rank has joined the process group (or one has died)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = set(range(len(self.procs)))
        while pending:
            ready = wait([self.conns[r] for r in pending] + [self.procs[r].sentinel for r in pending], timeout=1.0)
            for r in sorted(pending):
                if self.conns[r] in ready:
                    try:
                        self.conns[r].recv()
                        pending.discard(r)
                        continue
                    except (EOFError, OSError):
                        pass
                if self.procs[r].sentinel in ready or not self.procs[r].is_alive():
                    code = self.procs[r].exitcode
                    self.kill()
                    raise HpoError(f"worker rank {r} exited with code {code} while starting")
            if time.monotonic() > deadline:
                self.kill()
                raise HpoError(f"workers did not form a process group within {START_TIMEOUT_S:.0f}s")

    def run(self, job: TrialJob, channel: TrialChannel) -> TrialResult:
        """Run ``job`` on every rank; raises _GangLost if a worker died while idle."""
        dead = [r for r, proc in enumerate(self.procs) if not proc.is_alive()]
        if dead:
            self.healthy = False
            raise _GangLost(f"rank {dead[0]} exited with code {self.procs[dead[0]].exitcode} while idle")
        try:
            for conn in self.conns:
                conn.send(("run", job))
        except OSError as e:  # BrokenPipeError, ConnectionResetError
            self.healthy = False
            raise _GangLost(str(e)) from None
        results: dict[int, TrialResult] = {}
        failure: tuple[int, str] | None = None
        fail_deadline: float | None = None
        pending = set(range(len(self.procs)))
        died: set[int] = set()
        while pending:
            if fail_deadline is not None and time.monotonic() > fail_deadline:
                break
            ready = wait([self.conns[r] for r in pending] + [self.procs[r].sentinel for r in pending], timeout=0.5)
            for r in sorted(pending):
                conn, proc = self.conns[r], self.procs[r]
                if conn in ready or conn.poll():
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is not None:
                        if msg[0] in ("report", "checkpointed"):
                            try:
                                if msg[0] == "report":
                                    conn.send(self._decide(channel, msg[1], msg[2]))
                                else:
                                    channel.checkpointed(msg[1], msg[2])
                            except Exception as e:  # noqa: BLE001 - e.g. the study database refused the write
                                # Rank 0 waits for a reply it will not get: the trial ends here.
                                failure = (r, f"recording its report failed: {type(e).__name__}: {e}")
                                fail_deadline = time.monotonic()
                                break
                        elif msg[0] == "done":
                            results[r] = msg[2]
                            pending.discard(r)
                            if msg[2].outcome is Outcome.FAIL and failure is None:
                                failure = (r, msg[2].error or "failed")
                                fail_deadline = time.monotonic() + FAILURE_GRACE_S
                        continue
                if proc.sentinel in ready or not proc.is_alive():
                    proc.kill()  # reaps it
                    pending.discard(r)
                    if failure is None or failure[0] not in died:
                        # A death is the cause; a peer's error from its broken collective, even
                        # when read first, is only its consequence.
                        failure = (r, f"worker process died (exit code {proc.exitcode})")
                    died.add(r)
                    fail_deadline = time.monotonic()  # the others cannot finish their collectives
        if pending or len(results) < len(self.procs):
            self.healthy = False  # a rank died or hangs: its process group cannot be trusted
        return gang_result(results, failure, pending, len(self.procs))

    @staticmethod
    def _decide(channel: TrialChannel, value: float, step: int) -> int:
        prune = channel.report(value, step)
        if channel.stopping():
            return STOP
        return PRUNE if prune else CONTINUE

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("exit",))
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.close()
        self.procs, self.conns = [], []


class ProcessExecutor(Executor):
    """Runs each trial in ``workers`` processes forming one process group (gloo on CPU,
    NCCL on CUDA), on one of ``slots``; gangs are reused unless ``reuse=False``.
    """

    def __init__(self, slots: list[Slot], workers: int, *, reuse: bool = True, pg_timeout_s: float = 300.0) -> None:
        self.workers = workers
        self.reuse = reuse
        self.pg_timeout_s = pg_timeout_s
        self._free: queue.Queue[tuple[Slot, _Gang | None]] = queue.Queue()
        for slot in slots:
            self._free.put((slot, None))
        self._lock = threading.Lock()
        self._gangs: set[_Gang] = set()

    def run(self, job: TrialJob, channel: TrialChannel) -> TrialResult:
        """Run ``job`` on a free slot's gang, starting the gang if needed."""
        slot, gang = self._free.get()
        try:
            if gang is None or not gang.healthy:
                gang = self._start(slot)
            try:
                result = gang.run(job, channel)
            except _GangLost:  # the trial has not started: run it on fresh workers
                self._stop(gang)
                gang = None
                gang = self._start(slot)
                result = gang.run(job, channel)
        except HpoError as e:
            return TrialResult(Outcome.FAIL, error=str(e))
        except _GangLost as e:
            return TrialResult(Outcome.FAIL, error=f"workers died twice before the trial started: {e}")
        finally:
            if gang is not None and (not gang.healthy or not self.reuse):
                self._stop(gang)
                gang = None
            self._free.put((slot, gang))
        return result

    def _start(self, slot: Slot) -> _Gang:
        gang = _Gang(slot, self.workers, self.pg_timeout_s)
        with self._lock:
            self._gangs.add(gang)
        return gang

    def _stop(self, gang: _Gang) -> None:
        gang.kill()
        with self._lock:
            self._gangs.discard(gang)

    def close(self) -> None:
        """Stop every worker process."""
        with self._lock:
            gangs, self._gangs = list(self._gangs), set()
        for gang in gangs:
            gang.close()
