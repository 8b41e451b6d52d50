"""The single-process engine API: accumulation, step/zero_grad semantics, data, metrics."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

import engine
from _dist import make_gpt, make_mlp, reference_run, train_steps


def test_single_process_with_accumulation_matches_hand_written_loop() -> None:
    """Micro-batch 4 x accumulation 3 in one process == the plain loop on batch 12."""
    want = reference_run("mlp", steps=4, batch=12, lr=1e-2, clip=0.5)
    eng = engine.initialize(make_mlp(), {
        "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 3,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-2}}, "gradient_clipping": 0.5,
    })
    train_steps(eng, "mlp", 0, 4)
    for name, value in eng.module.state_dict().items():
        torch.testing.assert_close(value, want[name], rtol=1e-5, atol=1e-6)
    assert eng.global_step == 4


def test_step_and_zero_grad_act_only_at_boundaries() -> None:
    eng = engine.initialize(make_mlp(), {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2})
    x, y = torch.randn(2, 16), torch.randint(0, 5, (2,))
    eng.backward(F.cross_entropy(eng(x), y))
    first = [p.grad.clone() for p in eng.module.parameters()]
    assert eng.step() is False
    eng.zero_grad()  # mid-window: must keep the accumulated gradients
    assert all(torch.equal(p.grad, g) for p, g in zip(eng.module.parameters(), first, strict=True))
    eng.backward(F.cross_entropy(eng(x), y))
    assert eng.step() is True
    assert all(p.grad is None for p in eng.module.parameters())


def test_dataloader_yields_micro_batches_on_device(tmp_path) -> None:
    eng = engine.initialize(make_mlp(), {"train_batch_size": 8, "gradient_accumulation_steps": 2})
    data = TensorDataset(torch.randn(21, 16), torch.randint(0, 5, (21,)))
    loader = eng.dataloader(data, shuffle=True, seed=3)
    batches = list(loader)
    # 21 samples make 5 micro-batches of 4 (the short one dropped), and the fifth would not
    # fill a window of 2: the epoch ends at an optimizer step, where a checkpoint can be saved.
    assert len(batches) == len(loader) == 4
    assert all(x.shape == (4, 16) and x.device == eng.device for x, _ in batches)
    again = list(eng.dataloader(data, shuffle=True, seed=3))
    assert torch.equal(batches[0][0], again[0][0])
    for x, y in batches:
        eng.backward(F.cross_entropy(eng(x), y))
        eng.step()
    eng.save_checkpoint(tmp_path / "c")
    assert len(list(eng.dataloader(data, drop_last=False))) == 6  # padded, the window left open


def test_metrics_report_tokens_and_flops_for_gpt() -> None:
    eng = engine.initialize(make_gpt(), {"train_batch_size": 2}, peak_flops=1e12)
    idx = torch.randint(0, 11, (2, 9))
    for _ in range(2):
        eng.backward(F.cross_entropy(eng(idx[:, :-1]).reshape(-1, 11), idx[:, 1:].reshape(-1)))
        eng.step()
    m = eng.metrics()
    assert isinstance(m, engine.Metrics)
    assert m.global_step == 2 and m.step_time_s is not None and m.step_time_s > 0
    assert m.tokens_per_s == pytest.approx(m.samples_per_s * 8)
    assert m.mfu == pytest.approx(eng.model.flops_per_token(8) * 8 * m.samples_per_s / 1e12)
    assert m.peak_memory_bytes > 0 and m.loss is not None


def test_eval_forward_does_not_track_gradients() -> None:
    eng = engine.initialize(make_mlp(), None)
    eng.eval()
    out = eng.no_grad_forward(torch.randn(3, 16))
    assert out.shape == (3, 5) and not out.requires_grad
    assert not eng.module.training
    eng.train()
    assert eng.module.training


def test_activation_checkpointing_gives_same_gradients() -> None:
    """Recomputing blocks changes memory, not the gradients (GPT blocks)."""
    idx = torch.randint(0, 11, (2, 9))
    grads = []
    for ac in (False, True):
        eng = engine.initialize(make_gpt(), {"train_batch_size": 2, "activation_checkpointing": ac})
        eng.backward(F.cross_entropy(eng(idx[:, :-1]).reshape(-1, 11), idx[:, 1:].reshape(-1)))
        grads.append({n: p.grad.clone() for n, p in eng.module.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad)


def test_a_dataloader_whose_epoch_would_train_nothing_is_refused() -> None:
    eng = engine.initialize(make_mlp(), {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8})
    data = TensorDataset(torch.randn(50, 16), torch.randint(0, 5, (50,)))  # 6 micro-batches, a step takes 8
    with pytest.raises(ValueError, match="an epoch would train nothing"):
        eng.dataloader(data)
    assert len(eng.dataloader(data, drop_last=False)) == 7
