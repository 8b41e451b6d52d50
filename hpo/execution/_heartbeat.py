"""A heartbeat per running trial, so a dead orchestrator's trials can be found and retried."""

from __future__ import annotations

import threading

import optuna

__all__ = ["Heartbeat"]


class Heartbeat:
    """Records ``trial_id``'s heartbeat every ``interval`` seconds while in a ``with`` block."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"hpo-heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._storage.record_heartbeat(self._trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                pass
