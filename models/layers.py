"""Small building blocks: masked pooling and MulT-style (cross-)attention encoders."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal_positions(steps: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed sinusoidal position embeddings, (steps, dim)."""
    position = torch.arange(steps, device=device, dtype=torch.float32).unsqueeze(1)
    half = dim // 2
    freq = torch.exp(
        torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) / max(half - 1, 1))
    )
    emb = torch.zeros(steps, dim, device=device)
    emb[:, :half] = torch.sin(position * freq)
    emb[:, half : 2 * half] = torch.cos(position * freq)
    return emb


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, d) where mask (B, T) is 1; all steps where none is."""
    weights = mask.to(x.dtype)
    empty = weights.sum(1, keepdim=True) == 0
    weights = torch.where(empty, torch.ones_like(weights), weights)
    return (x * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of (B, T, d) where mask (B, T) is 1; zeros where no step is present."""
    present = mask > 0
    filled = x.masked_fill(~present.unsqueeze(-1), torch.finfo(x.dtype).min)
    return torch.where(present.any(1, keepdim=True), filled.amax(1), torch.zeros_like(filled[:, 0]))


def key_padding(mask: torch.Tensor) -> torch.Tensor:
    """Attention key padding mask (True = ignore) from a presence mask (B, T).

    A row with no present step attends to every step instead: its inputs were zeroed,
    so the result is fixed, and softmax over nothing would give NaN.
    """
    pad = mask <= 0
    return pad & ~pad.all(dim=1, keepdim=True)


class AttentionLayer(nn.Module):
    """Pre-norm attention + feed-forward layer; cross-attention when a source is given."""

    def __init__(self, dim: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(relu_dropout), nn.Linear(4 * dim, dim)
        )
        self.res_dropout = nn.Dropout(res_dropout)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None, source_pad: torch.Tensor) -> torch.Tensor:
        q = self.norm_q(x)
        kv = q if source is None else self.norm_kv(source)
        attended, _ = self.attn(q, kv, kv, key_padding_mask=source_pad, need_weights=False)
        x = x + self.res_dropout(attended)
        return x + self.res_dropout(self.ff(self.norm_ff(x)))


class AttentionEncoder(nn.Module):
    """A stack of attention layers (MulT's TransformerEncoder, batch first, with masks).

    ``forward(x, x_mask)`` is self-attention; ``forward(x, x_mask, source, source_mask)``
    lets x attend to source (crossmodal attention, target <- source).
    """

    def __init__(self, dim: int, heads: int, layers: int, attn_dropout: float, relu_dropout: float,
                 res_dropout: float, embed_dropout: float):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.embed_dropout = embed_dropout
        self.layers = nn.ModuleList(
            AttentionLayer(dim, heads, attn_dropout, relu_dropout, res_dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale * x + sinusoidal_positions(x.size(1), x.size(2), x.device).to(x.dtype)
        return F.dropout(x, p=self.embed_dropout, training=self.training)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, source: torch.Tensor | None = None,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self._embed(x)
        if source is None:
            pad = key_padding(x_mask)
        else:
            source = self._embed(source)
            pad = key_padding(source_mask)
        for layer in self.layers:
            x = layer(x, source, pad)
        # zero the rows of absent steps so nothing downstream can read them
        return self.norm(x) * (x_mask > 0).unsqueeze(-1).to(x.dtype)


class ResidualHead(nn.Module):
    """proj1 -> ReLU -> dropout -> proj2, plus the input; then an output layer.

    This is the shape of every head in the authors' code; ``repr`` is what the GD-Unit
    distils (homogeneous: the bottleneck; heterogeneous: the residual output).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.proj1 = nn.Linear(in_dim, hidden)
        self.proj2 = nn.Linear(hidden, in_dim)
        self.out = nn.Linear(in_dim, out_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bottleneck = self.proj1(x)
        h = self.proj2(F.dropout(F.relu(bottleneck), p=self.dropout, training=self.training)) + x
        return self.out(h), bottleneck, h
