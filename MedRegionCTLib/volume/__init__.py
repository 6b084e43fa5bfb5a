"""Layer `volume`: a CT as array + 4x4 RAS affine (mm); reading, writing, orientation and resampling."""

from .core import LabelMap, Volume
from .grid_checks import check_spacing, slab
from .nifti import write_nifti
from .readers import read_labelmap, read_volume
from .resample import orthogonalize, reorient, resample_labels, resample_like, resample_to_spacing

__all__ = ["LabelMap", "Volume", "check_spacing", "orthogonalize", "read_labelmap", "read_volume", "reorient",
           "resample_labels", "resample_like", "resample_to_spacing", "slab", "write_nifti"]
