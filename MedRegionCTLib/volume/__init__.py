"""Layer `volume`: a CT as array + 4x4 RAS affine (mm); reading, writing, orientation and resampling."""

from .core import LabelMap, Volume

__all__ = ["LabelMap", "Volume"]
