"""A small DeepSpeed-config-compatible training engine on PyTorch's own parallelism.

DDP, FSDP2 (ZeRO stages 1-3), DTensor tensor parallel, activation checkpointing,
bf16/fp16 mixed precision, resharding DCP checkpoints, and a process launcher.
"""

from __future__ import annotations

from engine.config import ConfigWarning, EngineConfig, parse_config
from engine.engine import Engine, init_model, initialize
from engine.errors import CheckpointError, ConfigError, LaunchError
from engine.launch import DistInfo, distributed_init, launch
from engine.metrics import Metrics

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConfigWarning",
    "DistInfo",
    "Engine",
    "EngineConfig",
    "LaunchError",
    "Metrics",
    "distributed_init",
    "init_model",
    "initialize",
    "launch",
    "parse_config",
]
