"""Checkpoints: resharded across world sizes, complete or absent, weights_only-safe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import engine
import engine.checkpoint as ckpt
from _dist import full_params, load_with_one_damaged_rng_file, make_mlp, run_checkpoint_save, train_steps

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
    with pytest.raises(engine.CheckpointError, match="does not match"):
        other.load_checkpoint(tmp_path / "c")
    assert not other.optimizer.state


def test_save_inside_accumulation_window_is_refused(tmp_path: Path) -> None:
    eng = engine.initialize(make_mlp(), {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2})
    x = torch.randn(2, 16)
    eng.backward(eng(x).sum())
    eng.step()
    with pytest.raises(RuntimeError, match="inside an accumulation window"):
        eng.save_checkpoint(tmp_path / "c")


def _refused_with_nothing_changed(path: Path, match: str) -> None:
    fresh = engine.initialize(make_mlp(), {"batch_size": 4})
    before = {k: v.clone() for k, v in full_params(fresh).items()}
    rng = torch.get_rng_state()
    with pytest.raises(engine.CheckpointError, match=match):
        fresh.load_checkpoint(path)
    for name, value in full_params(fresh).items():
        assert torch.equal(value, before[name]), name
    assert not fresh.optimizer.state  # no trace of the optimizer state a load sets up
    assert torch.equal(torch.get_rng_state(), rng)
    assert fresh.global_step == 0


@pytest.mark.parametrize("damage", ["short data file", "planted pickle", "missing data file"])
def test_a_damaged_checkpoint_is_refused_before_anything_changes(tmp_path: Path, damage: str) -> None:
    """Every check that needs no tensor data runs before a tensor is overwritten."""
    eng = engine.initialize(make_mlp(), {"batch_size": 4})
    train_steps(eng, "mlp", 0, 2)
    path = tmp_path / "c"
    eng.save_checkpoint(path)
    data = sorted(path.glob("*.distcp"))
    if damage == "short data file":
        data[0].write_bytes(data[0].read_bytes()[:-100])
        _refused_with_nothing_changed(path, "incomplete")
    elif damage == "missing data file":
        data[0].unlink()
        _refused_with_nothing_changed(path, "missing")
    else:
        (path / "rng" / "rank_0.pt").write_bytes(b"\x80\x04cos\nsystem\n.")
        _refused_with_nothing_changed(path, "unreadable rank_0.pt")


def test_a_crash_between_the_swap_renames_leaves_a_checkpoint_that_loads(tmp_path: Path) -> None:
    """Only ``<path>.old`` is left: loading reads it, and the next save moves it back first."""
    eng = engine.initialize(make_mlp(), {"batch_size": 4})
    train_steps(eng, "mlp", 0, 1)
    path = tmp_path / "c"
    eng.save_checkpoint(path)
    path.rename(tmp_path / "c.old")  # the state between the two renames
    fresh = engine.initialize(make_mlp(), {"batch_size": 4})
    fresh.load_checkpoint(path)
    assert fresh.global_step == 1
    train_steps(fresh, "mlp", 1, 2)
    fresh.save_checkpoint(path)
    assert not (tmp_path / "c.old").exists()
    again = engine.initialize(make_mlp(), {"batch_size": 4})
    again.load_checkpoint(path)
    assert again.global_step == 2


def test_a_checkpoint_resumed_with_another_accumulation_count_starts_a_whole_window(tmp_path: Path) -> None:
    """Batch 12 as 6 micro-batches of 2 (as at another world size), resumed as 4 of 3: the
    first step after the load takes all 4 micro-batches."""
    eng = engine.initialize(make_mlp(), {"train_batch_size": 12, "train_micro_batch_size_per_gpu": 2})
    train_steps(eng, "mlp", 0, 3)
    eng.save_checkpoint(tmp_path / "c")
    other = engine.initialize(make_mlp(), {"train_batch_size": 12, "train_micro_batch_size_per_gpu": 3})
    other.load_checkpoint(tmp_path / "c")
    x = torch.randn(3, 16)
    stepped = []
    for _ in range(4):
        other.backward(other(x).sum())
        stepped.append(other.step())
    assert stepped == [False, False, False, True]
    assert other.global_step == 4


@pytest.mark.timeout(120)
def test_a_checkpoint_one_rank_cannot_read_is_refused_by_every_rank(tmp_path: Path) -> None:
    """A rank that started over alone would leave the others in the load's collectives."""
    message = engine.launch(load_with_one_damaged_rng_file, world_size=2, args=(str(tmp_path / "c"), 1), timeout_s=100)
    assert message.startswith("rank 1: ") and "unreadable rank_1.pt" in message
