"""The engine config: DeepSpeed's keys (for what the engine supports) plus a few flat ones.

:func:`parse_config` turns a dict, a JSON/YAML file or None into an :class:`EngineConfig`
made of one small typed config per component. Unknown keys are errors; DeepSpeed keys that
only tune performance or logging are accepted with one warning; DeepSpeed keys that would
change the training math and are not implemented are errors.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine._validate import (
    Section,
    as_bool,
    as_float,
    as_int,
    unsupported_always,
    unsupported_if_truthy,
)
from engine.errors import ConfigError
from engine.lr_schedules import SchedulerConfig, parse_scheduler
from engine.optim import OptimizerConfig, parse_optimizer
from engine.parallel import ParallelConfig, ParallelDims
from engine.precision import PrecisionConfig, parse_precision

__all__ = [
    "BatchConfig",
    "ConfigWarning",
    "EngineConfig",
    "ResolvedBatch",
    "load_config",
    "parse_config",
    "validate_config",
]


class ConfigWarning(UserWarning):
    """Issued once per parsed config that holds accepted-but-ignored DeepSpeed keys."""


def _offload(value: Any) -> str | None:
    device = value.get("device", "none") if isinstance(value, dict) else value
    if device in (None, "none", False):
        return None
    return f"offloading to {device!r} changes where the optimizer math runs; only device 'none' is accepted"


_TOP = Section(
    known=frozenset({
        "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "batch_size",
        "optimizer", "learning_rate", "scheduler", "fp16", "bf16", "bfloat16", "mixed_precision", "precision",
        "zero_optimization", "gradient_clipping", "tensor_parallel", "activation_checkpointing", "fp32_outputs",
    }),
    ignored=frozenset({
        "steps_per_print", "wall_clock_breakdown", "dump_state", "prescale_gradients",
        "gradient_predivide_factor", "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer",
        "memory_breakdown", "flops_profiler", "tensorboard", "wandb", "csv_monitor", "comet",
        "comms_logger", "monitor_config", "autotuning", "timers", "checkpoint", "disable_allgather",
        "sparse_gradients", "seq_parallel_communication_data_type", "graph_harvesting",
    }),
    unsupported={
        "amp": lambda v: "use fp16 or bf16" if not isinstance(v, dict) or v.get("enabled", False) else None,
        "torch_autocast": lambda v: "use bf16/fp16/precision" if isinstance(v, dict) and v.get("enabled") else None,
        "communication_data_type": lambda v: None if v in (None, "fp32") else "gradients are reduced in fp32",
        "data_types": lambda v: None if v in ({}, {"grad_accum_dtype": None}, {"grad_accum_dtype": "fp32"})
        else "gradients accumulate in fp32",
        "pipeline": unsupported_always("pipeline parallelism is not implemented"),
        "sparse_attention": unsupported_always("sparse attention is not implemented"),
        "compression_training": unsupported_always("compression is not implemented"),
        "curriculum_learning": unsupported_if_truthy("curriculum learning is not implemented"),
        "data_efficiency": unsupported_if_truthy("data efficiency sampling is not implemented"),
        "elasticity": lambda v: (
            "elastic batch sizes are not implemented" if isinstance(v, dict) and v.get("enabled") else None
        ),
        "sequence_parallel_size": lambda v: None if v in (None, 1) else "sequence parallelism is not implemented",
    },
)
_ZERO = Section(
    known=frozenset({"stage", "ignore_unused_parameters"}),
    ignored=frozenset({
        "allgather_partitions", "allgather_bucket_size", "overlap_comm", "reduce_scatter",
        "reduce_bucket_size", "contiguous_gradients", "stage3_prefetch_bucket_size", "prefetch_bucket_size",
        "stage3_param_persistence_threshold", "param_persistence_threshold", "stage3_max_live_parameters",
        "max_live_parameters", "stage3_max_reuse_distance", "max_reuse_distance", "sub_group_size",
        "round_robin_gradients", "elastic_checkpoint", "load_from_fp32_weights", "legacy_stage1",
        "stage3_model_persistence_threshold", "model_persistence_threshold",
        "memory_efficient_linear", "use_multi_rank_bucket_allreduce", "log_trace_cache_warnings",
        "use_all_reduce_for_fetch_params", "module_granularity_threshold",
    }),
    unsupported={
        "offload_optimizer": _offload,
        "offload_param": _offload,
        "cpu_offload": unsupported_if_truthy("optimizer offload to cpu is not implemented"),
        "cpu_offload_params": unsupported_if_truthy("parameter offload to cpu is not implemented"),
        "zero_quantized_weights": unsupported_if_truthy("weights are communicated unquantized"),
        "zero_quantized_nontrainable_weights": unsupported_if_truthy("weights are communicated unquantized"),
        "zero_quantized_gradients": unsupported_if_truthy("gradients are communicated unquantized"),
        "zeropp_loco_param": unsupported_if_truthy("gradients are communicated unquantized"),
        "zero_hpz_partition_size": lambda v: None if v in (None, 1) else "hierarchical partitioning is not implemented",
        "mics_shard_size": lambda v: None if v in (None, -1, 0) else "MiCS sharding is not implemented",
        "mics_hierarchical_params_gather": unsupported_if_truthy("MiCS sharding is not implemented"),
        "stage3_gather_16bit_weights_on_model_save": unsupported_if_truthy(
            "checkpoints are sharded DCP directories; they are not consolidated into 16-bit weights"
        ),
        "gather_16bit_weights_on_model_save": unsupported_if_truthy(
            "checkpoints are sharded DCP directories; they are not consolidated into 16-bit weights"
        ),
    },
)
_TP = Section(known=frozenset({"size", "autotp_size"}), ignored=frozenset({"tp_grain_size", "keep_module_on_host"}))
_AC = Section(
    known=frozenset({"enabled"}),
    ignored=frozenset({"contiguous_memory_optimization", "number_checkpoints", "synchronize_checkpoint_boundary",
                       "profile"}),
    unsupported={
        "partition_activations": unsupported_if_truthy("activations are not partitioned across ranks"),
        "cpu_checkpointing": unsupported_if_truthy("activations are not offloaded to cpu"),
    },
)


@dataclass(frozen=True, slots=True)
class ResolvedBatch:
    """Batch sizes once the data-parallel degree is known."""

    train_batch_size: int
    micro_batch_size: int
    gradient_accumulation_steps: int


@dataclass(kw_only=True, slots=True)
class BatchConfig:
    """Any two of the three determine the third: ``train = micro * accum * dp``."""

    train_batch_size: int | None = None
    """Samples per optimizer step over all data-parallel ranks (alias ``batch_size``)."""
    micro_batch_size: int | None = None
    """Samples per forward on one rank (``train_micro_batch_size_per_gpu``)."""
    gradient_accumulation_steps: int | None = None
    """Micro-batches per optimizer step."""

    def __post_init__(self) -> None:
        for name in ("train_batch_size", "micro_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")

    def resolve(self, dp: int) -> ResolvedBatch:
        """Fill in the missing sizes for ``dp`` data-parallel ranks, as DeepSpeed does.

        With none given, the micro batch is 1 and there is no accumulation.

        Raises:
            ConfigError: The sizes are inconsistent or do not divide; the message shows
                every factor.
        """
        tb, mb, ga = self.train_batch_size, self.micro_batch_size, self.gradient_accumulation_steps
        if tb is not None and mb is not None and ga is not None:
            if tb != mb * ga * dp:
                raise ConfigError(
                    f"train_batch_size({tb}) != train_micro_batch_size_per_gpu({mb}) * "
                    f"gradient_accumulation_steps({ga}) * dp_world_size({dp}) = {mb * ga * dp}"
                )
        elif tb is not None:
            if mb is None:
                ga = ga or 1
                mb = tb // (ga * dp)
                what = f"gradient_accumulation_steps({ga}) * dp_world_size({dp})"
            else:
                ga = tb // (mb * dp)
                what = f"train_micro_batch_size_per_gpu({mb}) * dp_world_size({dp})"
            if mb < 1 or ga < 1 or tb != mb * ga * dp:
                raise ConfigError(f"train_batch_size({tb}) is not divisible by {what}")
        else:
            mb, ga = mb or 1, ga or 1
            tb = mb * ga * dp
        return ResolvedBatch(train_batch_size=tb, micro_batch_size=mb, gradient_accumulation_steps=ga)


@dataclass(kw_only=True, slots=True)
class EngineConfig:
    """Everything :func:`engine.initialize` needs, one typed config per component."""

    batch: BatchConfig = field(default_factory=BatchConfig)
    """Batch sizes (resolved against the data-parallel degree at initialization)."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """The optimizer (default AdamW, lr 1e-3)."""
    scheduler: SchedulerConfig | None = None
    """The learning-rate schedule, or None for a constant rate."""
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    """Compute precision and fp16 loss scaling."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """ZeRO stage, tensor parallelism, activation checkpointing."""
    gradient_clipping: float = 0.0
    """Clip the global gradient L2 norm to this; 0 disables clipping."""
    ignored_keys: tuple[str, ...] = ()
    """Dotted paths of accepted-but-ignored DeepSpeed keys."""

    def __post_init__(self) -> None:
        if self.gradient_clipping < 0:
            raise ConfigError(f"gradient_clipping must be >= 0, got {self.gradient_clipping}")


def load_config(source: dict[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read a raw config from a dict, a ``.json``/``.yaml``/``.yml`` file, or None."""
    if source is None:
        return {}
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        raw = json.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raise ConfigError(f"config file {str(path)!r} must end in .json, .yaml or .yml")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(raw).__name__}")
    return raw


def _optional_int(raw: dict[str, Any], key: str) -> int | None:
    return None if raw.get(key) is None else as_int(raw[key], key, minimum=1)


def _parallel(raw: dict[str, Any], ignored: list[str]) -> ParallelConfig:
    zero = _ZERO.split(raw.get("zero_optimization") or {}, "zero_optimization", ignored)
    stage = as_int(zero.get("stage", 0), "zero_optimization.stage", minimum=0)
    tp_raw = _TP.split(raw.get("tensor_parallel") or {}, "tensor_parallel", ignored)
    # DeepSpeed's autotp_size 0 (its default) means no tensor parallelism, as does 1.
    sizes = {k: max(1, as_int(v, f"tensor_parallel.{k}", minimum=0 if k == "autotp_size" else 1))
             for k, v in tp_raw.items()}
    if len(set(sizes.values())) > 1:
        raise ConfigError(
            f"tensor_parallel.size({sizes['size']}) != tensor_parallel.autotp_size({sizes['autotp_size']})"
        )
    ac = raw.get("activation_checkpointing", False)
    if isinstance(ac, dict):
        ac = as_bool(_AC.split(ac, "activation_checkpointing", ignored).get("enabled", True),
                     "activation_checkpointing.enabled")
    return ParallelConfig(
        zero_stage=stage,
        tp_size=next(iter(sizes.values()), 1),
        activation_checkpointing=as_bool(ac, "activation_checkpointing"),
        ignore_unused_parameters=as_bool(
            zero.get("ignore_unused_parameters", False), "zero_optimization.ignore_unused_parameters"
        ),
    )


def parse_config(source: dict[str, Any] | str | os.PathLike[str] | None) -> EngineConfig:
    """Parse and check a config; see ``docs/ENGINE.md`` for every key.

    Args:
        source: A dict, a path to a JSON or YAML file, or None for all defaults.

    Returns:
        The typed config. Batch sizes are resolved later, when the world size is known.

    Raises:
        ConfigError: An unknown key (with a "did you mean"), a bad value, an unsupported
            DeepSpeed feature, or conflicting settings.
    """
    raw = load_config(source)
    ignored: list[str] = []
    top = _TOP.split(raw, "", ignored)
    if top.get("batch_size") is not None and top.get("train_batch_size") is not None:
        raise ConfigError(
            f"batch_size({top['batch_size']}) and train_batch_size({top['train_batch_size']}) name the same "
            "thing; give one"
        )
    batch = BatchConfig(
        train_batch_size=_optional_int(top, "train_batch_size") or _optional_int(top, "batch_size"),
        micro_batch_size=_optional_int(top, "train_micro_batch_size_per_gpu"),
        gradient_accumulation_steps=_optional_int(top, "gradient_accumulation_steps"),
    )
    config = EngineConfig(
        batch=batch,
        optimizer=parse_optimizer(top.get("optimizer"), top.get("learning_rate"), ignored),
        scheduler=parse_scheduler(top.get("scheduler"), ignored),
        precision=parse_precision(top, ignored),
        parallel=_parallel(top, ignored),
        gradient_clipping=as_float(top.get("gradient_clipping") or 0.0, "gradient_clipping", minimum=0.0),
        ignored_keys=tuple(ignored),
    )
    if ignored:
        warnings.warn(
            f"these DeepSpeed config keys have no effect in this engine and are ignored: {', '.join(ignored)}",
            ConfigWarning,
            stacklevel=2,
        )
    return config


def validate_config(
    source: dict[str, Any] | str | os.PathLike[str] | None, *, world_size: int | None = None
) -> EngineConfig:
    """Parse a config and, given the world size, check what depends on it.

    Runs the checks :func:`engine.initialize` makes before touching a model: the dp x tp
    layout and the batch sizes for ``dp = world_size / tensor_parallel.size``.

    Raises:
        ConfigError: As :func:`parse_config`, or the layout or batch sizes do not fit.
    """
    config = parse_config(source)
    if world_size is not None:
        dims = ParallelDims.from_world(world_size, config.parallel.tp_size)
        config.batch.resolve(dims.dp)
    return config
