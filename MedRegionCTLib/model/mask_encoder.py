"""Geometry tokens: a region's occupancy mask on the global grid -> ``num_tokens`` tokens.

``kind="vit"`` follows Reg2RG (a shallow MONAI ViT whose patch tokens are averaged; more than one token
averages contiguous groups of patches); ``kind="cnn"`` is a strided 3D CNN whose feature map is pooled to
``num_tokens`` tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MaskEncoderConfig
from .vision3d import freeze_cross_attention


class MaskEncoder(nn.Module):
    """(N, X, Y, Z) occupancy in [0, 1] -> (N, num_tokens, hidden_size)."""

    def __init__(self, config: MaskEncoderConfig, grid):
        super().__init__()
        self.config = config
        grid = tuple(int(g) for g in grid)
        if config.kind == "vit":
            from monai.networks.nets import ViT

            self.net = ViT(in_channels=1, img_size=grid, patch_size=tuple(config.patch_size),
                           hidden_size=config.hidden_size, mlp_dim=config.mlp_dim, num_layers=config.num_layers,
                           num_heads=config.num_heads, classification=False)
            freeze_cross_attention(self.net)
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
        if self.config.kind == "vit":
            tokens, _ = self.net(x)  # (N, T, D)
        else:
            tokens = self.net(x).flatten(2).transpose(1, 2)  # (N, T, C)
        # contiguous groups of tokens averaged: 1 token = the global mean (Reg2RG)
        return F.adaptive_avg_pool1d(tokens.transpose(1, 2), self.config.num_tokens).transpose(1, 2)
