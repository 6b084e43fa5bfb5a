"""Layer `volume`: a CT as array + 4x4 RAS affine (mm); reading, writing, orientation and resampling."""

from .core import LabelMap, Volume
from .nifti import write_nifti
from .readers import read_labelmap, read_volume
from .resample import reorient, resample_labels, resample_like, resample_to_spacing

__all__ = ["LabelMap", "Volume", "read_labelmap", "read_volume", "reorient", "resample_labels",
           "resample_like", "resample_to_spacing", "write_nifti"]
