"""Checkpoints: resharded across world sizes, complete or absent, weights_only-safe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import engine
import engine.checkpoint as ckpt
from _dist import full_params, make_mlp, run_checkpoint_save, train_steps

CONFIG = {
    "train_batch_size": 16,
    "optimizer": {"type": "Adam", "params": {"lr": 1e-2, "weight_decay": 0.01}},
    "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 10, "warmup_max_lr": 1e-2}},
    "zero_optimization": {"stage": 3},
}


@pytest.mark.timeout(120)
def test_checkpoint_saved_at_world_2_resumes_at_world_1_with_same_losses(tmp_path: Path) -> None:
    """Save after 3 steps on 2 ranks (FSDP stage 3); one process loads it and its next 2
    losses, parameters and learning rate equal those of the uninterrupted 2-rank run."""
    path = str(tmp_path / "ckpt")
    uninterrupted = engine.launch(run_checkpoint_save, world_size=2, args=(CONFIG, path, 3, 2), timeout_s=100)
    eng = engine.initialize(make_mlp(), CONFIG)
    with torch.no_grad():
        for p in eng.module.parameters():
            p.add_(1.0)  # make sure the load overwrites the weights
    eng.load_checkpoint(path)
    assert eng.global_step == 3
    losses = train_steps(eng, "mlp", 3, 5)
    assert losses == pytest.approx(uninterrupted["losses"], rel=1e-5, abs=1e-6)
    assert eng.optimizer.param_groups[0]["lr"] == pytest.approx(uninterrupted["lr"])
    for name, value in full_params(eng).items():
        torch.testing.assert_close(value, uninterrupted["params"][name], rtol=1e-5, atol=1e-6)


def test_checkpoint_layout_holds_no_pickled_objects(tmp_path: Path) -> None:
    """Non-tensor state is JSON; RNG files load with weights_only=True."""
    eng = engine.initialize(make_mlp(), {"batch_size": 4})
    train_steps(eng, "mlp", 0, 1)
    eng.save_checkpoint(tmp_path / "c")
    names = {p.name for p in (tmp_path / "c").iterdir()}
    assert {".metadata", "engine_state.json", "rng"} <= names
    torch.load(tmp_path / "c" / "rng" / "rank_0.pt", weights_only=True)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that dies after writing tensors leaves the old checkpoint intact and loadable."""
    eng = engine.initialize(make_mlp(), {"batch_size": 4})
    train_steps(eng, "mlp", 0, 1)
    path = tmp_path / "c"
    eng.save_checkpoint(path)
    saved = full_params(eng)
    train_steps(eng, "mlp", 1, 2)

    def crash() -> None:
        raise OSError("disk full")

    # Fails after DCP has written the tensors of the new checkpoint.
    monkeypatch.setattr(ckpt, "_rng_state", crash)
    with pytest.raises(OSError, match="disk full"):
        eng.save_checkpoint(path)
    monkeypatch.undo()
    assert (tmp_path / "c.tmp" / ".metadata").exists()
    fresh = engine.initialize(make_mlp(), {"batch_size": 4})
    fresh.load_checkpoint(path)
    assert fresh.global_step == 1
    for name, value in full_params(fresh).items():
        torch.testing.assert_close(value, saved[name])
    fresh.save_checkpoint(path)
    assert not (tmp_path / "c.tmp").exists()


def test_load_rejects_a_different_model(tmp_path: Path) -> None:
    eng = engine.initialize(make_mlp(), {"batch_size": 4})
    eng.save_checkpoint(tmp_path / "c")
    other = engine.initialize(torch.nn.Linear(3, 3), {"batch_size": 4})
    with pytest.raises(ValueError, match="does not match"):
        other.load_checkpoint(tmp_path / "c")


def test_save_inside_accumulation_window_is_refused(tmp_path: Path) -> None:
    eng = engine.initialize(make_mlp(), {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2})
    x = torch.randn(2, 16)
    eng.backward(eng(x).sum())
    eng.step()
    with pytest.raises(RuntimeError, match="inside an accumulation window"):
        eng.save_checkpoint(tmp_path / "c")
