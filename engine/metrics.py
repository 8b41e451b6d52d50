"""Typed training metrics: throughput, step time, memory, MFU."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass

import torch

__all__ = ["Metrics", "MetricsTracker", "peak_flops_for"]

# Dense bf16/fp16 tensor-core peaks (FLOP/s) of GPUs whose name contains the key; the first
# key that matches counts, so the PCIe and NVL H100s come before the SXM one.
_PEAK_FLOPS = {"H200": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "A100": 312e12}


def peak_flops_for(device: torch.device, low_precision: bool) -> float | None:
    """The dense bf16/fp16 peak of a known GPU, or None (CPU, unknown GPU, fp32)."""
    if device.type != "cuda" or not low_precision:
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in _PEAK_FLOPS.items() if key in name), None)


@dataclass(frozen=True, slots=True)
class Metrics:
    """A snapshot, averaged over the optimizer steps since the previous snapshot."""

    global_step: int
    """Optimizer steps so far, including fp16 steps skipped on overflow."""
    skipped_steps: int
    """fp16 steps skipped because gradients overflowed."""
    step_time_s: float | None
    """Mean wall time per optimizer step (None before the first step of the window)."""
    samples_per_s: float | None
    """Samples per second over all data-parallel ranks."""
    tokens_per_s: float | None
    """Tokens per second when inputs are token ids (integer tensors), else None."""
    mfu: float | None
    """Model FLOPs utilisation: achieved FLOP/s over peak FLOP/s of all ranks; None unless
    the model reports its FLOPs and the device's peak is known."""
    peak_memory_bytes: int
    """Peak allocated CUDA memory of this rank, or the process's peak RSS on CPU."""
    loss: float | None
    """Mean loss of this rank's micro-batches in the window (as passed to ``backward``)."""
    loss_scale: float
    """Current fp16 loss scale (1.0 for other precisions)."""
    lr: float
    """Learning rate of the first param group."""


class MetricsTracker:
    """Collects per-step timings and losses for :class:`Metrics` snapshots."""

    def __init__(self, *, samples_per_step: int, world_size: int, device: torch.device,
                 peak_flops: float | None) -> None:
        self.samples_per_step = samples_per_step
        self.world_size = world_size
        self.device = device
        self.peak_flops = peak_flops
        self.tokens_per_sample: int | None = None
        self.flops_per_sample: float | None = None
        self._window_start: float | None = None
        self._steps = 0
        self._loss_sum: torch.Tensor | None = None
        self._losses = 0

    def on_forward(self) -> None:
        """Start the first window at the first forward."""
        if self._window_start is None:
            self._window_start = time.perf_counter()

    def on_loss(self, loss: torch.Tensor) -> None:
        """Record a micro-batch loss without a device sync."""
        value = loss.detach().float()
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._losses += 1

    def on_step(self) -> None:
        """Count an optimizer step (taken or skipped)."""
        self._steps += 1

    def snapshot(self, *, global_step: int, skipped_steps: int, loss_scale: float, lr: float) -> Metrics:
        """Build the snapshot and start a new window (synchronises the device)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        step_time = samples = tokens = mfu = None
        if self._steps and self._window_start is not None:
            step_time = (now - self._window_start) / self._steps
            samples = self.samples_per_step / step_time
            if self.tokens_per_sample is not None:
                tokens = samples * self.tokens_per_sample
            if self.flops_per_sample is not None and self.peak_flops:
                mfu = self.flops_per_sample * samples / (self.peak_flops * self.world_size)
        loss = None if self._loss_sum is None else float(self._loss_sum) / self._losses
        if self.device.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = int(rss if sys.platform == "darwin" else rss * 1024)
        self._window_start, self._steps, self._loss_sum, self._losses = now, 0, None, 0
        return Metrics(
            global_step=global_step, skipped_steps=skipped_steps, step_time_s=step_time,
            samples_per_s=samples, tokens_per_s=tokens, mfu=mfu, peak_memory_bytes=peak,
            loss=loss, loss_scale=loss_scale, lr=lr,
        )
