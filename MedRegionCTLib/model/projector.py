"""Projection of encoder tokens to the language model's hidden size (one projector per token source)."""

from __future__ import annotations

from torch import nn


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """``"linear"`` (Reg2RG's fc) or ``"mlp2x_gelu"`` (LLaVA-1.5: Linear, GELU, Linear)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
