"""Resource accounting: what ``concurrency`` trials of ``workers`` processes need, checked up front."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hpo.exceptions import SpecError

__all__ = ["Slot", "plan_slots"]


@dataclass(frozen=True, slots=True)
class Slot:
    """The resources one running trial holds: GPU ids per rank and CPU threads per rank."""

    index: int
    gpu_ids: tuple[tuple[int, ...], ...]
    """For each rank, the GPU ids it sees (empty on CPU)."""
    threads_per_worker: int


def _visible_gpus() -> list[int]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA means no GPUs
        count = 0
    if env is not None and env.strip():
        ids = [int(x) for x in env.split(",") if x.strip().isdigit()]
        return ids[:count] if count else []
    return list(range(count))


def plan_slots(
    *,
    workers: int,
    device: str,
    gpus_per_worker: int,
    concurrency: int,
    cpus: int | None = None,
    gpus: list[int] | None = None,
) -> list[Slot]:
    """Divide this machine among ``concurrency`` trials of ``workers`` processes each.

    GPU ids are assigned without overlap; CPU threads are split evenly. Asking for more
    than the machine has is an error before anything runs.

    Raises:
        SpecError: The machine cannot host even one such trial, or not ``concurrency`` of them.
    """
    cpus = cpus or os.cpu_count() or 1
    per_worker = gpus_per_worker or (1 if device == "cuda" else 0)
    if device == "cpu" and gpus_per_worker:
        raise SpecError(
            f"gpus_per_worker={gpus_per_worker} needs device: cuda (device is cpu)",
            key="trial.resources.gpus_per_worker",
        )
    if per_worker:
        available = _visible_gpus() if gpus is None else gpus
        need = workers * per_worker
        if need > len(available):
            raise SpecError(
                f"a trial needs {workers} worker(s) x {per_worker} GPU(s) = {need} GPU(s), "
                f"but this machine has {len(available)}",
                key="trial.resources",
            )
        if need * concurrency > len(available):
            raise SpecError(
                f"concurrency {concurrency} x {need} GPU(s) per trial = {need * concurrency} GPUs, "
                f"but this machine has {len(available)}; lower concurrency to {len(available) // need}",
                key="concurrency",
            )
    if workers > cpus and not per_worker:
        raise SpecError(
            f"a trial needs {workers} worker processes, but this machine has {cpus} CPU core(s)",
            key="trial.resources.workers",
        )
    if workers * concurrency > cpus and not per_worker:
        raise SpecError(
            f"concurrency {concurrency} x {workers} worker(s) = {workers * concurrency} processes, "
            f"but this machine has {cpus} CPU core(s)",
            key="concurrency",
        )
    threads = max(1, cpus // (workers * concurrency))
    slots = []
    for i in range(concurrency):
        ids: list[tuple[int, ...]] = []
        for r in range(workers):
            start = (i * workers + r) * per_worker
            ids.append(tuple((available[start : start + per_worker]) if per_worker else ()))
        slots.append(Slot(i, tuple(ids), threads))
    return slots
