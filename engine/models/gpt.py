"""A nanoGPT-style decoder-only language model (e.g. for character-level text).

Attention projections are separate q/k/v linears so that column-wise tensor parallelism
splits whole heads; the forward infers the local number of heads from tensor shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.tensor.parallel import ColwiseParallel, ParallelStyle, RowwiseParallel
from torch.nn import functional as F

__all__ = ["GPT", "GPTConfig"]


@dataclass(kw_only=True, slots=True)
class GPTConfig:
    """Shape of a :class:`GPT`."""

    vocab_size: int = 65
    """Number of token ids."""
    block_size: int = 256
    """Longest sequence (positions)."""
    n_layer: int = 6
    """Transformer blocks."""
    n_head: int = 6
    """Attention heads per block."""
    n_embd: int = 384
    """Width of the residual stream; a multiple of ``n_head``."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches."""
    bias: bool = True
    """Biases in linears and layer norms."""

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd({self.n_embd}) must be a multiple of n_head({self.n_head})")
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_head) < 1:
            raise ValueError(f"sizes must be >= 1: {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with PyTorch's fused SDPA kernel."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.head_dim = config.n_embd // config.n_head
        self.q_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.k_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.v_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        # -1 heads: under tensor parallelism each rank holds n_head / tp of them.
        q, k, v = (proj(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(batch, seq, -1)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: 4x expansion with GELU."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer; ``forward(idx) -> logits`` of shape ``(B, T, vocab_size)``.

    The output head shares its weight with the token embedding.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "wpe": nn.Embedding(config.block_size, config.n_embd),
            "drop": nn.Dropout(config.dropout),
            "h": nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            "ln_f": nn.LayerNorm(config.n_embd, bias=config.bias),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer["wte"].weight
        self.apply(self._init_weights)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        # Parameters that cost matmul FLOPs: all but the position table (a lookup).
        self._matmul_params = sum(p.numel() for p in self.parameters()) - self.transformer["wpe"].weight.numel()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits for token ids ``idx`` of shape ``(B, T)`` with ``T <= block_size``."""
        seq = idx.size(1)
        if seq > self.config.block_size:
            raise ValueError(f"sequence length {seq} exceeds block_size {self.config.block_size}")
        pos = torch.arange(seq, device=idx.device)
        x = self.transformer["drop"](self.transformer["wte"](idx) + self.transformer["wpe"](pos))
        for block in self.transformer["h"]:
            x = block(x)
        return self.lm_head(self.transformer["ln_f"](x))

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks (units of sharding and activation checkpointing)."""
        return list(self.transformer["h"])

    def tp_plan(self) -> dict[str, ParallelStyle]:
        """DTensor plan: q/k/v and ``c_fc`` column-wise, the output projections row-wise.

        Embeddings, norms and the head stay replicated.
        """
        plan: dict[str, ParallelStyle] = {}
        for i in range(self.config.n_layer):
            prefix = f"transformer.h.{i}"
            for name in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "mlp.c_fc"):
                plan[f"{prefix}.{name}"] = ColwiseParallel()
            for name in ("attn.c_proj", "mlp.c_proj"):
                plan[f"{prefix}.{name}"] = RowwiseParallel()
        return plan

    def validate_tp_size(self, size: int) -> None:
        """Raise ValueError unless ``size`` ranks can split the heads evenly."""
        if self.config.n_head % size:
            raise ValueError(f"n_head({self.config.n_head}) is not divisible by the tensor-parallel size({size})")

    def num_params(self) -> int:
        """Distinct parameters (the tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token, PaLM appendix B: ``6N + 12 * L * H * Q * T``.

        ``N`` counts parameters used in matmuls (the tied embedding/head once, position
        table excluded); the second term is attention scores and values; ``T`` defaults
        to ``block_size``.
        """
        cfg = self.config
        seq = cfg.block_size if seq_len is None else seq_len
        return 6.0 * self._matmul_params + 12.0 * cfg.n_layer * cfg.n_head * (cfg.n_embd // cfg.n_head) * seq
