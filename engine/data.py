"""Sharded data loading: each data-parallel rank reads its own part of every epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["ShardedLoader", "to_device"]


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in ``batch`` (nested tuples, lists, dicts) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(value, device) for value in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


class ShardedLoader:
    """Iterates micro-batches of this rank's shard, already on the engine's device.

    Each iteration is one epoch. The order depends only on ``seed`` and the epoch number
    (which advances at every new iteration), never on the global RNG, so resumed runs see
    the same batches. With ``drop_last=True`` (the default) the dataset is first trimmed
    so every rank gets the same number of samples, a last micro-batch smaller than the
    micro batch size is dropped, and so are the last micro-batches that would not fill a
    whole window of ``accumulation_steps``: an epoch ends at an optimizer step, where a
    checkpoint can be saved. Otherwise samples are padded by repetition across ranks
    (``DistributedSampler``), the last micro-batch may be short and an epoch may end inside
    an accumulation window.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        *,
        micro_batch_size: int,
        accumulation_steps: int = 1,
        dp_rank: int,
        dp_size: int,
        device: torch.device,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.sampler = DistributedSampler(
            dataset, num_replicas=dp_size, rank=dp_rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.device = device
        self.epoch = 0
        self.accumulation_steps = accumulation_steps if drop_last else 1
        self.loader = DataLoader(
            dataset,
            batch_size=micro_batch_size,
            sampler=self.sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            collate_fn=collate_fn,
            pin_memory=device.type == "cuda",
        )
        if len(self) == 0 and len(self.sampler) > 0:
            raise ValueError(
                f"an epoch would train nothing: this rank's {len(self.sampler)} sample(s) do not fill one optimizer "
                f"step of {accumulation_steps} micro-batch(es) of {micro_batch_size}; use a smaller batch size "
                "or drop_last=False"
            )

    def __len__(self) -> int:
        """Micro-batches per epoch on this rank."""
        return len(self.loader) - len(self.loader) % self.accumulation_steps

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (e.g. after resuming)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        for _, batch in zip(range(len(self)), self.loader, strict=False):
            yield to_device(batch, self.device)
