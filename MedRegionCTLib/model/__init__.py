"""The region-focused multimodal report model (torch, transformers, peft, MONAI).

Importing this package does not import torch: :mod:`.config` and :mod:`.preprocess` are shared with the
client, which has no torch. ``MedRegionModel`` is imported on first use.
"""

from __future__ import annotations

from .config import MedRegionModelConfig, preset

__all__ = ["MedRegionModel", "MedRegionModelConfig", "preset"]


def __getattr__(name: str):
    if name == "MedRegionModel":
        from .modeling import MedRegionModel

        return MedRegionModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
