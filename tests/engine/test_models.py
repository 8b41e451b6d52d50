"""The task models: shapes, tensor-parallel plan, FLOP counts."""

from __future__ import annotations

import pytest
import torch

from engine.models import GPT, GPTConfig, MLPClassifier


def test_mlp_shapes_and_activation_check() -> None:
    model = MLPClassifier(64, 32, 10, dropout=0.1, activation="gelu", n_layers=3)
    assert model(torch.randn(5, 64)).shape == (5, 10)
    assert len(model.blocks()) == 3
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPClassifier(64, 32, 10, activation="swish")


def test_gpt_logits_and_causality() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 13, (2, 8))
    logits = model(idx)
    assert logits.shape == (2, 8, 13)
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 13
    torch.testing.assert_close(model(changed)[:, :-1], logits[:, :-1])  # no peeking ahead
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_gpt_tp_plan_names_existing_linears() -> None:
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16))
    modules = dict(model.named_modules())
    plan = model.tp_plan()
    assert len(plan) == 2 * 6
    assert all(isinstance(modules[name], torch.nn.Linear) for name in plan)
    with pytest.raises(ValueError, match=r"n_head\(2\) is not divisible"):
        model.validate_tp_size(4)


def test_gpt_flops_per_token_is_palm_formula() -> None:
    cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = GPT(cfg)
    n = model.num_params() - cfg.block_size * cfg.n_embd
    assert model.flops_per_token() == 6 * n + 12 * 2 * 2 * 8 * 8
    assert model.flops_per_token(4) == 6 * n + 12 * 2 * 2 * 8 * 4
