"""Starting processes and process groups: under ``torchrun`` or with :func:`launch`.

Under ``torchrun`` the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) describes the job; :func:`distributed_init` reads it.
:func:`launch` plays torchrun's part on one machine: it spawns ``world_size`` processes,
gives them that environment, and runs a function in each.
"""

from __future__ import annotations

import os
import pickle
import queue
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.errors import LaunchError

__all__ = ["DistInfo", "default_device", "distributed_init", "launch"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True, slots=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    """Global rank."""
    local_rank: int
    """Rank on this machine (selects the GPU)."""
    world_size: int
    """Number of ranks."""
    device: torch.device
    """The device this rank computes on."""


def default_device(local_rank: int = 0) -> torch.device:
    """``cuda:<local_rank>`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def distributed_init(*, backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    Does nothing but report a single rank when ``WORLD_SIZE`` is unset (a plain
    ``python train.py``), and only reports when the group already exists.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; None picks NCCL on CUDA, gloo on CPU.
        timeout_s: Collectives that wait longer than this fail instead of hanging
            (e.g. when another rank died).

    Returns:
        This process's rank, local rank, world size and device; the CUDA device is
        made current.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = default_device(local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), device)
    if "WORLD_SIZE" not in os.environ:
        return DistInfo(0, 0, 1, device)
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE is set but these torchrun variables are not: {', '.join(missing)}")
    chosen = backend or ("nccl" if device.type == "cuda" else "gloo")
    if chosen == "nccl" and local_rank >= torch.cuda.device_count():
        raise RuntimeError(
            f"local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible): NCCL needs one "
            "GPU per rank; start at most that many ranks per machine, or use backend='gloo'"
        )
    dist.init_process_group(
        backend=chosen,
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        timeout=timedelta(seconds=timeout_s),
        device_id=device if device.type == "cuda" else None,
    )
    return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), device)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(
    rank: int,
    world_size: int,
    port: int,
    backend: str | None,
    timeout_s: float,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    results: Any,
) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    try:
        distributed_init(backend=backend, timeout_s=timeout_s)
        value = fn(*args)
        # Plain pickle copies tensor data into the message; torch's queue pickler would
        # share memory that disappears when this process exits before the parent reads.
        results.put((rank, True, pickle.dumps(value) if rank == 0 else None))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        results.put((rank, False, traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(
    fn: Callable[..., Any],
    *,
    world_size: int,
    args: tuple[Any, ...] = (),
    backend: str | None = None,
    timeout_s: float = 300.0,
) -> Any:
    """Run ``fn(*args)`` in ``world_size`` new processes joined in one process group.

    Processes are started with the ``spawn`` method, so ``fn`` and ``args`` must be
    picklable (``fn`` defined at module level). Each gets ``MASTER_ADDR=127.0.0.1``, a free
    port and torchrun's variables, then :func:`distributed_init` (NCCL on CUDA, gloo on CPU).

    Args:
        fn: The function every rank runs.
        world_size: Number of processes.
        args: Positional arguments for ``fn``.
        backend: Process-group backend; None chooses from the device.
        timeout_s: Process-group timeout: a collective waiting for a dead rank fails
            after this long instead of hanging.

    Returns:
        What ``fn`` returned on rank 0.

    Raises:
        LaunchError: A rank raised or died; names the first failing rank and carries its
            traceback. The remaining ranks are terminated.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size=}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(rank, world_size, port, backend, timeout_s, fn, args, results))
        for rank in range(world_size)
    ]
    for proc in procs:
        proc.start()
    try:
        return _collect(procs, results, timeout_s)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)


def _collect(procs: list[Any], results: Any, timeout_s: float) -> Any:
    pending = set(range(len(procs)))
    value: Any = None
    while pending:
        try:
            rank, ok, payload = results.get(timeout=0.2)
        except queue.Empty:
            for rank in sorted(pending):
                code = procs[rank].exitcode
                if code is not None:
                    # Give a message that is still in flight a moment to arrive.
                    try:
                        rank, ok, payload = results.get(timeout=2.0)
                    except queue.Empty:
                        raise LaunchError(rank, f"process exited with code {code} without a result") from None
                    break
            else:
                continue
        if not ok:
            raise LaunchError(rank, payload)
        pending.discard(rank)
        if rank == 0:
            value = pickle.loads(payload)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
    return value
