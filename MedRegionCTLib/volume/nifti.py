"""NIfTI (.nii / .nii.gz) reading and atomic writing through nibabel."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, write_json
from ..errors import InputError, VolumeReadError
from .core import LabelMap, Volume
from .grid_checks import check_spacing
from .shape_checks import spatial_shape

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_UNIT_TO_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 0.001}


def one_line(error: BaseException) -> str:
    """An exception as a short single line (library messages can span lines)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


class _ChunkedReadinto:
    """File wrapper whose ``readinto`` fills the caller's buffer in chunks.

    ``gzip.GzipFile.readinto`` reads the whole request into a temporary bytes object and then copies it,
    which doubles the peak memory of reading a .nii.gz; chunking bounds that temporary to ``chunk`` bytes.
    """

    def __init__(self, fileobj, chunk: int = 1 << 24):
        self._f = fileobj
        self._chunk = chunk
        self.name = getattr(fileobj, "name", "object")

    def seek(self, *args):
        return self._f.seek(*args)

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        total = 0
        while total < len(view):
            n = self._f.readinto(view[total:total + self._chunk])
            if not n:
                break
            total += n
        return total


def _read_gz_data(path: Path, proxy) -> np.ndarray:
    """The stored array of a .nii.gz (like nibabel's get_unscaled, without the second full-size buffer)."""
    from nibabel.volumeutils import array_from_file

    with gzip.open(path, "rb") as handle:
        return array_from_file(proxy.shape, proxy.dtype, _ChunkedReadinto(handle), offset=proxy.offset,
                               order=proxy.order, mmap=False)


@contextlib.contextmanager
def _quiet_nibabel():
    """nibabel logs header fixes to stderr; the reader reports what matters as one-line errors instead."""
    from nibabel.imageglobals import logger

    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def read_nifti_raw(path: Path, what: str):
    """Stored (unscaled) array, scl slope/intercept, affine (RAS mm) and technical meta of a NIfTI file."""
    import nibabel as nib

    try:
        # mmap=False: the array must not keep the file mapped (it could not be replaced or deleted on
        # Windows, and in-place scaling must never reach the disk). nibabel's log line about zero pixdims is
        # silenced: _stored_pixdim turns them into a clear error.
        with _quiet_nibabel():
            img = nib.load(str(path), mmap=False)
    except Exception as error:  # nibabel raises many types for bad headers
        raise VolumeReadError(f"{what} is not a readable NIfTI file ({one_line(error)}); check that it is a "
                              "complete .nii/.nii.gz file, re-export it if needed.") from error
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise VolumeReadError(f"{what} is a {type(img).__name__}, not NIfTI; convert it to .nii.gz.")
    shape3 = spatial_shape(img.shape, what)
    header = img.header
    try:
        if path.name.lower().endswith(".gz"):
            raw = _read_gz_data(path, img.dataobj)
        else:
            raw = np.asanyarray(img.dataobj.get_unscaled())
    except Exception as error:  # truncated gzip stream, short file, bad CRC ...
        raise VolumeReadError(f"{what} is truncated or corrupt: its voxel data could not be read "
                              f"({one_line(error)}); re-export or copy the file again.") from error
    if raw.ndim > 3:
        raw = raw[(...,) + (0,) * (raw.ndim - 3)]
    raw = raw.reshape(shape3, order="A")
    if not raw.flags.writeable:
        raw = raw.copy(order="A")
    slope, inter = img.dataobj.slope, img.dataobj.inter
    affine = np.array(img.affine, dtype=np.float64)
    sform_code = int(header.get_sform(coded=True)[1] or 0)
    qform_code = int(header.get_qform(coded=True)[1] or 0)
    if sform_code <= 0:  # the voxel sizes come from pixdim, which nibabel silently sets to 1 where it is 0
        check_spacing(_stored_pixdim(path, type(header)), what)
    meta = {"stored_dtype": str(raw.dtype), "rescale": {"slope": float(slope), "intercept": float(inter)},
            "affine_from": "sform" if sform_code > 0 else "qform" if qform_code > 0 else "none"}
    if sform_code <= 0 and qform_code <= 0:
        meta["geometry_note"] = ("the NIfTI header has neither sform nor qform: orientation is unknown, "
                                 "the voxel sizes were used with nibabel's default axis directions")
    unit = header.get_xyzt_units()[0] or "unknown"
    if _UNIT_TO_MM.get(unit, 1.0) != 1.0:
        affine[:3, :] *= _UNIT_TO_MM[unit]
        meta["units_converted"] = f"{unit} -> mm"
    return raw, float(slope), float(inter), affine, meta


def _stored_pixdim(path: Path, header_class) -> list[float]:
    """pixdim[1:4] as stored in the file (nibabel's checked header replaces zeros by 1)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = header_class.from_fileobj(handle, check=False)
    return [float(v) for v in raw["pixdim"][1:4]]


def is_nifti_path(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def smallest_label_dtype(array: np.ndarray) -> np.dtype:
    """Smallest unsigned integer type holding every label of ``array``."""
    lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if lo < 0:
        raise InputError(f"the label map holds negative labels (minimum {lo}); labels must be >= 0.")
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if hi <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise InputError(f"label value {hi} is too large to store.")


def write_nifti(image: Volume | LabelMap, path) -> Path:
    """Write a :class:`Volume` or :class:`LabelMap` as NIfTI (``.nii.gz`` is gzipped), atomically.

    The file appears complete or not at all (written to a temporary file in the same folder, then renamed).
    A label map is stored with the smallest unsigned integer type that holds its labels, and its names go to
    a JSON sidecar ``<stem>.json`` (``{"index": "name"}``) that :func:`read_labelmap` reads back.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti_path(path):
        raise InputError(f"cannot write {path}: the name must end in .nii.gz or .nii.")
    if not isinstance(image, Volume | LabelMap):
        raise InputError(f"write_nifti needs a Volume or LabelMap, got {type(image).__name__}.")
    array = image.array
    if isinstance(image, LabelMap):
        dtype = smallest_label_dtype(array)
        if array.dtype != dtype:
            array = array.astype(dtype)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8)
    affine = np.asarray(image.affine, dtype=np.float64)
    nii = nib.Nifti1Image(array, affine)
    nii.header.set_data_dtype(array.dtype)
    nii.set_sform(affine, code="scanner")
    # qform can only hold a rotation + zooms; a sheared grid (gantry tilt) is described by the sform alone.
    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    orthogonal = np.allclose(columns.T @ columns, np.eye(3), atol=1e-5)
    nii.set_qform(affine if orthogonal else None, code="scanner" if orthogonal else "unknown")
    nii.header.set_xyzt_units("mm", "sec")
    if isinstance(image, LabelMap):
        nii.header.set_intent("label")
    atomic_write(path, lambda tmp: nib.save(nii, tmp))
    if isinstance(image, LabelMap) and image.names:
        write_json(path.with_name(nifti_stem(path) + ".json"), {str(k): v for k, v in sorted(image.names.items())})
    return path
