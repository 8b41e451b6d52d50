"""Parallel layouts train exactly like one process on the whole batch (fp32)."""

from __future__ import annotations

import pytest
import torch

import engine
from _dist import make_gpt, process_groups_after_engines, reference_run, run_layout
from engine.parallel import ParallelConfig, ParallelDims, parallelize
from engine.precision import PrecisionConfig, build_precision

STEPS, LR = 5, 1e-2


def _assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def _config(stage: int, micro: int, accum: int, **extra: object) -> dict[str, object]:
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "optimizer": {"type": "AdamW", "params": {"lr": LR}},
        "zero_optimization": {"stage": stage},
        "gradient_clipping": 0.5,
        **extra,
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stage", [0, 3])
def test_data_parallel_with_accumulation_matches_one_process(stage: int) -> None:
    """World 2, micro-batch 3, accumulation 2 == one process with batch 2*3*2 (clipped)."""
    want = reference_run("mlp", steps=STEPS, batch=12, lr=LR, clip=0.5)
    got = engine.launch(run_layout, world_size=2, args=("mlp", _config(stage, 3, 2), STEPS), timeout_s=100)
    _assert_close(got, want)


@pytest.mark.timeout(120)
def test_a_parameter_without_gradient_at_stage_0_is_a_clear_error_or_allowed() -> None:
    """A layer the forward skips (say, one a trial's parameters switch off): DDP's error names
    the engine key that allows it; with the key, the other layers train as in one process."""
    with pytest.raises(engine.LaunchError, match="set zero_optimization.ignore_unused_parameters: true"):
        engine.launch(run_layout, world_size=2, args=("mlp_unused", _config(0, 2, 2), 3), timeout_s=100)
    want = reference_run("mlp_unused", steps=3, batch=8, lr=LR, clip=0.5)
    config = _config(0, 2, 2, zero_optimization={"stage": 0, "ignore_unused_parameters": True})
    got = engine.launch(run_layout, world_size=2, args=("mlp_unused", config, 3), timeout_s=100)
    _assert_close(got, want)
    assert torch.equal(got["spare.weight"], want["spare.weight"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stage", [1, 2])
def test_zero_stages_1_and_2_match_one_process(stage: int) -> None:
    """Stages 1 and 2 (deferred vs per-micro-batch gradient reduction) train identically."""
    want = reference_run("mlp", steps=3, batch=8, lr=LR, clip=0.5)
    got = engine.launch(run_layout, world_size=2, args=("mlp", _config(stage, 2, 2), 3), timeout_s=100)
    _assert_close(got, want)


@pytest.mark.timeout(120)
def test_tensor_parallel_matches_one_process() -> None:
    """GPT with tensor_parallel.size 2 on 2 ranks == one process (clipping across meshes)."""
    want = reference_run("gpt", steps=STEPS, batch=4, lr=LR, clip=0.5)
    config = _config(0, 4, 1, tensor_parallel={"size": 2})
    got = engine.launch(run_layout, world_size=2, args=("gpt", config, STEPS), timeout_s=100)
    _assert_close(got, want)


@pytest.mark.timeout(120)
def test_engines_built_one_after_another_reuse_the_mesh_s_process_groups() -> None:
    """A worker trains trial after trial: a 2-D mesh's process groups are made once."""
    config = {"train_batch_size": 4, "tensor_parallel": {"size": 2}, "zero_optimization": {"stage": 1}}
    alive = engine.launch(process_groups_after_engines, world_size=2, args=(config, 3), timeout_s=100)
    assert alive[0] == alive[1] == alive[2]


@pytest.mark.timeout(180)
def test_fsdp_times_tensor_parallel_2d_mesh_matches_one_process() -> None:
    """dp 2 x tp 2 on 4 ranks (FSDP stage 3 + TP, mixed 1-D/2-D meshes) == one process."""
    want = reference_run("gpt", steps=3, batch=8, lr=LR, clip=0.5)
    config = _config(3, 2, 2, tensor_parallel={"autotp_size": 2})
    got = engine.launch(run_layout, world_size=4, args=("gpt", config, 3), timeout_s=160)
    _assert_close(got, want)


def test_ddp_with_tensor_parallel_is_rejected() -> None:
    """Stage 0 (DDP) cannot be combined with tensor parallel over several dp ranks; the
    check runs before any mesh or collective is touched."""
    dims = ParallelDims(dp=2, tp=2, world_size=4)
    precision = build_precision(PrecisionConfig(), "cpu", autocast=True)
    with pytest.raises(engine.ConfigError, match=r"stage=0 with tensor_parallel.size\(2\) and dp\(2\)"):
        parallelize(make_gpt(), config=ParallelConfig(zero_stage=0, tp_size=2), dims=dims, mesh=None,
                    precision=precision, device=torch.device("cpu"))
