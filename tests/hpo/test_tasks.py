"""The built-in tasks train for real: digits learns, the char LM's loss falls."""

from __future__ import annotations

from hpo.execution import TrialContext
from hpo.tasks import char_lm, digits


def _ctx(params: dict, epochs: int, engine: dict, reports: list) -> TrialContext:
    return TrialContext(
        params=params,
        number=0,
        max_epochs=epochs,
        engine_config=engine,
        seed=0,
        _report=lambda v, s: reports.append((s, v)) or False,
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
