"""A small GPT on characters of Python's own standard-library sources (on every machine).

Entrypoint: ``hpo.tasks.char_lm:train``. Parameters it reads (all optional): ``n_layer``,
``n_head``, ``n_embd``, ``dropout``, ``lr``, ``weight_decay``, ``batch_size``,
``block_size``, ``steps_per_epoch``. Reports ``val_loss`` (nats per character) every
epoch; returns ``val_loss``, ``val_bpc`` and ``tokens_per_s``.
"""

from __future__ import annotations

import math
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from hpo.tasks._common import engine_config, evaluate

__all__ = ["CORPUS_FILES", "load_corpus", "train"]

# Present in every CPython 3.x installation; order fixes the corpus.
CORPUS_FILES = ("textwrap.py", "string.py", "bisect.py", "heapq.py", "functools.py", "fnmatch.py", "queue.py", "shlex.py")
_CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
_DEFAULTS: dict[str, Any] = {"train_micro_batch_size_per_gpu": 32, "gradient_accumulation_steps": 1}


@lru_cache(maxsize=1)
def load_corpus(max_chars: int = 200_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded (train, val) character tensors: 90% / 10% of the fixed stdlib text."""
    root = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((root / f).read_text(encoding="utf-8", errors="replace") for f in CORPUS_FILES)[:max_chars]
    index = {c: i for i, c in enumerate(_CHARS)}
    unknown = index["?"]
    data = torch.tensor([index.get(c, unknown) for c in text], dtype=torch.long)
    n = int(len(data) * 0.9)
    return data[:n], data[n:]


class _Windows(Dataset):
    """``count`` random windows of ``block + 1`` characters, fixed by ``seed``."""

    def __init__(self, data: torch.Tensor, block: int, count: int, seed: int) -> None:
        self.data, self.block = data, block
        g = torch.Generator().manual_seed(seed)
        self.starts = torch.randint(0, len(data) - block - 1, (count,), generator=g)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.starts[i])
        chunk = self.data[s : s + self.block + 1]
        return chunk[:-1], chunk[1:]


def _lm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


def train(ctx: Any) -> dict[str, float]:
    """Train the LM for ``ctx.max_epochs`` epochs of ``steps_per_epoch`` steps each."""
    import engine
    from engine.models import GPT, GPTConfig

    p = ctx.params
    torch.manual_seed(ctx.seed)
    train_data, val_data = load_corpus()
    block = int(p.get("block_size", 64))
    n_head = int(p.get("n_head", 4))
    n_embd = int(p.get("n_embd", 64))
    n_embd -= n_embd % n_head  # the embedding must split evenly over heads
    model = GPT(
        GPTConfig(
            vocab_size=len(_CHARS),
            block_size=block,
            n_layer=int(p.get("n_layer", 2)),
            n_head=n_head,
            n_embd=n_embd,
            dropout=float(p.get("dropout", 0.0)),
        )
    )
    cfg = engine_config(_DEFAULTS, ctx.engine_config, {"lr": 3e-3, **p})
    eng = engine.initialize(model, cfg)
    steps = int(p.get("steps_per_epoch", 40))
    windows = _Windows(train_data, block, steps * eng.train_batch_size, seed=ctx.seed)
    val_set = _Windows(val_data, block, 128, seed=1234)
    val_batches = [
        (torch.stack([val_set[j][0] for j in range(i, i + 32)]), torch.stack([val_set[j][1] for j in range(i, i + 32)]))
        for i in range(0, len(val_set), 32)
    ]
    start = ctx.resume(eng)
    # Resumed after its last epoch (stopped after the last report): only the evaluation remains.
    loss = evaluate(eng, val_batches, _lm_loss)[0] if start >= ctx.max_epochs else float("nan")
    for epoch in range(start, ctx.max_epochs):
        loader = eng.dataloader(windows, shuffle=True, seed=ctx.seed + epoch)
        for x, y in loader:
            x, y = x.to(eng.device), y.to(eng.device)
            eng.backward(_lm_loss(eng(x), y))
            eng.step()
            eng.zero_grad()
        loss, _ = evaluate(eng, val_batches, _lm_loss)
        ctx.save_checkpoint(eng, epoch + 1)  # before report: a paused trial resumes from here
        ctx.report(loss, epoch + 1)
    m = eng.metrics()
    return {"val_loss": loss, "val_bpc": loss / math.log(2), "tokens_per_s": float(m.tokens_per_s or m.samples_per_s or 0.0)}
