"""The built-in tasks train for real: digits learns, the char LM's loss falls; a task resumed
after its last epoch returns what it had trained."""

from __future__ import annotations

import pytest

from hpo.execution import TrialContext
from hpo.tasks import char_lm, digits


def _ctx(params: dict, epochs: int, engine: dict, reports: list, **more) -> TrialContext:
    return TrialContext(
        params=params,
        number=0,
        max_epochs=epochs,
        engine_config=engine,
        seed=0,
        _report=lambda v, s: reports.append((s, v)) or False,
        **more,
    )


def test_digits_learns_and_reports_every_epoch() -> None:
    reports: list = []
    out = digits.train(_ctx({"hidden": 64, "lr": 3e-3, "activation": "gelu"}, 4, {"precision": "fp32"}, reports))
    assert [s for s, _ in reports] == [1, 2, 3, 4]
    assert out["val_accuracy"] == reports[-1][1] > 0.85
    assert out["samples_per_s"] > 0


def test_digits_split_is_fixed() -> None:
    a, _ = digits.load_data()
    assert len(a) == 1438 and digits.load_data() is digits.load_data()


def test_char_lm_loss_falls_under_bf16() -> None:
    reports: list = []
    out = char_lm.train(
        _ctx({"n_layer": 1, "n_embd": 32, "n_head": 2, "lr": 3e-3, "steps_per_epoch": 15, "block_size": 32}, 3, {"precision": "bf16"}, reports)
    )
    losses = [v for _, v in reports]
    assert len(losses) == 3 and losses[-1] < losses[0] < 4.6  # ln(96) = 4.56 is chance level
    assert out["tokens_per_s"] > 0 and abs(out["val_bpc"] - out["val_loss"] / 0.6931) < 1e-2


@pytest.mark.parametrize(("task", "params", "metric"), [
    (digits, {"hidden": 16}, "val_accuracy"),
    (char_lm, {"n_layer": 1, "n_embd": 16, "n_head": 2, "steps_per_epoch": 3, "block_size": 16}, "val_loss"),
])
def test_a_task_resumed_after_its_last_epoch_returns_the_trained_result(tmp_path, task, params, metric) -> None:
    """A trial stopped after its last report is continued from its last checkpoint: the
    continuation trains nothing and must return the trained model's metrics, not defaults."""
    saved: list = []
    first = task.train(_ctx(params, 2, {"precision": "fp32"}, [], checkpoint_dir=tmp_path / "a",
                            _checkpointed=lambda step, path: saved.append((step, path))))
    step, path = saved[-1]
    assert step == 2
    reports: list = []
    again = task.train(_ctx(params, 2, {"precision": "fp32"}, reports, checkpoint_dir=tmp_path / "b",
                            resume_from=path, start_step=step))
    assert reports == []
    assert again[metric] == pytest.approx(first[metric], rel=1e-6)
