"""NRRD (.nrrd/.nhdr) and MetaImage (.mha/.mhd) reading through SimpleITK, without copying the voxels.

ITK works in LPS; the affine is converted to RAS. SimpleITK's numpy view is indexed ``[k, j, i]``; its
transpose is the ``[i, j, k]`` array we need, and a small holder object keeps the ITK image (the owner of the
buffer) alive for as long as the array exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import VolumeReadError
from .grid_checks import check_spacing
from .nifti import one_line
from .shape_checks import spatial_shape

ITK_SUFFIXES = {".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage", ".mhd": "metaimage"}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class _ITKBuffer:
    """Exposes an ITK image's pixel buffer to numpy and keeps the image alive while numpy uses it."""

    def __init__(self, image, view: np.ndarray):
        self._image = image
        interface = dict(view.__array_interface__)
        # We hold the only reference to a freshly read image (MakeUnique was called), so writing is safe.
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface


def image_to_ijk_array(image) -> np.ndarray:
    """``[i, j, k]`` numpy view of a scalar SimpleITK image's buffer (no copy; keeps the image alive)."""
    import SimpleITK as sitk

    view = sitk.GetArrayViewFromImage(image)
    return np.asarray(_ITKBuffer(image, view)).transpose(tuple(range(view.ndim))[::-1])


def itk_affine(origin, spacing, direction, dim: int) -> np.ndarray:
    """RAS 4x4 affine of the first three axes of an ITK image (LPS origin, spacing, row-major direction)."""
    d = np.asarray(direction, dtype=np.float64).reshape(dim, dim)[:3, :3]
    lps = np.eye(4)
    lps[:3, :3] = d * np.asarray(spacing[:3], dtype=np.float64)
    lps[:3, 3] = np.asarray(origin[:3], dtype=np.float64)
    return LPS_TO_RAS @ lps


def read_itk_raw(path: Path, what: str):
    """Stored array ``[i, j, k]``, RAS affine, and meta of an NRRD/MetaImage file."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise VolumeReadError(f"{what} could not be read ({one_line(error)[:160]}); check that it is a "
                              "complete NRRD/MetaImage file (for .nhdr, that its data file is beside it)."
                              ) from error
    dim = reader.GetDimension()
    if reader.GetNumberOfComponents() != 1:
        raise VolumeReadError(f"{what} has {reader.GetNumberOfComponents()} values per voxel (a vector or "
                              "colour image); give a single-channel CT or label image.")
    shape3 = spatial_shape(reader.GetSize(), what)
    check_spacing(reader.GetSpacing()[:3], what)  # before reading: ITK fails on a zero spacing with no reason
    keys = set(reader.GetMetaDataKeys())
    header = {k: reader.GetMetaData(k) for k in keys if not k.startswith("ITK_")}
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise VolumeReadError(f"{what} is truncated or corrupt: its voxel data could not be read "
                              f"({one_line(error)[:160]}); re-export or copy the file again.") from error
    array = image_to_ijk_array(image)
    if array.ndim > 3:
        array = array[(...,) + (0,) * (array.ndim - 3)]
    array = array.reshape(shape3, order="A")
    affine = itk_affine(image.GetOrigin(), image.GetSpacing(), image.GetDirection(), dim)
    fmt = ITK_SUFFIXES.get(path.suffix.lower(), "nrrd")
    meta: dict = {"stored_dtype": str(array.dtype), "format": fmt}
    if fmt == "nrrd":
        space = header.get("NRRD_space")
        meta["nrrd_space"] = space or "none"
        if not space:
            meta["geometry_note"] = ("the NRRD header gives no 'space': ITK's defaults were used (identity "
                                     "direction in LPS, origin 0, spacing 1 mm unless 'spacings' is set), so "
                                     "left/right and positions are not known from the file")
    return array, affine, meta, header


def segment_names(header: dict) -> dict[int, str]:
    """Label value -> name from a 3D Slicer ``.seg.nrrd`` header (SegmentN_Name, SegmentN_LabelValue)."""
    names: dict[int, str] = {}
    for key, value in header.items():
        match = re.fullmatch(r"Segment(\d+)_Name", key)
        if match:
            label = header.get(f"Segment{match.group(1)}_LabelValue")
            if label is not None and label.strip().lstrip("-").isdigit():
                names[int(label)] = value
    return names
