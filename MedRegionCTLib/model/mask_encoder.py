"""Geometry tokens: a region's occupancy mask on the global grid -> ``num_tokens`` tokens.

``kind="vit"`` follows Reg2RG (a shallow MONAI ViT whose patch tokens are averaged; more than one token
averages contiguous groups of patches; ``"radfm"`` is Reg2RG's own RadFM-style ViT, for its published
weights); ``kind="cnn"`` is a strided 3D CNN whose feature map is pooled to
``num_tokens`` tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MaskEncoderConfig
from .vision3d import build_vit


class MaskEncoder(nn.Module):
    """(N, X, Y, Z) occupancy in [0, 1] -> (N, num_tokens, hidden_size)."""

    def __init__(self, config: MaskEncoderConfig, grid):
        super().__init__()
        self.config = config
        grid = tuple(int(g) for g in grid)
        if config.kind in ("vit", "radfm"):
            self.net = build_vit("radfm" if config.kind == "radfm" else "monai", 1, grid, config.patch_size,
                                 config.hidden_size, config.mlp_dim, config.num_layers, config.num_heads,
                                 config.dim_head, config.pos_grid)
            self.hidden_size = config.hidden_size
        else:
            from monai.networks.blocks import Convolution

            layers, channels = [], 1
            for out in config.cnn_channels:
                layers.append(Convolution(3, channels, out, strides=2, kernel_size=3, act="GELU", norm="INSTANCE"))
                channels = out
            self.net = nn.Sequential(*layers)
            self.hidden_size = channels

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        x = masks.unsqueeze(1).to(next(self.parameters()).dtype)
        if self.config.kind in ("vit", "radfm"):
            tokens, _ = self.net(x)  # (N, T, D)
        else:
            tokens = self.net(x).flatten(2).transpose(1, 2)  # (N, T, C)
        # contiguous groups of tokens averaged: 1 token = the global mean (Reg2RG)
        return F.adaptive_avg_pool1d(tokens.transpose(1, 2), self.config.num_tokens).transpose(1, 2)
