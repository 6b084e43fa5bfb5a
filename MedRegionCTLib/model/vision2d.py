"""MedRegion-CT R2 token pooling: a 2D Hugging Face vision encoder run slice by slice.

Global tokens: the patch features of each slice averaged into one token per slice, or per slab of
``slab_size`` slices. Region tokens: patch features averaged with weights equal to the region's occupancy of
each patch, over ``region_tokens`` contiguous groups of the slices the region spans (one token per group), so
a long region (lung) gets tokens from its top, middle and base.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, MissingDependencyError
from .config import Vision2DConfig


def load_vision_encoder(config: Vision2DConfig) -> nn.Module:
    """The HF vision tower from ``config.path`` (local folder) or ``config.hf_config`` (random weights)."""
    from transformers import AutoConfig, AutoModel

    if config.path:
        folder = Path(config.path)
        if not (folder / "config.json").is_file():
            raise MissingDependencyError(f"vision encoder folder {folder} has no config.json; download the model "
                                         "(e.g. a SigLIP or DINOv2 checkpoint) to that folder or fix vision2d.path.")
        hf_config = AutoConfig.from_pretrained(folder, local_files_only=True)
    else:
        data = dict(config.hf_config)
        model_type = data.pop("model_type", None)
        if not model_type:
            raise InputError("vision2d.hf_config needs a 'model_type' (e.g. 'siglip_vision_model', 'dinov2').")
        hf_config = AutoConfig.for_model(model_type, **data)
    # SigLIP/CLIP checkpoints may hold the text tower too: keep only the vision part.
    vision_config = getattr(hf_config, "vision_config", None) or hf_config
    if config.path:
        model = AutoModel.from_pretrained(folder, config=hf_config, local_files_only=True)
    else:
        model = AutoModel.from_config(hf_config)
    if vision_config is not hf_config:
        model = getattr(model, "vision_model", model)
    return model


def freeze_unused(encoder: nn.Module, image_size: int, channels: int) -> list[str]:
    """Freeze the parameters that last_hidden_state does not depend on (SigLIP's pooling head, CLIP's
    post-layernorm, DINOv2's mask token): found by one backward pass on a blank image, so they do not sit in
    the optimiser with no gradient. Returns their names."""
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    if not trainable or trainable[0].device.type == "meta":
        return []
    was_training = encoder.training
    encoder.train()
    dtype = trainable[0].dtype
    pixels = torch.zeros(1, channels, image_size, image_size, dtype=dtype, device=trainable[0].device)
    encoder.zero_grad(set_to_none=True)
    encoder(pixel_values=pixels).last_hidden_state.float().sum().backward()
    unused = []
    for name, param in encoder.named_parameters():
        if param.requires_grad and param.grad is None:
            param.requires_grad_(False)
            unused.append(name)
    encoder.zero_grad(set_to_none=True)
    encoder.train(was_training)
    return unused


def _encoder_geometry(model: nn.Module) -> tuple[int, int, int, int]:
    cfg = model.config
    image_size = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0]
    channels = getattr(cfg, "num_channels", 3)
    return int(image_size), int(patch), int(channels), int(cfg.hidden_size)


def slab_groups(present: np.ndarray, count: int) -> list[np.ndarray]:
    """Split the slices from the first to the last present one into ``count`` contiguous groups (>= 1 slice
    each, groups repeat when the region spans fewer slices than ``count``)."""
    idx = np.flatnonzero(present)
    if idx.size == 0:
        idx = np.arange(present.size)
    first, last = int(idx[0]), int(idx[-1]) + 1
    edges = np.linspace(first, last, count + 1)
    groups = []
    for k in range(count):
        lo = int(np.floor(edges[k]))
        hi = max(int(np.ceil(edges[k + 1])), lo + 1)
        groups.append(np.arange(lo, min(hi, last)))
    return groups


class R2TokenPooling(nn.Module):
    """Slice encoder + R2 pooling. Output dims are the encoder's hidden size (projection is separate)."""

    def __init__(self, config: Vision2DConfig, encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else load_vision_encoder(config)
        self.image_size, self.patch_size, self.channels, self.hidden_size = _encoder_geometry(self.encoder)
        self.register_buffer("mean", torch.tensor(config.image_mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(config.image_std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        if config.freeze:
            self.encoder.requires_grad_(False)
        else:
            freeze_unused(self.encoder, self.image_size, self.channels)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def encode_slices(self, slices: torch.Tensor) -> torch.Tensor:
        """(Z, H, W) in [0, 1] -> patch features (Z, h, w, D)."""
        z, h, w = slices.shape
        if h != self.image_size or w != self.image_size:
            raise InputError(f"slices are {h}x{w} but the 2D encoder takes {self.image_size}x{self.image_size}; "
                             "prepare the case with this model's configuration (preprocess.slice_size).")
        dtype = next(self.encoder.parameters()).dtype
        feats = []
        frozen = self.config.freeze
        if frozen:
            self.encoder.eval()  # no dropout in a frozen encoder, even while the rest trains
        for start in range(0, z, self.config.encoder_batch):
            chunk = slices[start:start + self.config.encoder_batch].unsqueeze(1)
            chunk = chunk.expand(-1, len(self.config.image_mean), -1, -1)
            pixels = ((chunk - self.mean) / self.std)[:, : self.channels].to(dtype)
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                hidden = self.encoder(pixel_values=pixels).last_hidden_state
            n_patch = self.grid * self.grid
            # CLS / register tokens come first in DINOv2-class models; SigLIP has none.
            feats.append(hidden[:, -n_patch:, :].float())  # pool in float32 whatever the encoder's dtype
        out = torch.cat(feats, 0)
        return out.view(z, self.grid, self.grid, -1)

    def patch_weights(self, slice_masks: torch.Tensor) -> torch.Tensor:
        """(R, Z, H, W) occupancy -> (R, Z, h, w) occupancy of each patch (area fraction)."""
        r, z, h, w = slice_masks.shape
        pooled = F.avg_pool2d(slice_masks.reshape(r * z, 1, h, w).float(), self.patch_size)
        return pooled.view(r, z, self.grid, self.grid)

    def global_tokens(self, feats: torch.Tensor) -> torch.Tensor:
        """(Z, h, w, D) -> (Z or Z / slab_size, D)."""
        per_slice = feats.mean(dim=(1, 2))
        if self.config.global_pooling == "slab":
            per_slice = per_slice.view(-1, self.config.slab_size, per_slice.shape[-1]).mean(1)
        return per_slice

    def region_tokens(self, feats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(Z, h, w, D) features, (R, Z, h, w) weights -> (R, region_tokens, D), mask-weighted means."""
        count = self.config.region_tokens
        out = []
        for r in range(weights.shape[0]):
            w = weights[r].to(feats.dtype)
            total = w.sum()
            if float(total) <= 0:  # region outside the body crop: fall back to the whole volume
                w = torch.ones_like(w)
            present = (w.sum(dim=(1, 2)) > 0).cpu().numpy()
            tokens = []
            for group in slab_groups(present, count):
                wg = w[group]
                if float(wg.sum()) <= 0:  # a gap inside the region's extent: use all of its slices
                    wg, group = w, np.arange(w.shape[0])
                fg = feats[group]
                tokens.append((wg.unsqueeze(-1) * fg).sum(dim=(0, 1, 2)) / wg.sum())
            out.append(torch.stack(tokens))
        return torch.stack(out)

    def forward(self, slices: torch.Tensor, slice_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One CT: (Z, H, W), (R, Z, H, W) -> global (G, D), regions (R, region_tokens, D)."""
        feats = self.encode_slices(slices)
        return self.global_tokens(feats), self.region_tokens(feats, self.patch_weights(slice_masks))
