"""Reg2RG texture path: a MONAI 3D ViT over a volume on the model grid, then a Perceiver resampler that reduces
its patch tokens to a fixed number of latents (Reg2RG: 32). The same path encodes each region crop and the
whole body-cropped volume.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, MissingDependencyError
from .config import Vision3DConfig


class PerceiverAttention(nn.Module):
    """Latents attend to [media tokens; latents] (Flamingo's resampler block)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        media, latents = self.norm_media(media), self.norm_latents(latents)
        b, n, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)

        def split(t):
            return t.view(b, t.shape[1], self.heads, -1).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class PerceiverResampler(nn.Module):
    """(N, T, D) tokens -> (N, num_latents, D)."""

    def __init__(self, dim: int, num_latents: int, depth: int, heads: int, dim_head: int):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * dim ** -0.5)
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(nn.ModuleList([
                PerceiverAttention(dim, heads, dim_head),
                nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim, bias=False), nn.GELU(),
                              nn.Linear(4 * dim, dim, bias=False)),
            ]))
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        latents = self.latents.unsqueeze(0).expand(media.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = latents + attn(media, latents)
            latents = latents + ff(latents)
        return self.norm(latents)


def load_state_file(module: nn.Module, path, what: str) -> None:
    """Load a safetensors state dict into ``module`` with a one-line error for missing or mismatched files."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingDependencyError(f"{what} weights {path} not found; put the .safetensors file there or fix the "
                                     "path in the model configuration.")
    state = load_file(str(path))
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise InputError(f"{what} weights {path} do not match the configured network (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}); use weights saved with the same "
                         "configuration.")
    module.load_state_dict(state)


def freeze_cross_attention(vit: nn.Module) -> None:
    """MONAI's TransformerBlock always creates ``norm_cross_attn`` (and ``cross_attn`` when asked), used only
    with cross-attention, which these ViTs never do: freeze them so no parameter waits for a gradient."""
    for name, param in vit.named_parameters():
        if "cross_attn" in name:
            param.requires_grad_(False)


class TextureEncoder(nn.Module):
    """3D ViT + Perceiver: (N, C, X, Y, Z) volumes -> (N, num_latents, hidden_size)."""

    def __init__(self, config: Vision3DConfig, grid):
        super().__init__()
        from monai.networks.nets import ViT

        self.config = config
        self.grid = tuple(int(g) for g in grid)
        self.vit = ViT(in_channels=config.in_channels, img_size=self.grid, patch_size=tuple(config.patch_size),
                       hidden_size=config.hidden_size, mlp_dim=config.mlp_dim, num_layers=config.num_layers,
                       num_heads=config.num_heads, dropout_rate=config.dropout, classification=False)
        if config.pretrained:
            load_state_file(self.vit, config.pretrained, "3D ViT (vision3d.pretrained)")
        freeze_cross_attention(self.vit)
        if config.freeze:
            self.vit.requires_grad_(False)
        self.perceiver = PerceiverResampler(config.hidden_size, config.num_latents, config.perceiver_depth,
                                            config.perceiver_heads, config.perceiver_dim_head)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        if volumes.dim() == 4:
            volumes = volumes.unsqueeze(1)
        if tuple(volumes.shape[2:]) != self.grid:
            raise InputError(f"volumes are {tuple(volumes.shape[2:])} but the 3D ViT takes {self.grid}; prepare "
                             "the case with this model's configuration (preprocess.grid).")
        volumes = volumes.expand(-1, self.config.in_channels, -1, -1, -1)
        if self.config.freeze:
            self.vit.eval()
            with torch.no_grad():
                tokens, _ = self.vit(volumes)
        else:
            tokens, _ = self.vit(volumes)
        return self.perceiver(tokens)
