"""Checks of a CT's voxel grid before analysis: plausible spacing, orthogonal axes, enough slices.

Limits live in ``data/input_checks.json``. :func:`check_spacing` raises :class:`GeometryError` (a spacing of
zero or less, or coarser than a CT grid); :func:`shear` measures how far the axes are from orthogonal and
:func:`orthogonal_grid` gives the grid along the patient axes that holds all of a sheared image (see
:func:`~.resample.orthogonalize`); :func:`slab` tells how much of the body axis the scan covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import load_json
from ..errors import GeometryError


def limits() -> dict:
    return load_json("input_checks.json")


def check_spacing(spacing, what: str) -> None:
    """Raise :class:`GeometryError` unless every voxel size is above 0 and at most the CT limit (20 mm)."""
    spacing = [float(s) for s in spacing]
    top = float(limits()["spacing_mm"]["max"])
    text = " x ".join(f"{s:g}" for s in spacing)
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise GeometryError(f"{what} has a voxel spacing of {text} mm: a spacing must be above 0; fix the "
                            "spacing in the file header (NIfTI pixdim / NRRD space directions / DICOM "
                            "PixelSpacing) or re-export the CT.")
    if max(spacing) > top:
        raise GeometryError(f"{what} has a voxel spacing of {text} mm, more than the {top:g} mm of any CT grid "
                            "(a spacing in cm or m written as mm?); fix the spacing in the file header or "
                            "re-export the CT.")


def _frame(affine: np.ndarray):
    """Gram-Schmidt frame of the affine's columns (i kept, then j, then k): unit axes, the voxel size along
    each, and the tangential (shear) part of columns j and k in mm."""
    c = np.asarray(affine, dtype=np.float64)[:3, :3]
    u_i = c[:, 0] / np.linalg.norm(c[:, 0])
    j_t = (c[:, 1] @ u_i) * u_i
    u_j = (c[:, 1] - j_t) / np.linalg.norm(c[:, 1] - j_t)
    k_t = (c[:, 2] @ u_i) * u_i + (c[:, 2] @ u_j) * u_j
    u_k = (c[:, 2] - k_t) / np.linalg.norm(c[:, 2] - k_t)
    frame = np.stack([u_i, u_j, u_k], axis=1)
    sizes = np.array([np.linalg.norm(c[:, 0]), c[:, 1] @ u_j, c[:, 2] @ u_k])
    return frame, sizes, np.linalg.norm(j_t), np.linalg.norm(k_t)


@dataclass
class Shear:
    degrees: float  # largest angle between an axis and the normal of the plane of the axes before it
    shift_mm: float  # largest displacement the shear causes across the image
    needs_resampling: bool


def shear(affine, shape) -> Shear:
    """How far the grid's axes are from orthogonal (gantry tilt shows as a shear of the slice axis)."""
    affine = np.asarray(affine, dtype=np.float64)
    _, sizes, j_t, k_t = _frame(affine)
    degrees = max(np.degrees(np.arctan2(j_t, sizes[1])), np.degrees(np.arctan2(k_t, sizes[2])))
    shift = max(j_t * (shape[1] - 1), k_t * (shape[2] - 1))
    in_plane = float(min(np.linalg.norm(affine[:3, 0]), np.linalg.norm(affine[:3, 1])))
    limit = float(limits()["shear"]["max_shift_fraction_of_voxel"]) * in_plane
    return Shear(float(degrees), float(shift), bool(shift > limit))


def orthogonal_grid(affine, shape) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a grid aligned with the patient axes that holds every voxel of a sheared grid.

    Each index axis keeps its nearest patient axis and direction (so the voxel order stays what it was) and
    its voxel size along that axis; the grid grows to cover the whole sheared image.
    """
    from nibabel.orientations import io_orientation

    affine = np.asarray(affine, dtype=np.float64)
    ornt = io_orientation(affine)
    frame = np.zeros((3, 3))
    sizes = np.zeros(3)
    for axis, (world, flip) in enumerate(ornt):
        world = int(world)
        frame[world, axis] = float(flip)
        sizes[axis] = abs(affine[world, axis])
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    world = affine[:3, :3] @ corners  # relative to the origin
    index = (frame.T @ world) / sizes[:, None]
    low, high = index.min(axis=1), index.max(axis=1)
    low = np.floor(low + 1e-6)
    new_shape = tuple(int(n) for n in np.ceil(high - low - 1e-6).astype(int) + 1)
    out = np.eye(4)
    out[:3, :3] = frame * sizes
    out[:3, 3] = affine[:3, 3] + frame @ (sizes * low)
    return new_shape, out


@dataclass
class Slab:
    slices: int  # along the axis closest to the body axis
    extent_mm: float  # slices x spacing along that axis
    z_range_mm: tuple[float, float]  # lowest and highest slice centre, RAS superior coordinate
    thin: bool


def slab(image) -> Slab:
    """Coverage of a Volume or LabelMap along the body (superior-inferior) axis, and whether it is a thin slab."""
    axis = image.axis_of("superior-inferior")
    n = int(image.shape[axis])
    step = float(image.spacing[axis])
    affine = np.asarray(image.affine, dtype=np.float64)
    z = [affine[2, 3], affine[2, 3] + affine[2, axis] * (n - 1)]
    rule = limits()["thin_slab"]
    thin = n < int(rule["min_slices"]) or n * step < float(rule["min_extent_mm"])
    return Slab(n, round(n * step, 3), (round(float(min(z)), 2), round(float(max(z)), 2)), bool(thin))
