"""The CT volume and label-map types: an array plus the 4x4 affine that maps voxel indices to RAS millimetres.

The array is indexed ``array[i, j, k]`` where ``(i, j, k)`` are the affine's columns 0, 1, 2. No axis order
is ever assumed: patient directions come from the affine (see :meth:`Volume.axis_directions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nibabel.orientations import aff2axcodes

from ..errors import InputError

# Letter of the RAS+ axis code -> plain-language direction in which the index increases.
_DIRECTION_WORDS = {
    "R": "left to right",
    "L": "right to left",
    "A": "posterior to anterior",
    "P": "anterior to posterior",
    "S": "inferior to superior",
    "I": "superior to inferior",
}
_AXIS_NAMES = {"R": "left-right", "L": "left-right", "A": "anterior-posterior", "P": "anterior-posterior",
               "S": "superior-inferior", "I": "superior-inferior"}


def _check_geometry(array: np.ndarray, affine: np.ndarray, what: str) -> np.ndarray:
    if array.ndim != 3:
        raise InputError(f"{what} has {array.ndim} dimensions, expected 3; give a 3D volume "
                         "(a 2D image or a 4D series cannot be used).")
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise InputError(f"{what} has an invalid affine {aff.shape}; it must be a finite 4x4 matrix.")
    if abs(np.linalg.det(aff[:3, :3])) < 1e-9:
        raise InputError(f"{what} has a singular affine (zero spacing or collinear axes); "
                         "fix the spacing/direction in the file header.")
    return aff


class _Grid:
    """Geometry shared by :class:`Volume` and :class:`LabelMap` (needs ``array`` and ``affine``)."""

    array: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit RAS directions of the i, j, k axes."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def orientation(self) -> str:
        """Axis code such as ``"LPS"``: the RAS+ letter each index axis points towards (nibabel)."""
        return "".join(aff2axcodes(self.affine))

    @property
    def is_oblique(self) -> bool:
        """True when an axis is tilted more than ~0.5 degree from the nearest patient axis."""
        return bool(np.any(np.abs(self.direction).max(axis=0) < 0.99996))

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def axis_directions(self) -> list[str]:
        """For each index axis, the patient direction in which it increases, e.g. ``"right to left"``."""
        return [_DIRECTION_WORDS[c] for c in self.orientation]

    def axis_of(self, patient_axis: str) -> int:
        """Index axis (0, 1 or 2) closest to ``"left-right"``, ``"anterior-posterior"`` or
        ``"superior-inferior"``."""
        for axis, code in enumerate(self.orientation):
            if _AXIS_NAMES[code] == patient_axis:
                return axis
        raise InputError(f"unknown patient axis {patient_axis!r}; use left-right, anterior-posterior "
                         "or superior-inferior.")

    def index_to_world(self, ijk) -> np.ndarray:
        """Voxel indices (..., 3) -> RAS mm (..., 3)."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz) -> np.ndarray:
        """RAS mm (..., 3) -> continuous voxel indices (..., 3)."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def same_grid(self, other) -> bool:
        return self.shape == tuple(other.shape) and np.allclose(self.affine, other.affine, atol=1e-4)


@dataclass(eq=False)
class Volume(_Grid):
    """A CT image: ``array`` in Hounsfield units (int16 as read; float for derived images) and its affine."""

    array: np.ndarray
    affine: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.affine = _check_geometry(self.array, self.affine, "The volume")

    def with_array(self, array: np.ndarray, **meta) -> Volume:
        """A volume on the same grid holding ``array`` (same shape required)."""
        if tuple(array.shape) != self.shape:
            raise InputError(f"array shape {array.shape} does not match the volume grid {self.shape}.")
        return Volume(array, self.affine.copy(), {**self.meta, **meta})

    def describe(self) -> dict:
        """Geometry and intensity summary (what ``medregionct info`` prints)."""
        arr = self.array
        return {
            "shape": list(self.shape),
            "dtype": str(arr.dtype),
            "spacing_mm": [round(s, 4) for s in self.spacing],
            "orientation": self.orientation,
            "origin_mm": [round(v, 2) for v in self.origin],
            "oblique": self.is_oblique,
            "axis_directions": self.axis_directions(),
            "value_range": [float(arr.min()), float(arr.max())] if arr.size else [0.0, 0.0],
            "extent_mm": [round(n * s, 1) for n, s in zip(self.shape, self.spacing, strict=True)],
        }


@dataclass(eq=False)
class LabelMap(_Grid):
    """An integer label image on a CT grid, with its index -> class-name table.

    Class names follow TotalSegmentator (``lung_upper_lobe_left``, ``heart``...); see
    :mod:`MedRegionCTLib.data` for the indices.
    """

    array: np.ndarray
    affine: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.affine = _check_geometry(self.array, self.affine, "The label map")
        if not np.issubdtype(self.array.dtype, np.integer):
            raise InputError(f"label map has dtype {self.array.dtype}; labels must be integers.")
        self.names = {int(k): str(v) for k, v in self.names.items()}

    def index_of(self, name: str) -> int | None:
        for index, label_name in self.names.items():
            if label_name == name:
                return index
        return None

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of class ``name`` (all False when the class is absent)."""
        index = self.index_of(name)
        if index is None:
            return np.zeros(self.shape, dtype=bool)
        return self.array == index

    def present(self) -> dict[int, str]:
        """The classes that have at least one voxel."""
        found = np.unique(self.array)
        return {int(i): self.names.get(int(i), f"label_{int(i)}") for i in found if i != 0}

    def volumes_ml(self) -> dict[str, float]:
        """Volume of every present class, in millilitres."""
        counts = np.bincount(self.array.ravel().astype(np.int64, copy=False))
        vox = self.voxel_volume_ml
        return {self.names.get(i, f"label_{i}"): float(c) * vox for i, c in enumerate(counts) if i and c}
