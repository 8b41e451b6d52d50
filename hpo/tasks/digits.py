"""An MLP on scikit-learn's bundled handwritten digits (1,797 8x8 images, no download).

Entrypoint: ``hpo.tasks.digits:train``. Parameters it reads (all optional): ``hidden``,
``n_layers``, ``dropout``, ``activation``, ``lr``, ``weight_decay``, ``beta1``, ``beta2``,
``optimizer``, ``batch_size``. Reports ``val_accuracy`` every epoch; returns
``val_accuracy``, ``val_loss`` and ``samples_per_s``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from hpo.tasks._common import engine_config, evaluate

__all__ = ["load_data", "train"]

_DEFAULTS: dict[str, Any] = {"train_micro_batch_size_per_gpu": 64, "gradient_accumulation_steps": 1}


@lru_cache(maxsize=1)
def load_data(seed: int = 0, val_fraction: float = 0.2) -> tuple[TensorDataset, TensorDataset]:
    """Train and validation splits, fixed by ``seed``; pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(len(x) * val_fraction)
    val, tr = perm[:n_val], perm[n_val:]
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[val], y[val])


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).sum()


def train(ctx: Any) -> dict[str, float]:
    """Train the classifier for ``ctx.max_epochs`` epochs, reporting validation accuracy."""
    import engine
    from engine.models import MLPClassifier

    p = ctx.params
    torch.manual_seed(ctx.seed)
    train_set, val_set = load_data()
    model = MLPClassifier(
        in_features=64,
        hidden=int(p.get("hidden", 64)),
        n_classes=10,
        dropout=float(p.get("dropout", 0.0)),
        activation=str(p.get("activation", "relu")),
        n_layers=int(p.get("n_layers", 1)),
    )
    cfg = engine_config(_DEFAULTS, ctx.engine_config, {"lr": 1e-3, **p})
    eng = engine.initialize(model, cfg)
    loader = eng.dataloader(train_set, shuffle=True, seed=ctx.seed)
    val_batches = [(val_set.tensors[0][i : i + 256], val_set.tensors[1][i : i + 256]) for i in range(0, len(val_set), 256)]
    start = ctx.resume(eng)
    acc = loss = 0.0
    if start >= ctx.max_epochs:  # resumed after its last epoch (stopped after the last report)
        loss, acc = evaluate(eng, val_batches, F.cross_entropy, _correct)
    for epoch in range(start, ctx.max_epochs):
        loader.set_epoch(epoch)  # the shuffle order depends on the epoch only: resumes see the same batches
        for x, y in loader:
            x, y = x.to(eng.device), y.to(eng.device)
            eng.backward(F.cross_entropy(eng(x).float(), y))
            eng.step()
            eng.zero_grad()
        loss, acc = evaluate(eng, val_batches, F.cross_entropy, _correct)
        ctx.save_checkpoint(eng, epoch + 1)  # before report: a paused trial resumes from here
        ctx.report(acc, epoch + 1)
    m = eng.metrics()
    return {"val_accuracy": acc, "val_loss": loss, "samples_per_s": float(m.samples_per_s or 0.0)}
