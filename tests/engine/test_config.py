"""Config parsing: DeepSpeed keys, flat keys, and errors that name the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import engine
from engine.config import BatchConfig, parse_config, validate_config
from engine.optim import OptimizerType
from engine.precision import PrecisionType


def test_inconsistent_batch_triple_shows_every_factor() -> None:
    batch = parse_config({"train_batch_size": 30, "train_micro_batch_size_per_gpu": 4,
                          "gradient_accumulation_steps": 2}).batch
    with pytest.raises(engine.ConfigError) as info:
        batch.resolve(dp=2)
    assert str(info.value) == (
        "train_batch_size(30) != train_micro_batch_size_per_gpu(4) * gradient_accumulation_steps(2) * "
        "dp_world_size(2) = 16"
    )


@pytest.mark.parametrize(
    ("given", "dp", "want"),
    [
        ({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4}, 2, (32, 4, 4)),
        ({"train_batch_size": 32, "gradient_accumulation_steps": 2}, 2, (32, 8, 2)),
        ({"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 3}, 2, (24, 4, 3)),
        ({"train_batch_size": 32}, 4, (32, 8, 1)),
        ({}, 3, (3, 1, 1)),
    ],
)
def test_any_two_batch_sizes_determine_the_third(given: dict, dp: int, want: tuple[int, int, int]) -> None:
    resolved = parse_config(given).batch.resolve(dp)
    assert (resolved.train_batch_size, resolved.micro_batch_size, resolved.gradient_accumulation_steps) == want


def test_indivisible_batch_is_an_error() -> None:
    with pytest.raises(engine.ConfigError, match=r"train_batch_size\(10\) is not divisible"):
        BatchConfig(train_batch_size=10, micro_batch_size=3).resolve(dp=2)


def test_unknown_key_suggests_the_closest() -> None:
    message = r"unknown config key 'gradient_clippin'; did you mean 'gradient_clipping'"
    with pytest.raises(engine.ConfigError, match=message):
        parse_config({"gradient_clippin": 1.0})


def test_unknown_nested_key_is_named_by_its_path() -> None:
    with pytest.raises(engine.ConfigError, match=r"'zero_optimization.stag'; did you mean 'stage'"):
        parse_config({"zero_optimization": {"stag": 2}})
    with pytest.raises(engine.ConfigError, match=r"'optimizer.params.betas1'"):
        parse_config({"optimizer": {"type": "AdamW", "params": {"betas1": 0.9}}})


@pytest.mark.parametrize(
    "config",
    [
        {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}},
        {"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}}},
        {"zero_optimization": {"stage": 3, "zero_quantized_weights": True}},
    ],
)
def test_offload_and_quantization_are_errors(config: dict) -> None:
    with pytest.raises(engine.ConfigError, match="is not supported"):
        parse_config(config)


def test_offload_to_none_is_accepted() -> None:
    config = parse_config({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "none"}}})
    assert config.parallel.zero_stage == 2


def test_stage3_16bit_consolidated_save_is_an_error() -> None:
    with pytest.raises(engine.ConfigError, match="stage3_gather_16bit_weights_on_model_save=True is not supported"):
        parse_config({"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}})


def test_tuning_keys_are_accepted_with_one_warning() -> None:
    with pytest.warns(engine.ConfigWarning) as record:
        config = parse_config({
            "steps_per_print": 10, "wall_clock_breakdown": False,
            "zero_optimization": {"stage": 2, "overlap_comm": True, "reduce_bucket_size": 5e8},
        })
    assert len(record) == 1
    message = str(record[0].message)
    for key in ("steps_per_print", "wall_clock_breakdown", "zero_optimization.overlap_comm",
                "zero_optimization.reduce_bucket_size"):
        assert key in message
    assert config.ignored_keys == ("steps_per_print", "wall_clock_breakdown", "zero_optimization.overlap_comm",
                                   "zero_optimization.reduce_bucket_size")


def test_ignore_unused_parameters_is_honoured_not_ignored(recwarn) -> None:
    assert parse_config({}).parallel.ignore_unused_parameters is False  # DDP's fast path
    config = parse_config({"zero_optimization": {"stage": 0, "ignore_unused_parameters": True}})
    assert config.parallel.ignore_unused_parameters is True and config.ignored_keys == ()
    assert not [w for w in recwarn if issubclass(w.category, engine.ConfigWarning)]
    with pytest.raises(engine.ConfigError, match="zero_optimization.ignore_unused_parameters"):
        parse_config({"zero_optimization": {"ignore_unused_parameters": "no"}})


def test_flat_keys() -> None:
    config = parse_config({"batch_size": 32, "learning_rate": 0.001, "optimizer": "adamw",
                           "mixed_precision": True, "gradient_accumulation_steps": 1})
    assert config.batch.train_batch_size == 32
    assert config.optimizer.type is OptimizerType.ADAMW and config.optimizer.lr == 0.001
    assert config.precision.type is PrecisionType.BF16
    assert parse_config({"precision": "fp16"}).precision.type is PrecisionType.FP16
    assert parse_config({"mixed_precision": "fp32"}).precision.type is PrecisionType.FP32


def test_conflicting_precision_is_an_error() -> None:
    with pytest.raises(engine.ConfigError, match="conflicting precision settings"):
        parse_config({"fp16": {"enabled": True}, "precision": "bf16"})


def test_learning_rate_given_twice_is_an_error() -> None:
    with pytest.raises(engine.ConfigError, match="learning rate given twice"):
        parse_config({"learning_rate": 0.1, "optimizer": {"type": "SGD", "params": {"lr": 0.2}}})


def test_deepspeed_adam_means_adamw_unless_adam_w_mode_false() -> None:
    assert parse_config({"optimizer": {"type": "Adam"}}).optimizer.type is OptimizerType.ADAMW
    plain = parse_config({"optimizer": {"type": "ADAM", "params": {"adam_w_mode": False}}}).optimizer
    assert plain.type is OptimizerType.ADAM


def test_unsupported_optimizer_and_scheduler_are_errors() -> None:
    with pytest.raises(engine.ConfigError, match="'Lamb' is not supported"):
        parse_config({"optimizer": {"type": "Lamb"}})
    with pytest.raises(engine.ConfigError, match="did you mean 'WarmupLR'"):
        parse_config({"scheduler": {"type": "WarmupLRR"}})
    with pytest.raises(engine.ConfigError, match="total_num_steps is required"):
        parse_config({"scheduler": {"type": "WarmupDecayLR"}})


def test_tensor_parallel_accepts_size_or_autotp_size() -> None:
    assert parse_config({"tensor_parallel": {"autotp_size": 2}}).parallel.tp_size == 2
    with pytest.raises(engine.ConfigError, match=r"size\(2\) != tensor_parallel.autotp_size\(4\)"):
        parse_config({"tensor_parallel": {"size": 2, "autotp_size": 4}})


def test_activation_checkpointing_offload_is_an_error() -> None:
    with pytest.raises(engine.ConfigError, match="cpu_checkpointing=True is not supported"):
        parse_config({"activation_checkpointing": {"cpu_checkpointing": True}})


def test_activation_checkpointing_needs_blocks() -> None:
    import torch

    with pytest.raises(engine.ConfigError, match="needs a model with blocks"):
        engine.initialize(torch.nn.Linear(2, 2), {"activation_checkpointing": True})


def test_tensor_parallel_not_dividing_world_size_is_an_error() -> None:
    import torch

    with pytest.raises(engine.ConfigError, match=r"tp\(2\) != WORLD_SIZE\(1\)"):
        engine.initialize(torch.nn.Linear(2, 2), {"tensor_parallel": {"size": 2}})


def test_json_and_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"train_batch_size": 8}))
    (tmp_path / "c.yaml").write_text("train_batch_size: 8\nbf16:\n  enabled: true\n")
    assert parse_config(str(tmp_path / "c.json")).batch.train_batch_size == 8
    assert parse_config(tmp_path / "c.yaml").precision.type is PrecisionType.BF16
    with pytest.raises(engine.ConfigError, match="must end in"):
        (tmp_path / "c.txt").write_text("{}")
        parse_config(tmp_path / "c.txt")


def test_bad_types_are_errors() -> None:
    with pytest.raises(engine.ConfigError, match="train_batch_size must be an integer"):
        parse_config({"train_batch_size": "32"})
    with pytest.raises(engine.ConfigError, match=r"zero_optimization.stage must be 0, 1, 2 or 3"):
        parse_config({"zero_optimization": {"stage": 4}})


def test_validate_config_checks_world_dependent_sizes() -> None:
    """validate_config resolves batch sizes and the layout for a given world size."""
    assert validate_config({"train_batch_size": 8}, world_size=2).batch.train_batch_size == 8
    with pytest.raises(engine.ConfigError, match=r"train_batch_size\(8\) is not divisible"):
        validate_config({"train_batch_size": 8, "train_micro_batch_size_per_gpu": 3}, world_size=2)
    with pytest.raises(engine.ConfigError, match=r"tp\(2\) != WORLD_SIZE\(3\)"):
        validate_config({"tensor_parallel": {"size": 2}}, world_size=3)


def test_deepspeed_keys_that_change_the_math_are_honoured_or_refused() -> None:
    """torch_adam (torch's AdamW decay), adam_w_mode on AdamW, autotp_size 0, last_batch_iteration."""
    torch_adam = engine.parse_config({"optimizer": {"type": "AdamW", "params": {"torch_adam": True, "adam_w_mode": True}}})
    assert torch_adam.optimizer.params["weight_decay"] == 0.01
    plain = engine.parse_config({"optimizer": {"type": "Adam", "params": {"torch_adam": True, "adam_w_mode": False}}})
    assert plain.optimizer.type is OptimizerType.ADAM and plain.optimizer.params["weight_decay"] == 0.0
    assert engine.parse_config({"tensor_parallel": {"autotp_size": 0}}).parallel.tp_size == 1
    with pytest.raises(engine.ConfigError, match="last_batch_iteration=5 is not supported"):
        engine.parse_config({"scheduler": {"type": "WarmupLR", "params": {"last_batch_iteration": 5}}})
    engine.parse_config({"scheduler": {"type": "WarmupLR", "params": {"last_batch_iteration": -1}}})

