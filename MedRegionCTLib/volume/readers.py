"""`read_volume` and `read_labelmap`: one entry point that picks the reader from the path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError, VolumeReadError
from ..progress import check_cancel
from .core import LabelMap, Volume
from .grid_checks import check_spacing
from .intensity import check_ct_values, native_byte_order, scale_to_hu
from .itk_file import ITK_SUFFIXES, read_itk_raw, segment_names
from .nifti import NIFTI_SUFFIXES, nifti_stem, read_nifti_raw, smallest_label_dtype

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_SUPPORTED = ("a NIfTI (.nii/.nii.gz), NRRD (.nrrd/.nhdr) or MetaImage (.mha/.mhd) file or a DICOM series "
              "folder")


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def path_kind(path: Path) -> str:
    """``"nifti"``, ``"itk"`` (NRRD/MetaImage), ``"dicom"`` (folder) or ``"dicom_file"``; raises otherwise."""
    if not path.exists():
        raise VolumeReadError(f"{path} does not exist; check the path (give {_SUPPORTED}).")
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if path.suffix.lower() in ITK_SUFFIXES:
        return "itk"
    if name.endswith(DICOM_SUFFIXES) or _is_dicom_file(path):
        return "dicom_file"
    raise VolumeReadError(f"{path.name}: unsupported file type '{''.join(path.suffixes) or 'no extension'}'; "
                          f"give {_SUPPORTED}.")


def is_ct_source(path) -> bool:
    """Whether ``path`` is something :func:`read_volume` takes: an image file of a known type or a folder with
    DICOM files (looks at up to 20 files; does not read pixels)."""
    path = Path(path)
    if path.is_dir():
        from .dicom_series import _candidate_files

        for i, candidate in enumerate(_candidate_files(path)):
            if candidate.name.lower().endswith(DICOM_SUFFIXES) or _is_dicom_file(candidate):
                return True
            if i >= 20:
                break
        return False
    name = path.name.lower()
    return path.is_file() and (name.endswith(NIFTI_SUFFIXES) or path.suffix.lower() in ITK_SUFFIXES)


def read_volume(path, *, check_ct: bool = True, series=None, progress=None, cancel=None) -> Volume:
    """Read a CT from a NIfTI/NRRD/MetaImage file or a DICOM series folder as int16 Hounsfield units.

    The voxel order is kept as stored; the affine (voxel -> RAS mm) says where everything is.
    ``check_ct`` rejects images whose intensities are not CT HU (:class:`NotCTError`). ``series`` picks one
    series (SeriesNumber or SeriesInstanceUID) in a DICOM folder holding several. ``meta`` carries the format,
    the source path and technical facts of the file, never patient identifiers.
    ``progress(fraction, message)`` and ``cancel`` follow :mod:`MedRegionCTLib.progress`.
    """
    check_cancel(cancel, "reading the CT")
    path = Path(path).expanduser()
    kind = path_kind(path)
    if series is not None and not kind.startswith("dicom"):
        raise InputError(f"series= applies to DICOM folders only; {path.name} is a single image file.")
    what = str(path)
    if kind.startswith("dicom"):
        from .dicom_series import read_dicom_series

        array, affine, meta = read_dicom_series(path, series=series, check_ct=check_ct, progress=progress,
                                                cancel=cancel)
        meta = {"format": "dicom", **meta}
    elif kind == "nifti":
        raw, slope, inter, affine, meta = read_nifti_raw(path, what)
        array = scale_to_hu(raw, slope, inter, what=what, check_ct=check_ct)
        del raw
        meta = {"format": "nifti", **meta}
    else:
        raw, affine, meta, _ = read_itk_raw(path, what)
        array = scale_to_hu(raw, 1.0, 0.0, what=what, check_ct=check_ct)
        del raw
    check_spacing(np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0), what)
    if check_ct:
        meta["ct_check"] = check_ct_values(array, what)
    meta = {"format": meta.pop("format"), "source": str(path), **meta, "dtype": str(array.dtype)}
    if progress is not None:
        progress(1.0, "CT read")
    return Volume(array, affine, meta)


def _sidecar_names(path: Path) -> dict[int, str] | None:
    stem = nifti_stem(path) if path.name.lower().endswith(NIFTI_SUFFIXES) else path.name[: -len(path.suffix)]
    sidecar = path.with_name(stem + ".json")
    if not sidecar.is_file():
        return None
    try:
        table = json.loads(sidecar.read_text(encoding="utf-8"))
        if isinstance(table.get("labels"), dict):  # `medregionct segment` writes {"labels": {...}, "not_found": [...]}
            table = table["labels"]
        return {int(k): str(v) for k, v in table.items()}
    except (ValueError, AttributeError, TypeError) as error:
        raise InputError(f"label names file {sidecar} is not a JSON object of {{\"index\": \"name\"}} "
                         f"(optionally under a \"labels\" key) ({error}); fix or remove it.") from error


def _as_labels(raw: np.ndarray, slope: float, inter: float, what: str) -> np.ndarray:
    raw = native_byte_order(raw)
    if slope != 1 or inter != 0:
        raw = raw * slope + inter
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or not np.all(np.mod(raw, 1) == 0):
            raise InputError(f"{what} holds non-integer values, so it is not a label map (a probability map "
                             "or a CT?); threshold/convert it to integer labels first.")
        return raw.astype(smallest_label_dtype(raw))
    if raw.dtype.kind == "b":
        return raw.astype(np.uint8)
    if raw.dtype.kind not in "iu":
        raise InputError(f"{what} has pixel type {raw.dtype}; a label map needs integer labels.")
    if raw.dtype.kind == "i" and raw.size and raw.min() < 0:
        raise InputError(f"{what} holds negative values (minimum {raw.min()}), so it is not a label map; "
                         "give a label image with labels >= 0.")
    return raw


def read_labelmap(path, names: dict | None = None) -> LabelMap:
    """Read an integer label image (NIfTI, NRRD or MetaImage; no CT check) as a :class:`LabelMap`.

    Class names come from ``names`` ({index: name}) when given, else from a sidecar ``<stem>.json``
    ({"index": "name"}) beside the file, else from a 3D Slicer ``.seg.nrrd`` header.
    """
    path = Path(path).expanduser()
    kind = path_kind(path)
    what = str(path)
    if kind.startswith("dicom"):
        raise VolumeReadError(f"{path.name}: DICOM label images (DICOM SEG) are not read here; convert them "
                              "to NIfTI/NRRD (e.g. dcmqi segimage2itkimage) and give that file.")
    header: dict = {}
    if kind == "nifti":
        raw, slope, inter, affine, meta = read_nifti_raw(path, what)
        meta = {"format": "nifti", **meta}
    else:
        raw, affine, meta, header = read_itk_raw(path, what)
        slope, inter = 1.0, 0.0
    array = _as_labels(raw, slope, inter, what)
    names_from = "argument"
    if names is None:
        names, names_from = _sidecar_names(path), "sidecar json"
    if names is None and header:
        names, names_from = segment_names(header) or None, "seg.nrrd header"
    if names is None:
        names, names_from = {}, "none"
    meta = {"format": meta.pop("format"), "source": str(path), **meta, "names_from": names_from}
    return LabelMap(array, affine, dict(names), meta)
