"""Mixed precision: fp16 overflow handling on all ranks, loss-scale rules, bf16 training."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

import engine
from _dist import run_fp16_overflow
from engine.models import MLPClassifier
from engine.precision import DynamicLossScaler, LossScaleConfig


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stage", [0, 3])
def test_fp16_overflow_on_one_rank_skips_step_on_all_ranks_and_halves_scale(stage: int) -> None:
    """An inf gradient injected on rank 1 only (after reduction, so rank 0 never sees it)
    makes both ranks skip the step, keep their weights and halve the scale."""
    reports = engine.launch(run_fp16_overflow, world_size=2, args=(stage,), timeout_s=100)
    for report in reports:
        assert report["stepped"] == [True, False], report
        assert report["skipped"] == 1
        assert report["unchanged"], f"rank {report['rank']} changed its weights on a skipped step"
        assert report["scales"] == [256.0, 256.0, 128.0]


def test_loss_scaler_follows_deepspeed_hysteresis_and_window() -> None:
    """hysteresis=2: the first overflow only uses up hysteresis, the second halves; after
    ``loss_scale_window`` clean steps the scale doubles and hysteresis is refilled."""
    scaler = DynamicLossScaler(LossScaleConfig(initial_scale_power=4, loss_scale_window=2, hysteresis=2))
    scales = []
    for overflow in [True, True, False, False, False, True]:
        scaler.update(overflow)
        scales.append(scaler.cur_scale)
    assert scales == [16.0, 8.0, 8.0, 8.0, 16.0, 16.0]
    assert scaler.cur_hysteresis == 1


def test_loss_scale_never_drops_below_minimum() -> None:
    scaler = DynamicLossScaler(LossScaleConfig(initial_scale_power=1, hysteresis=1, min_loss_scale=1.0))
    for _ in range(3):
        scaler.update(True)
    assert scaler.cur_scale == 1.0


def test_static_loss_scale_stays_fixed() -> None:
    scaler = DynamicLossScaler(LossScaleConfig(loss_scale=128.0))
    scaler.update(True)
    scaler.update(False)
    assert scaler.cur_scale == 128.0


def _digits_losses(precision: str, steps: int = 40) -> list[float]:
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = MLPClassifier(64, 64, 10, dropout=0.0, activation="relu")
    eng = engine.initialize(model, {"batch_size": 64, "learning_rate": 1e-2, "precision": precision})
    losses = []
    for s in range(steps):
        rows = slice((s * 64) % 1728, (s * 64) % 1728 + 64)
        out = eng(x[rows])
        assert out.dtype == torch.float32
        loss = F.cross_entropy(out, y[rows])
        eng.backward(loss)
        eng.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.timeout(60)
def test_bf16_trains_and_tracks_fp32() -> None:
    """bf16 autocast lowers the loss and stays close to the fp32 run."""
    bf16 = _digits_losses("bf16")
    fp32 = _digits_losses("fp32")
    assert sum(bf16[-5:]) / 5 < 0.5 * sum(bf16[:5]) / 5
    for a, b in zip(bf16, fp32, strict=True):
        assert abs(a - b) < 0.05 * max(1.0, b)


@pytest.mark.timeout(60)
def test_fp16_single_process_trains_with_loss_scale() -> None:
    """fp16 autocast on one process: steps are taken and the loss scale is the initial one."""
    torch.manual_seed(0)
    eng = engine.initialize(MLPClassifier(8, 16, 3), {"precision": "fp16", "batch_size": 8})
    x, y = torch.randn(8, 8), torch.randint(0, 3, (8,))
    for _ in range(3):
        eng.backward(F.cross_entropy(eng(x), y))
        assert eng.step()
    assert eng.metrics().loss_scale == 2.0**16


def test_fp32_outputs_false_keeps_the_compute_dtype_and_the_same_training() -> None:
    """With the upcast left to the loss, outputs are bf16 and the loss and gradients match."""
    from _dist import make_gpt

    idx = torch.randint(0, 11, (4, 8))
    grads = {}
    for fp32_outputs in (True, False):
        eng = engine.initialize(make_gpt(), {"batch_size": 4, "precision": "bf16", "fp32_outputs": fp32_outputs})
        logits = eng(idx)
        assert logits.dtype == (torch.float32 if fp32_outputs else torch.bfloat16)
        loss = F.cross_entropy(logits.float().flatten(0, 1), idx.flatten())
        eng.backward(loss)
        grads[fp32_outputs] = [p.grad.clone() for p in eng.module.parameters()]
    for a, b in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(engine.ConfigError, match="fp32_outputs"):
        engine.initialize(make_gpt(), {"precision": "bf16", "fp32_outputs": "sometimes"})
