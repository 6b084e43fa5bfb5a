"""Shared pieces of the DICOM writers: highdicom import, series geometry, CT-grid -> frame sampling, colours."""

from __future__ import annotations

import numpy as np

from ...errors import InputError, MissingDependencyError

MANUFACTURER = "MedRegionCT"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def import_highdicom():
    try:
        import highdicom
    except ImportError as error:
        raise MissingDependencyError("writing DICOM SR/SEG needs highdicom; install it with "
                                     "`pip install MedRegionCTLib[dicom]`.") from error
    return highdicom


def software_version() -> str:
    from ... import __version__

    return str(__version__)


def _frame_geometry(ds):
    try:
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as error:
        raise InputError(f"a source DICOM slice lacks geometry tags ({error}); pass the headers of the CT "
                         "series itself (read_dicom_headers).") from error
    return ipp, iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:]), row_spacing, col_spacing, \
        rows, cols


def series_affine(datasets: list) -> np.ndarray:
    """RAS affine of the series' own voxel grid, as ``volume.read_volume`` builds it: i = column, j = row,
    k = slice (sorted along the normal); ``datasets`` must be sorted (``read_dicom_headers`` does)."""
    ipp0, row_dir, col_dir, row_spacing, col_spacing, _, _ = _frame_geometry(datasets[0])
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    if len(datasets) > 1:
        last = np.asarray([float(v) for v in datasets[-1].ImagePositionPatient])
        lps[:3, 2] = (last - ipp0) / (len(datasets) - 1)
    else:
        lps[:3, 2] = np.cross(row_dir, col_dir) * float(getattr(datasets[0], "SliceThickness", 1.0) or 1.0)
    lps[:3, 3] = ipp0
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def frame_indices(ds, affine: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel indices (i, j, k), each (rows, cols), of the grid ``affine``/``shape`` at every pixel of the DICOM
    slice ``ds``. Raises :class:`InputError` when the slice does not lie on the grid's voxel centres."""
    ipp, row_dir, col_dir, row_spacing, col_spacing, rows, cols = _frame_geometry(ds)
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    origin = inv[:3, :3] @ (_LPS_TO_RAS @ ipp) + inv[:3, 3]
    d_col = inv[:3, :3] @ (_LPS_TO_RAS @ row_dir) * col_spacing  # index step per column
    d_row = inv[:3, :3] @ (_LPS_TO_RAS @ col_dir) * row_spacing  # index step per row
    corners = np.array([origin, origin + (cols - 1) * d_col, origin + (rows - 1) * d_row,
                        origin + (cols - 1) * d_col + (rows - 1) * d_row])
    if np.abs(corners - np.rint(corners)).max() > 0.1 or np.abs(np.rint(d_col) - d_col).max() > 1e-3 or \
            np.abs(np.rint(d_row) - d_row).max() > 1e-3:
        raise InputError("the masks are not on the DICOM series' grid (slice positions fall between voxels); "
                         "give masks built on the CT read from this series.")
    if (np.rint(corners) < 0).any() or (np.rint(corners) > np.asarray(shape) - 1).any():
        raise InputError(f"a DICOM slice of the series lies outside the masks' grid {tuple(shape)}; give masks "
                         "built on the CT read from this series.")
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    idx = [np.rint(origin[a] + r * d_row[a] + c * d_col[a]).astype(np.intp) for a in range(3)]
    return idx[0], idx[1], idx[2]


def rgb_to_cielab(rgb) -> tuple[float, float, float]:
    """sRGB 0-255 -> CIE L*a*b* (D65), for DICOM's RecommendedDisplayCIELabValue."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]]) @ c
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2]))
