"""Training: datasets (RadGenome-ChestCT layout, synthetic phantoms), the preprocessed-case cache and the
training loop (torch; imported on first use so that datasets and configs load without it).

>>> from MedRegionCTLib.train import Trainer, load_train_config
>>> Trainer(load_train_config("Testing/benchmarks/train_tiny_synthetic.json")).run()
"""

from __future__ import annotations

from .config import TrainConfig, load_train_config
from .datasets import CaseSource, PreparedDataset, RadGenomeDataset, make_source, read_region_reports

__all__ = ["CaseSource", "PreparedDataset", "RadGenomeDataset", "SyntheticPhantomDataset", "TrainConfig", "Trainer",
           "load_train_config", "make_source", "read_region_reports"]


def __getattr__(name: str):
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    if name == "SyntheticPhantomDataset":
        from .synthetic import SyntheticPhantomDataset

        return SyntheticPhantomDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
