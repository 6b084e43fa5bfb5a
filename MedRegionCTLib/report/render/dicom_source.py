"""The DICOM headers of the CT series a report was made from: what DICOM SR and SEG reference and copy
(patient, study, frame of reference, SOP instances). Series selection follows ``volume.read_volume``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError, VolumeReadError


def read_dicom_headers(path, series=None) -> list:
    """pydicom datasets (headers only, no pixel data) of the CT series in folder ``path`` (or of the series of
    the DICOM file ``path``), sorted along the slice normal like the volume's slices.

    ``series`` picks a series by SeriesNumber or SeriesInstanceUID, as in ``read_volume``. Raises
    :class:`InputError` when ``path`` is not a DICOM series (DICOM SR/SEG need DICOM input).
    """
    import pydicom

    from ...volume.dicom_series import _choose_series, _read_header, scan_series
    from ...volume.readers import path_kind

    path = Path(path).expanduser()
    kind = path_kind(path)
    if not kind.startswith("dicom"):
        raise InputError(f"{path.name} is not a DICOM series; DICOM SR and SEG can only be written for a CT "
                         "read from DICOM (give the series folder), use report.json/html instead.")
    folder = path if path.is_dir() else path.parent
    found, n_files = scan_series(folder)
    with_geometry = {uid: s for uid, s in found.items() if any(sl.position is not None for sl in s.slices)}
    if with_geometry and series is None:
        found = with_geometry
    if path.is_file() and series is None:
        header = _read_header(path)
        if header is None:
            raise VolumeReadError(f"{path} is not a DICOM file; give the CT's DICOM series folder.")
        series = str(header.get("SeriesInstanceUID", "") or "")
    chosen = _choose_series(found, folder, series, n_files)
    datasets = [pydicom.dcmread(sl.path, stop_before_pixels=True, force=True) for sl in chosen.slices]
    return sort_along_normal(datasets)


def sort_along_normal(datasets: list) -> list:
    """Datasets sorted by ImagePositionPatient along the slice normal (inferior to superior for axial CT)."""
    def where(ds):
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        return float(np.dot(np.asarray([float(v) for v in ds.ImagePositionPatient]), np.cross(iop[:3], iop[3:])))

    try:
        return sorted(datasets, key=where)
    except (AttributeError, TypeError, ValueError) as error:
        raise InputError(f"a DICOM slice lacks ImagePositionPatient/ImageOrientationPatient ({error}); "
                         "export the series with full geometry tags.") from error


def check_source_datasets(source_datasets, what: str) -> list:
    """The source datasets as a list, or :class:`InputError` when there are none (input was not DICOM)."""
    if source_datasets is None or isinstance(source_datasets, str | Path):
        raise InputError(f"{what} needs the DICOM headers of the CT series (read_dicom_headers(folder)); the "
                         "input was not DICOM, so write report.json/report.html instead.")
    datasets = list(source_datasets)
    if not datasets:
        raise InputError(f"{what} needs the DICOM headers of the CT series, got none; the input was not DICOM, "
                         "so write report.json/report.html instead.")
    for ds in datasets:
        if not hasattr(ds, "SOPInstanceUID") or not hasattr(ds, "StudyInstanceUID"):
            raise InputError(f"{what}: the source datasets are not DICOM image headers (no SOPInstanceUID/"
                             "StudyInstanceUID); pass read_dicom_headers(series_folder).")
    return datasets
