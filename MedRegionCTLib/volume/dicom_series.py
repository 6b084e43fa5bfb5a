"""DICOM series folder -> :class:`Volume`.

Headers are read with pydicom (without pixels) and grouped by SeriesInstanceUID; slices are sorted along the
slice normal (cross product of ImageOrientationPatient) and checked for duplicates, gaps and uneven spacing;
the affine comes from ImagePositionPatient / ImageOrientationPatient / PixelSpacing (LPS -> RAS). Pixels are
decoded slice by slice into one preallocated int16 array, with pydicom where it can and SimpleITK (GDCM) for
compressed transfer syntaxes pydicom has no decoder for. Nothing identifying (names, dates, UIDs) goes
to meta.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import load_json
from ..errors import NotCTError, VolumeReadError
from ..progress import check_cancel
from .grid_checks import check_spacing
from .intensity import NO_CT_CHECK_HINT
from .nifti import one_line

_I16 = np.iinfo(np.int16)
# Tags needed to group, sort and place slices (reading only these keeps the header scan fast).
_HEADER_TAGS = [
    "SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "ImageType",
    "Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "NumberOfFrames",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "SamplesPerPixel", "SliceThickness", "Manufacturer",
    "ManufacturerModelName", "ConvolutionKernel", "KVP", "InstanceNumber",
]


@dataclass
class _Slice:
    path: Path
    rows: int
    columns: int
    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float
    frames: int
    ds: object = field(repr=False, default=None)


@dataclass
class _Series:
    uid: str
    number: int | None
    description: str
    modality: str
    slices: list[_Slice] = field(default_factory=list)
    localizers: int = 0

    def label(self) -> str:
        number = f"#{self.number}" if self.number is not None else "(no number)"
        desc = f" '{self.description}'" if self.description else ""
        return f"{number} {self.modality or '?'}{desc} ({len(self.slices)} slices)"


def _float(value, default):
    try:
        return float(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


def _floats(value, n: int) -> np.ndarray | None:
    """A multi-valued numeric tag as ``n`` finite floats, or None when absent or malformed."""
    try:
        values = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return values if values.shape == (n,) and np.all(np.isfinite(values)) else None


def _text(value) -> str | None:
    """A DICOM string or multi-value as plain text (None when empty)."""
    if value is None:
        return None
    if not isinstance(value, str | bytes) and hasattr(value, "__iter__"):
        return "\\".join(str(v) for v in value) or None
    return str(value) or None


def _read_header(path: Path):
    """pydicom dataset without pixels, or None when ``path`` is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        # Files without the 128-byte preamble are still DICOM when they open with a group-0008 element.
        try:
            with open(path, "rb") as handle:
                start = handle.read(4)
        except OSError:
            return None
        if start[:2] != b"\x08\x00":
            return None
        try:
            return pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_HEADER_TAGS)
        except Exception:
            return None
    except Exception:
        return None


def _candidate_files(folder: Path):
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            yield Path(root) / name


def scan_series(folder: Path) -> tuple[dict[str, _Series], int]:
    """All image series under ``folder`` (recursively) and the number of files looked at."""
    cfg = load_json("ct_intensity_check.json")
    non_image = set(cfg["non_image_modalities"])
    series: dict[str, _Series] = {}
    n_files = 0
    for path in _candidate_files(folder):
        n_files += 1
        ds = _read_header(path)
        if ds is None or "Rows" not in ds or "Columns" not in ds:
            continue
        modality = str(ds.get("Modality", "") or "")
        if modality.upper() in non_image:
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        entry = series.get(uid)
        if entry is None:
            number = _float(ds.get("SeriesNumber"), None)
            entry = series[uid] = _Series(uid=uid, number=int(number) if number is not None else None,
                                          description=str(ds.get("SeriesDescription", "") or ""),
                                          modality=modality)
        image_type = (_text(ds.get("ImageType")) or "").upper().split("\\")
        if "LOCALIZER" in image_type:
            entry.localizers += 1  # scout views share some series but are not part of the volume
            continue
        spacing = _floats(ds.get("PixelSpacing"), 2)
        entry.slices.append(_Slice(
            path=path, rows=int(ds.Rows), columns=int(ds.Columns),
            position=_floats(ds.get("ImagePositionPatient"), 3),
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            pixel_spacing=tuple(spacing) if spacing is not None else None,
            slope=_float(ds.get("RescaleSlope"), 1.0), intercept=_float(ds.get("RescaleIntercept"), 0.0),
            frames=int(_float(ds.get("NumberOfFrames"), 1)), ds=ds))
    return {uid: s for uid, s in series.items() if s.slices}, n_files


def _choose_series(series: dict[str, _Series], folder: Path, wanted, n_files: int) -> _Series:
    if not series:
        raise VolumeReadError(f"no DICOM images found in {folder} ({n_files} files looked at); give the "
                              "folder that holds the CT series' slice files.")
    if wanted is not None:
        text = str(wanted).strip()
        matches = [s for s in series.values()
                   if s.uid == text or (s.number is not None and str(s.number) == text)]
        if len(matches) == 1:
            return matches[0]
        listing = "; ".join(s.label() for s in series.values())
        if not matches:
            raise VolumeReadError(f"series {text!r} is not in {folder}; it holds {listing}: give one of "
                                  "these series numbers or its SeriesInstanceUID.")
        raise VolumeReadError(f"series number {text} matches {len(matches)} series in {folder}; pick one by "
                              "its SeriesInstanceUID instead (series=...).")
    if len(series) == 1:
        return next(iter(series.values()))
    ordered = sorted(series.values(), key=lambda s: (s.number is None, s.number or 0, -len(s.slices)))
    numbers = [s.number for s in ordered]
    unique_numbers = None not in numbers and len(set(numbers)) == len(numbers)
    listing = "; ".join(s.label() + ("" if unique_numbers else f" uid {s.uid}") for s in ordered)
    raise VolumeReadError(f"{folder} holds {len(series)} DICOM series: {listing}; choose one with "
                          "--series (read_volume(path, series=...)) giving its series number or SeriesInstanceUID, "
                          "or give a folder with a single series.")


def _series_geometry(s: _Series, what: str):
    """Sorted slices, 4x4 RAS affine and geometry notes of a series; raises on unusable geometry."""
    slices = s.slices
    if any(sl.frames > 1 for sl in slices):
        raise VolumeReadError(f"{what} is an enhanced multi-frame DICOM, which this reader does not handle; "
                              "convert it to NIfTI first (e.g. with dcm2niix) and give the .nii.gz.")
    if len(slices) < 2:
        raise VolumeReadError(f"{what} holds a single slice; a 3D CT needs at least 2 slices: give the "
                              "folder with the whole series.")
    missing = [sl.path.name for sl in slices
               if sl.position is None or sl.orientation is None or sl.pixel_spacing is None]
    if missing:
        raise VolumeReadError(f"{what}: {len(missing)} slice(s) lack "
                              "ImagePositionPatient/Orientation/PixelSpacing "
                              f"(e.g. {missing[0]}), so they cannot be placed in space; export the series "
                              "with full geometry tags.")
    first = slices[0]
    for sl in slices[1:]:
        if (sl.rows, sl.columns) != (first.rows, first.columns):
            raise VolumeReadError(f"{what} mixes slice sizes ({first.rows}x{first.columns} and {sl.rows}x"
                                  f"{sl.columns}); give a folder holding one consistent series.")
        if not np.allclose(sl.orientation, first.orientation, atol=1e-4):
            raise VolumeReadError(f"{what} mixes slice orientations (e.g. {first.path.name} and "
                                  f"{sl.path.name}); give a folder holding one consistent series.")
        if not np.allclose(sl.pixel_spacing, first.pixel_spacing, rtol=1e-4):
            raise VolumeReadError(f"{what} mixes pixel spacings; give a folder holding one "
                                  "consistent series.")
    row_dir = first.orientation[:3] / np.linalg.norm(first.orientation[:3])  # direction of increasing column
    col_dir = first.orientation[3:] / np.linalg.norm(first.orientation[3:])  # direction of increasing row
    normal = np.cross(row_dir, col_dir)
    where = np.array([float(sl.position @ normal) for sl in slices])
    order = np.argsort(where, kind="stable")
    slices = [slices[i] for i in order]
    where = where[order]
    steps = np.diff(where)
    typical = float(np.median(steps))
    duplicates = int(np.count_nonzero(steps < max(1e-3, 0.01 * abs(typical))))
    if duplicates:
        at = where[1:][steps < max(1e-3, 0.01 * abs(typical))][0]
        raise VolumeReadError(f"{what} has {duplicates} duplicate slice position(s) (e.g. {at:.2f} mm along "
                              "the slice normal): it holds several volumes (time points, echoes or repeated "
                              "scans); put each volume's files in its own folder.")
    gaps = np.nonzero(steps > 1.5 * typical)[0]
    if gaps.size:
        g = int(gaps[0])
        raise VolumeReadError(f"{what} has a gap: {steps[g]:.3g} mm between slices at {where[g]:.2f} and "
                              f"{where[g + 1]:.2f} mm along the normal where the spacing is {typical:.3g} mm "
                              f"({gaps.size} gap(s), missing slices?); give the complete series.")
    mean_step = (where[-1] - where[0]) / (len(where) - 1)
    deviation = float(np.max(np.abs(where - (where[0] + mean_step * np.arange(len(where))))))
    if deviation > max(0.1 * mean_step, 0.01):
        raise VolumeReadError(f"{what} has uneven slice spacing ({steps.min():.3g} to {steps.max():.3g} mm); "
                              "it cannot be stored on a regular grid: give a series with constant spacing or "
                              "resample it first (e.g. dcm2niix).")
    row_spacing, col_spacing = first.pixel_spacing  # DICOM: (between rows, between columns)
    check_spacing([col_spacing, row_spacing, mean_step], what)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    # The real step between first and last slice: exact also for a gantry-tilted (sheared) series.
    lps[:3, 2] = (slices[-1].position - slices[0].position) / (len(slices) - 1)
    lps[:3, 3] = slices[0].position
    notes = {}
    step_dir = lps[:3, 2] / np.linalg.norm(lps[:3, 2])
    tilt = float(np.degrees(np.arccos(np.clip(abs(step_dir @ normal), 0.0, 1.0))))
    if tilt > 0.01:
        notes["gantry_tilt_deg"] = round(tilt, 3)
    return slices, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, float(mean_step), notes


def _pixels_pydicom(path: Path) -> np.ndarray:
    import pydicom

    return pydicom.dcmread(path, force=True).pixel_array


def _pixels_simpleitk(path: Path) -> np.ndarray:
    """Slice pixels through SimpleITK/GDCM: already rescaled to modality values (HU) by GDCM."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    return array.reshape(array.shape[-2:])


def _rescale_into(target: np.ndarray, pixels: np.ndarray, slope: float, intercept: float) -> bool:
    """Write ``pixels * slope + intercept`` into ``target``; False when it does not fit target's dtype."""
    if slope == 1 and intercept == 0 and pixels.dtype.kind in "iu":
        values = pixels
    elif pixels.dtype.kind in "iu" and float(slope).is_integer() and float(intercept).is_integer():
        values = pixels.astype(np.int32) * int(slope) + int(intercept)
    else:
        values = np.asarray(pixels, dtype=np.float64) * slope + intercept
        if target.dtype.kind != "f":
            np.rint(values, out=values)
    if target.dtype == np.int16 and values.size and (values.min() < _I16.min or values.max() > _I16.max):
        return False
    target[...] = values
    return True


def read_dicom_series(path, *, series=None, check_ct: bool = True, decoder: str = "auto", progress=None,
                      cancel=None):
    """Read the one CT series in folder ``path`` (or the series of the DICOM file ``path``).

    ``series`` picks a series by SeriesNumber or SeriesInstanceUID when the folder holds several.
    ``decoder``: ``"auto"`` (pydicom, SimpleITK/GDCM for what pydicom cannot decode), ``"pydicom"`` or
    ``"simpleitk"``. ``progress(fraction, message)`` and ``cancel`` follow :mod:`MedRegionCTLib.progress`.
    Returns ``(array [i, j, k] int16 HU, affine RAS, meta)``.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    found, n_files = scan_series(folder)
    if not found and path.is_dir():
        images = sorted(p.name for p in folder.iterdir()
                        if p.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")))
        if images:
            raise VolumeReadError(f"{folder} holds no DICOM images but image files "
                                  f"({', '.join(images[:3])}); give one of those files instead of the "
                                  "folder.")
    with_geometry = {uid: s for uid, s in found.items() if any(sl.position is not None for sl in s.slices)}
    if with_geometry and series is None:
        found = with_geometry  # screenshots / secondary captures without positions cannot be the CT
    if path.is_file() and series is None:
        header = _read_header(path)
        if header is None:
            raise VolumeReadError(f"{path} is not a DICOM file; give a DICOM series folder or a "
                                  "NIfTI/NRRD file.")
        series = str(header.get("SeriesInstanceUID", "") or "")
        if series not in found:
            raise VolumeReadError(f"{path} is not a CT image slice (no pixel data/geometry); give a DICOM "
                                  "series folder or one of its image files.")
    chosen = _choose_series(found, folder, series, n_files)
    what = f"DICOM series {chosen.label()} in {folder}"
    if check_ct:
        cfg = load_json("ct_intensity_check.json")
        if chosen.modality.upper() not in cfg["ct_modalities"]:
            raise NotCTError(f"{what} is modality {chosen.modality}, not CT; give a CT series or "
                             f"{NO_CT_CHECK_HINT}.")
    slices, affine, step, notes = _series_geometry(chosen, what)
    first = slices[0].ds
    if int(_float(first.get("SamplesPerPixel"), 1)) != 1:
        raise VolumeReadError(f"{what} holds colour images (SamplesPerPixel {first.get('SamplesPerPixel')}), "
                              "not a grey-level CT; give the original CT series.")
    if decoder not in ("auto", "pydicom", "simpleitk"):
        raise VolumeReadError(f"unknown DICOM decoder {decoder!r}; use 'auto', 'pydicom' or 'simpleitk'.")
    n, rows, cols = len(slices), slices[0].rows, slices[0].columns
    # Slice-major buffer: each decoded slice is one contiguous write; its transpose is the [i, j, k] array.
    buffer = np.empty((n, rows, cols), dtype=np.int16)
    use = "pydicom" if decoder == "auto" else decoder
    decoders_used = set()
    for k, sl in enumerate(slices):
        check_cancel(cancel, "reading the DICOM series")
        if progress is not None and k % 8 == 0:
            progress(k / n, f"reading DICOM slice {k + 1}/{n}")
        slope, intercept = sl.slope, sl.intercept
        try:
            if use == "pydicom":
                pixels = _pixels_pydicom(sl.path)
            else:
                pixels = _pixels_simpleitk(sl.path)
                slope, intercept = 1.0, 0.0  # GDCM already applied RescaleSlope/Intercept
        except Exception as error:
            if not (use == "pydicom" and decoder == "auto" and _is_compressed(sl)):
                raise _decode_error(sl, what, error) from error
            use = "simpleitk"  # no pydicom decoder for this compression here: let GDCM do it
            try:
                pixels = _pixels_simpleitk(sl.path)
                slope, intercept = 1.0, 0.0
            except Exception as error2:
                raise _decode_error(sl, what, error) from error2
        decoders_used.add(use)
        if pixels.shape != (rows, cols):
            raise VolumeReadError(f"{what}: {sl.path.name} decodes to {pixels.shape[0]}x{pixels.shape[1]} "
                                  f"pixels but its header says {rows}x{cols}; the file is corrupt: "
                                  "re-export the series.")
        if not _rescale_into(buffer[k], pixels, slope, intercept):
            if check_ct:
                raise NotCTError(f"{what}: {sl.path.name} has rescaled values outside the Hounsfield range "
                                 f"(rescale slope {sl.slope:g}, intercept {sl.intercept:g}); it is not CT in "
                                 f"HU: {NO_CT_CHECK_HINT}.")
            buffer = buffer.astype(np.float32)
            _rescale_into(buffer[k], pixels, slope, intercept)
    array = buffer.transpose(2, 1, 0)
    transfer = getattr(getattr(first, "file_meta", None), "TransferSyntaxUID", None)
    meta = {
        "modality": chosen.modality or "unknown",
        "n_slices": n,
        "transfer_syntax": transfer.name if transfer is not None else "unknown",
        "rescale": {"slope": sorted({sl.slope for sl in slices}),
                    "intercept": sorted({sl.intercept for sl in slices})},
        "rescale_type": str(first.get("RescaleType", "") or "") or None,
        "decoder": "+".join(sorted(decoders_used)),
        "series_number": chosen.number,
        "slice_spacing_mm": round(step, 6),
        "slice_thickness_mm": _float(first.get("SliceThickness"), None),
        "manufacturer": _text(first.get("Manufacturer")),
        "manufacturer_model": _text(first.get("ManufacturerModelName")),
        "convolution_kernel": _text(first.get("ConvolutionKernel")),
        "kvp": _float(first.get("KVP"), None),
        **notes,
    }
    if chosen.localizers:
        meta["localizers_skipped"] = chosen.localizers
    return array, affine, meta


def _transfer_syntax(sl: _Slice):
    return getattr(getattr(sl.ds, "file_meta", None), "TransferSyntaxUID", None)


def _is_compressed(sl: _Slice) -> bool:
    transfer = _transfer_syntax(sl)
    try:
        return bool(transfer is not None and transfer.is_compressed)
    except ValueError:  # a private or unknown transfer syntax: let GDCM try
        return True


def _decode_error(sl: _Slice, what: str, error: BaseException) -> VolumeReadError:
    transfer = _transfer_syntax(sl)
    name = transfer.name if transfer is not None else "unknown transfer syntax"
    if not _is_compressed(sl):
        return VolumeReadError(f"{what}: the pixel data of {sl.path.name} is truncated or corrupt "
                               f"({one_line(error)[:160]}); copy or export the series again.")
    return VolumeReadError(f"{what}: the pixels of {sl.path.name} ({name}) could not be decoded "
                           f"({one_line(error)[:160]}); install pylibjpeg with pylibjpeg-openjpeg (or gdcm), "
                           "or convert the series to uncompressed DICOM or NIfTI.")
