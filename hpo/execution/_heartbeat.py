"""Heartbeats of running trials, so a dead orchestrator's trials can be found and continued.

One thread beats for every trial this process runs. A trial's first beat comes one
interval after it starts: a trial that ends sooner costs no write, and a trial lost
before its first beat is still found once no beat has come for the grace period
(``fail_lost_trials``).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import optuna

__all__ = ["Heartbeats"]


class Heartbeats:
    """Records the heartbeat of each trial registered with :meth:`running` every ``interval`` s."""

    def __init__(self, storage: optuna.storages.RDBStorage, interval: float) -> None:
        self._storage = storage
        self._interval = interval
        self._due: dict[int, float] = {}  # trial id -> when its next beat is due
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hpo-heartbeats", daemon=True)
        self._thread.start()

    @contextmanager
    def running(self, trial_id: int) -> Iterator[None]:
        """Beat for ``trial_id`` while the block runs."""
        with self._lock:
            self._due[trial_id] = time.monotonic() + self._interval
        try:
            yield
        finally:
            with self._lock:
                self._due.pop(trial_id, None)

    def close(self) -> None:
        """Stop beating."""
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        tick = min(1.0, self._interval / 2)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                due = [t for t, when in self._due.items() if when <= now]
                for t in due:
                    self._due[t] = now + self._interval
            for trial_id in due:
                try:
                    self._storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                    pass
