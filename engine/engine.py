"""The training engine: one object that runs forward, backward and step in any layout."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from engine import checkpoint as ckpt
from engine.config import EngineConfig, parse_config
from engine.data import ShardedLoader, to_device
from engine.errors import ConfigError
from engine.launch import DistInfo, distributed_init
from engine.lr_schedules import LRSchedule, build_scheduler
from engine.metrics import Metrics, MetricsTracker, peak_flops_for
from engine.optim import build_optimizer
from engine.parallel import ParallelDims, build_mesh, clip_grads_, global_grad_norm, local_grads, parallelize
from engine.parallel import uses_fsdp as _uses_fsdp
from engine.parallel.fsdp import ZeroStage, set_gradient_sync
from engine.precision import PrecisionType, build_precision

__all__ = ["Engine", "init_model", "initialize"]

# DDP's own error names its constructor argument, which engine users do not pass.
_UNUSED_PARAMETERS = (
    "a parameter got no gradient in the last step (on this rank), which stage 0 (DDP) refuses by "
    "default: set zero_optimization.ignore_unused_parameters: true (DDP then looks for such "
    "parameters after every forward and copies the model's outputs), or make every parameter "
    "take part in the loss"
)


def _to_float32(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (list, tuple)):
        return type(output)(_to_float32(o) for o in output)
    if isinstance(output, dict):
        return {k: _to_float32(v) for k, v in output.items()}
    return output


class Engine:
    """Wraps a model, its optimizer, schedule and precision for (distributed) training.

    Build it with :func:`initialize`. A training loop reads::

        for x, y in eng.dataloader(dataset):
            loss = loss_fn(eng(x), y)
            eng.backward(loss)
            eng.step()
            eng.zero_grad()

    ``step()`` and ``zero_grad()`` may be called after every micro-batch: they act only
    at gradient-accumulation boundaries.
    """

    def __init__(
        self, model: nn.Module, config: EngineConfig, *, dist_info: DistInfo, peak_flops: float | None = None
    ) -> None:
        self.config = config
        self.device = dist_info.device
        self.rank = dist_info.rank
        self.world_size = dist_info.world_size
        self.dims = ParallelDims.from_world(self.world_size, config.parallel.tp_size)
        batch = config.batch.resolve(self.dims.dp)
        self.train_batch_size = batch.train_batch_size
        self.micro_batch_size = batch.micro_batch_size
        self.gradient_accumulation_steps = batch.gradient_accumulation_steps
        self.zero_stage = ZeroStage(config.parallel.zero_stage)

        model.to(self.device)
        if self.world_size > 1:
            # FSDP does not broadcast at wrap time; start every rank from rank 0's weights.
            with torch.no_grad():
                for tensor in [*model.parameters(), *model.buffers()]:
                    dist.broadcast(tensor, src=0)
        self.mesh = build_mesh(self.dims, self.device.type)
        self.dp_rank = self.mesh["dp"].get_local_rank() if self.mesh is not None else 0
        self.uses_fsdp = _uses_fsdp(config.parallel, self.dims)
        self.precision = build_precision(config.precision, self.device.type, autocast=not self.uses_fsdp)
        self.model = model
        self.module = parallelize(
            model, config=config.parallel, dims=self.dims, mesh=self.mesh,
            precision=self.precision, device=self.device,
        )
        self.optimizer = build_optimizer(config.optimizer, self.module.parameters())
        self.scheduler: LRSchedule | None = (
            build_scheduler(config.scheduler, self.optimizer) if config.scheduler else None
        )
        self.global_step = 0
        self.skipped_steps = 0
        self.micro_step = 0
        self.last_grad_norm: torch.Tensor | None = None
        self._observed = False
        low_precision = config.precision.type is not PrecisionType.FP32
        self._metrics = MetricsTracker(
            samples_per_step=self.train_batch_size, world_size=self.world_size, device=self.device,
            peak_flops=peak_flops if peak_flops is not None else peak_flops_for(self.device, low_precision),
        )

    # -- the training step -------------------------------------------------------------
    @property
    def is_accumulation_boundary(self) -> bool:
        """Whether the current micro-batch is the last of its accumulation window."""
        return (self.micro_step + 1) % self.gradient_accumulation_steps == 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward on this rank's micro-batch; tensors are moved to :attr:`device`.

        Runs under the configured autocast; floating-point outputs are returned as fp32
        (unless the config says ``fp32_outputs: false``).
        On accumulation micro-steps the gradient reduction of the following backward is
        skipped (``DDP.no_sync`` / FSDP ``set_requires_gradient_sync``).
        """
        args, kwargs = to_device(args, self.device), to_device(kwargs, self.device)
        # Gradient sync follows autograd, not train/eval mode: a grad-enabled forward in
        # eval mode still feeds a backward that must reduce at the boundary.
        training = torch.is_grad_enabled()
        if training:
            self._metrics.on_forward()
            if not self._observed:
                self._observe_input(args)
        sync = contextlib.nullcontext()
        if training and isinstance(self.module, DistributedDataParallel) and not self.is_accumulation_boundary:
            sync = self.module.no_sync()  # the forward decides whether backward all-reduces
        elif training and self.uses_fsdp:
            set_gradient_sync(self.module, self.zero_stage, boundary=self.is_accumulation_boundary)
        with sync, self.precision.forward_context():
            try:
                output = self.module(*args, **kwargs)
            except RuntimeError as e:
                if isinstance(self.module, DistributedDataParallel) and "Expected to have finished reduction" in str(e):
                    raise ConfigError(_UNUSED_PARAMETERS) from e
                raise
        return _to_float32(output) if self.precision.autocast and self.precision.fp32_outputs else output

    forward = __call__

    def _observe_input(self, args: tuple[Any, ...]) -> None:
        """Learn tokens and FLOPs per sample from the first training input."""
        self._observed = True
        if not args or not isinstance(args[0], torch.Tensor):
            return
        first = args[0]
        seq_len = None
        if not first.is_floating_point() and first.dim() >= 2:
            seq_len = first[0].numel()
            self._metrics.tokens_per_sample = seq_len
        per_token = getattr(self.model, "flops_per_token", None)
        per_sample = getattr(self.model, "flops_per_sample", None)
        if callable(per_token) and seq_len is not None:
            self._metrics.flops_per_sample = float(per_token(seq_len)) * seq_len
        elif callable(per_sample):
            self._metrics.flops_per_sample = float(per_sample())

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of ``loss / gradient_accumulation_steps`` (times the fp16 loss scale)."""
        self._metrics.on_loss(loss)
        if self.gradient_accumulation_steps > 1:
            loss = loss / self.gradient_accumulation_steps
        self.precision.backward(loss)

    def step(self) -> bool:
        """End a micro-batch; at an accumulation boundary, take the optimizer step.

        At the boundary: unscale (fp16), compute the global gradient norm when clipping
        or fp16 needs it (one all-reduce, identical on every rank), skip the step on fp16
        overflow, clip, step the optimizer and the schedule, zero the gradients.

        Returns:
            True if the optimizer stepped; False between boundaries or when skipped.
        """
        boundary = self.is_accumulation_boundary
        self.micro_step += 1
        if not boundary:
            return False
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.precision.loss_scale != 1.0:
            self.precision.unscale_(local_grads(params))
        found_inf = False
        if self.config.gradient_clipping > 0 or self.precision.checks_overflow:
            self.last_grad_norm = global_grad_norm(params, self.device)
            if self.precision.checks_overflow:
                found_inf = not bool(torch.isfinite(self.last_grad_norm))  # host sync
            if self.config.gradient_clipping > 0 and not found_inf:
                clip_grads_(params, self.config.gradient_clipping, self.last_grad_norm)
        stepped = self.precision.optimizer_step(self.optimizer, found_inf=found_inf)
        if stepped and self.scheduler is not None:
            self.scheduler.step()
        self.skipped_steps += not stepped
        self.global_step += 1
        self.optimizer.zero_grad(set_to_none=True)
        self._metrics.on_step()
        return stepped

    def zero_grad(self) -> None:
        """Clear gradients, except in the middle of an accumulation window (then a no-op)."""
        if self.micro_step % self.gradient_accumulation_steps == 0:
            self.optimizer.zero_grad(set_to_none=True)

    # -- helpers -----------------------------------------------------------------------
    def dataloader(
        self,
        dataset: Dataset[Any],
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        num_workers: int = 0,
        collate_fn: Any = None,
    ) -> ShardedLoader:
        """Micro-batches of this data-parallel rank's shard of ``dataset``, on :attr:`device`.

        See :class:`engine.data.ShardedLoader` for the ``drop_last`` semantics; tensor-parallel
        peers of a data-parallel rank read the same batches.
        """
        return ShardedLoader(
            dataset, micro_batch_size=self.micro_batch_size, accumulation_steps=self.gradient_accumulation_steps,
            dp_rank=self.dp_rank, dp_size=self.dims.dp,
            device=self.device, shuffle=shuffle, seed=seed, drop_last=drop_last,
            num_workers=num_workers, collate_fn=collate_fn,
        )

    def to_device(self, batch: Any) -> Any:
        """``batch`` (tensors in tuples/lists/dicts) moved to :attr:`device`."""
        return to_device(batch, self.device)

    def train(self, mode: bool = True) -> Engine:
        """Put the model in training (or eval) mode; returns the engine."""
        self.module.train(mode)
        return self

    def eval(self) -> Engine:
        """Put the model in eval mode; returns the engine."""
        return self.train(False)

    @torch.no_grad()
    def no_grad_forward(self, *args: Any, **kwargs: Any) -> Any:
        """Forward without autograd, as for evaluation (``with torch.no_grad(): eng(x)``)."""
        return self(*args, **kwargs)

    def metrics(self) -> Metrics:
        """A :class:`Metrics` snapshot over the steps since the previous call (device sync)."""
        return self._metrics.snapshot(
            global_step=self.global_step, skipped_steps=self.skipped_steps,
            loss_scale=self.precision.loss_scale, lr=float(self.optimizer.param_groups[0]["lr"]),
        )

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Save everything needed to resume to directory ``path`` (collective).

        Raises:
            RuntimeError: Called in the middle of an accumulation window.
        """
        if self.micro_step % self.gradient_accumulation_steps:
            raise RuntimeError(
                f"save_checkpoint at micro-step {self.micro_step} is inside an accumulation window of "
                f"{self.gradient_accumulation_steps}; save after step() at a boundary"
            )
        extra = {
            "global_step": self.global_step,
            "skipped_steps": self.skipped_steps,
            "micro_step": self.micro_step,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "precision": self.precision.state_dict(),
        }
        ckpt.save_checkpoint(path, model=self.module, optimizer=self.optimizer, extra=extra)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Resume from directory ``path``, written at any world size (collective)."""
        extra = ckpt.load_checkpoint(path, model=self.module, optimizer=self.optimizer)
        self.global_step = int(extra["global_step"])
        self.skipped_steps = int(extra["skipped_steps"])
        # Saved at a boundary; the accumulation count may differ here (another world size).
        self.micro_step = self.global_step * self.gradient_accumulation_steps
        if self.scheduler is not None and extra["scheduler"] is not None:
            self.scheduler.load_state_dict(extra["scheduler"])
        self.precision.load_state_dict(extra["precision"])


def initialize(
    model: nn.Module,
    config: EngineConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    peak_flops: float | None = None,
) -> Engine:
    """Build an :class:`Engine` for ``model``.

    Joins the process group from torchrun's environment if there is one and none exists
    yet; without one, trains in a single process with the same code.

    Args:
        model: The model, on any device; moved to the engine's device. Every rank must
            build the same architecture (weights are broadcast from rank 0).
        config: A dict, a JSON/YAML path, an :class:`EngineConfig`, or None for defaults.
        peak_flops: Peak FLOP/s of one device for MFU; None detects known GPUs.

    Raises:
        ConfigError: The config is invalid or does not fit the world size.
    """
    parsed = config if isinstance(config, EngineConfig) else parse_config(config)
    return Engine(model, parsed, dist_info=distributed_init(), peak_flops=peak_flops)


init_model = initialize
