"""Checkpoints with torch.distributed.checkpoint (DCP), resharded on load.

Layout of a checkpoint directory::

    <path>/.metadata             DCP metadata (global shapes, which file holds each shard)
    <path>/__<rank>_0.distcp     DCP tensor data written by each rank
    <path>/engine_state.json     every non-tensor value (optimizer hyper-parameters,
                                 scheduler, loss scaler, step counters) and the key of
                                 each tensor, so nothing is ever unpickled
    <path>/rng/rank_<r>.pt       RNG states of rank r (torch CPU/CUDA, Python), read with
                                 ``torch.load(weights_only=True)``

Tensors are saved in their global (unsharded) layout, so a checkpoint written by N ranks
loads on M ranks with any ZeRO stage. Saving writes ``<path>.tmp`` and renames it to
``<path>`` once every rank has finished; an existing ``<path>`` is moved to ``<path>.old``
for the instant of the swap and then removed, so a crash leaves either the old or the new
complete checkpoint, never a partial one under ``<path>`` (a crash between the two renames
leaves only ``<path>.old``: loading reads it, and the next save first moves it back).
A checkpoint is checked before loading changes anything (see :func:`load_checkpoint`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from engine.errors import CheckpointError

__all__ = ["load_checkpoint", "save_checkpoint"]

_STATE_FILE = "engine_state.json"
_FORMAT = 1
_TENSOR = "__tensor__"


def _split_tensors(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able copy of ``obj`` with each tensor replaced by ``{"__tensor__": key}``."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj
        return {_TENSOR: key}
    if isinstance(obj, dict):
        out = {}
        for name, value in obj.items():
            if not isinstance(name, str):
                raise TypeError(f"checkpoint keys must be strings, got {name!r} under {key!r}")
            out[name] = _split_tensors(value, f"{key}/{name}", tensors)
        return out
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(value, f"{key}/{i}", tensors) for i, value in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {key!r}")


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        return {name: _join_tensors(value, tensors) for name, value in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(value, tensors) for value in obj]
    return obj


def _tensor_keys(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return {obj[_TENSOR]}
        return set().union(*(_tensor_keys(v) for v in obj.values())) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_tensor_keys(v) for v in obj)) if obj else set()
    return set()


@contextlib.contextmanager
def _dcp_context() -> Iterator[bool]:
    """Yields DCP's ``no_dist``; without a process group, silences DCP's warning that it
    assumes a single process (exactly the intent)."""
    no_dist = not dist.is_initialized()
    with warnings.catch_warnings():
        if no_dist:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield no_dist


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_state() -> dict[str, torch.Tensor]:
    version, words, gauss = random.getstate()
    state = {
        "torch_cpu": torch.get_rng_state(),
        "python_version": torch.tensor([version]),
        "python_state": torch.tensor(words, dtype=torch.int64),
        "python_gauss": torch.tensor([float("nan") if gauss is None else gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    gauss = float(state["python_gauss"][0])
    random.setstate((
        int(state["python_version"][0]),
        tuple(int(w) for w in state["python_state"].tolist()),
        None if gauss != gauss else gauss,
    ))
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: str | os.PathLike[str], *, model: nn.Module, optimizer: torch.optim.Optimizer, extra: dict[str, Any]
) -> None:
    """Save model, optimizer, ``extra`` (JSON-able) and every rank's RNG state to ``path``.

    Collective when a process group exists: every rank must call it with the same path,
    on a filesystem all ranks share.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a save that crashed
        if _complete(path) == old:  # a crash between the swap's renames: put the old one back
            os.replace(old, path)
        (tmp / "rng").mkdir(parents=True)
    _barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split_tensors({"model": model_sd, "optim": optim_sd}, "", tensors)
    with _dcp_context() as no_dist:
        dcp.save(tensors, checkpoint_id=tmp, no_dist=no_dist)
    with open(tmp / "rng" / f"rank_{rank}.pt", "wb") as handle:
        torch.save(_rng_state(), handle)
        handle.flush()
        os.fsync(handle.fileno())
    if rank == 0:
        world_size = dist.get_world_size() if dist.is_initialized() else 1
        document = {"format": _FORMAT, "world_size": world_size, "state": skeleton, "extra": extra}
        with open(tmp / _STATE_FILE, "w") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
    _barrier()  # every rank's files are complete before the rename publishes them
    if rank == 0:
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a power loss
        shutil.rmtree(old, ignore_errors=True)
    _barrier()


def _complete(path: Path) -> Path:
    """``path``, or ``<path>.old`` when a crash between the swap's two renames left only that."""
    old = path.with_name(path.name + ".old")
    if not (path / _STATE_FILE).is_file() and (old / _STATE_FILE).is_file():
        return old
    return path


def _check_data_files(path: Path) -> None:
    """Every byte range the DCP metadata points at exists: a missing or short data file is
    found before any tensor is overwritten."""
    try:
        metadata = dcp.FileSystemReader(path).read_metadata()
    except Exception as e:  # noqa: BLE001 - any unreadable metadata means the same
        raise CheckpointError(f"checkpoint {str(path)!r}: unreadable DCP metadata ({e})") from None
    ends: dict[str, int] = {}
    for info in metadata.storage_data.values():
        ends[info.relative_path] = max(ends.get(info.relative_path, 0), info.offset + info.length)
    for name, end in sorted(ends.items()):
        file = path / name
        size = file.stat().st_size if file.is_file() else -1
        if size < end:
            found = "missing" if size < 0 else f"{size} bytes, {end} expected"
            raise CheckpointError(f"checkpoint {str(path)!r}: data file {name} is incomplete ({found})")


def _read_files(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """The state document and this rank's RNG state, once every file checks out."""
    state_file = path / _STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{str(path)!r} is not a checkpoint: {_STATE_FILE} is missing")
    try:
        document = json.loads(state_file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: unreadable {_STATE_FILE} ({e})") from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r}: format is not {_FORMAT}")
    rank = dist.get_rank() if dist.is_initialized() else 0
    rng_file = path / "rng" / f"rank_{rank}.pt"
    rng = None
    if rng_file.is_file():
        try:
            rng = torch.load(rng_file, weights_only=True)
        except Exception as e:  # noqa: BLE001 - weights_only refusals and corrupt files alike
            raise CheckpointError(f"checkpoint {str(path)!r}: unreadable {rng_file.name} ({e})") from None
    _check_data_files(path)
    return document, rng


def _any_rank(problem: str | None) -> str | None:
    """The first rank's problem, on every rank (collective when a process group exists)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return problem
    problems: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(problems, problem)
    return next((f"rank {r}: {p}" for r, p in enumerate(problems) if p is not None), None)


def load_checkpoint(
    path: str | os.PathLike[str], *, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` at any world size.

    Model and optimizer are restored in place (resharded to the current layout); this
    rank's RNG state is restored when the checkpoint has one for this rank. Everything
    that can be checked without reading the tensors is checked first (files, sizes,
    tensor keys, the RNG file), so a bad checkpoint is refused with nothing changed.

    Returns:
        The ``extra`` dict given at save time.

    Raises:
        CheckpointError: ``path`` is not a complete checkpoint of this model and
            optimizer; model, optimizer and RNG are unchanged.
        RuntimeError: Reading the tensor data failed part-way (an I/O error); the model
            and optimizer are then partly loaded and must not be trained on.
    """
    path = _complete(Path(path))
    try:
        document, rng = _read_files(path)
        problem = None
    except CheckpointError as e:
        document, rng, problem = {}, None, str(e)
    # Every rank refuses, or none does: a rank that started over alone would leave the others
    # waiting in the collectives of the load.
    problem = _any_rank(problem)
    if problem is not None:
        raise CheckpointError(problem)
    fresh_optimizer = not optimizer.state
    model_sd, optim_sd = get_state_dict(model, optimizer)  # gives a fresh optimizer its state
    current: dict[str, torch.Tensor] = {}
    _split_tensors({"model": model_sd, "optim": optim_sd}, "", current)
    saved = _tensor_keys(document.get("state"))
    if saved != set(current):
        if fresh_optimizer:
            optimizer.state.clear()  # as it was: no step taken
        only_saved = sorted(saved - set(current))[:5]
        only_current = sorted(set(current) - saved)[:5]
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match the model/optimizer: only in checkpoint {only_saved}, "
            f"only in the current model/optimizer {only_current}"
        )
    try:
        with _dcp_context() as no_dist:
            dcp.load(current, checkpoint_id=path, no_dist=no_dist)
        state = _join_tensors(document["state"], current)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    except BaseException as e:  # DCP's CheckpointException is a BaseException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise RuntimeError(f"checkpoint {str(path)!r}: loading failed part-way, the model is partly loaded: {e}") from e
    if rng is not None:
        _set_rng_state(rng)
    return document["extra"]
