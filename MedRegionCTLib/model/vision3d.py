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


# --- the RadFM-style 3D ViT (Reg2RG's vision and mask encoders) ---------------------------------------------------
class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.project = not (heads == 1 and dim_head == dim)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout)) if self.project else nn.Identity()
        self.dropout = dropout

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class _AxisPositions(nn.Module):
    """One learned table per axis (``dim // 3`` wide each); a grid of fewer patches reads every k-th row."""

    def __init__(self, width: int, grid: tuple[int, int, int]):
        super().__init__()
        self.grid = tuple(int(g) for g in grid)
        self.row_embed = nn.Embedding(self.grid[0], width)
        self.col_embed = nn.Embedding(self.grid[1], width)
        self.dep_embed = nn.Embedding(self.grid[2], width)
        for table in (self.row_embed, self.col_embed, self.dep_embed):
            nn.init.uniform_(table.weight)

    def forward(self, h: int, w: int, d: int, device) -> torch.Tensor:
        def rows(table, n, total):
            return table((torch.arange(n, device=device) + 1) * (total // n) - 1)

        x = rows(self.row_embed, h, self.grid[0])[:, None, None].expand(h, w, d, -1)
        y = rows(self.col_embed, w, self.grid[1])[None, :, None].expand(h, w, d, -1)
        z = rows(self.dep_embed, d, self.grid[2])[None, None, :].expand(h, w, d, -1)
        return torch.cat([x, y, z], dim=-1).reshape(1, h * w * d, -1)


class RadFMViT(nn.Module):
    """(N, C, X, Y, Z) -> ((N, patches, dim), positions): the 3D ViT of RadFM that Reg2RG encodes with.

    Patch embedding LayerNorm -> Linear -> LayerNorm over (p1 p2 pf c)-ordered patch vectors, a learned position
    table per axis (``pos_grid`` patches, read at strided rows when the input has fewer patches), pre-norm
    attention/MLP blocks, no final norm. Parameter names follow RadFM's, so its weights load without renaming.
    """

    def __init__(self, in_channels: int, patch_size, hidden_size: int, depth: int, heads: int, dim_head: int,
                 mlp_dim: int, pos_grid, dropout: float = 0.0):
        super().__init__()
        from einops.layers.torch import Rearrange

        p1, p2, pf = (int(p) for p in patch_size)
        self.patch = (p1, p2, pf)
        patch_dim = in_channels * p1 * p2 * pf
        self.to_patch_embedding = nn.Sequential(
            Rearrange("b c (h p1) (w p2) (f pf) -> b (h w f) (p1 p2 pf c)", p1=p1, p2=p2, pf=pf),
            nn.LayerNorm(patch_dim), nn.Linear(patch_dim, hidden_size), nn.LayerNorm(hidden_size))
        self.pos_embedding = _AxisPositions(hidden_size // 3, pos_grid)
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.Module()
        self.transformer.layers = nn.ModuleList(nn.ModuleList([
            _PreNorm(hidden_size, _SelfAttention(hidden_size, heads, dim_head, dropout)),
            _PreNorm(hidden_size, nn.Sequential(nn.Linear(hidden_size, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                                nn.Linear(mlp_dim, hidden_size), nn.Dropout(dropout))),
        ]) for _ in range(depth))

    def forward(self, volumes: torch.Tensor):
        _, _, x, y, z = volumes.shape
        tokens = self.to_patch_embedding(volumes)
        pos = self.pos_embedding(x // self.patch[0], y // self.patch[1], z // self.patch[2], volumes.device)
        tokens = self.dropout(tokens + pos)
        for attn, ff in self.transformer.layers:
            tokens = attn(tokens) + tokens
            tokens = ff(tokens) + tokens
        return tokens, pos


def build_vit(kind: str, in_channels: int, grid, patch_size, hidden_size: int, mlp_dim: int, num_layers: int,
              num_heads: int, dim_head: int = 64, pos_grid=None, dropout: float = 0.0) -> nn.Module:
    """MONAI's ViT (``kind="monai"``/``"vit"``) or the RadFM-style ViT (``"radfm"``), both returning
    ``(tokens, extra)``."""
    if kind == "radfm":
        default = tuple(int(g) // int(p) for g, p in zip(grid, patch_size))
        return RadFMViT(in_channels, patch_size, hidden_size, num_layers, num_heads, dim_head, mlp_dim,
                        tuple(pos_grid) if pos_grid else default, dropout)
    from monai.networks.nets import ViT

    vit = ViT(in_channels=in_channels, img_size=tuple(grid), patch_size=tuple(patch_size), hidden_size=hidden_size,
              mlp_dim=mlp_dim, num_layers=num_layers, num_heads=num_heads, dropout_rate=dropout, classification=False)
    freeze_cross_attention(vit)
    return vit


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
        self.config = config
        self.grid = tuple(int(g) for g in grid)
        self.vit = build_vit(config.kind, config.in_channels, self.grid, config.patch_size, config.hidden_size,
                             config.mlp_dim, config.num_layers, config.num_heads, config.dim_head, config.pos_grid,
                             config.dropout)
        if config.pretrained:
            load_state_file(self.vit, config.pretrained, "3D ViT (vision3d.pretrained)")
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
