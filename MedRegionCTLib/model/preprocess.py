"""Exact preprocessing of a CT and its region masks to the model's input grids (numpy/scipy/scikit-image only).

The client (no torch) imports this module, so a remote server receives exactly what a local model would
compute. The steps and their parameters are documented in :class:`.config.PreprocessConfig`.

Arrays of a :class:`PreparedCase` (float32; R = number of non-empty regions, in ``keys`` order):

- ``image``        (X, Y, Z)        body-cropped volume on ``grid``, ``(clip(HU) - norm_offset) / norm_scale``
- ``masks``        (R, X, Y, Z)     region occupancy in [0, 1] on the same body-cropped grid
- ``crops``        (R, X, Y, Z)     each region's bounding box at full resolution, resized to ``grid``
- ``slices``       (Z, H, W)        axial slices in [0, 1] for the 2D encoder, Z = ``num_slices``
- ``slice_masks``  (R, Z, H, W)     region occupancy on the slice grid

Axes: (X, Y, Z) follow RAS (X towards the patient's right, Y anterior, Z superior). 2D slices are shown the
radiological way: row 0 is anterior, column 0 is the patient's right, so a pretrained 2D encoder sees the
usual picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation
from scipy import ndimage

from ..errors import InputError
from .config import PreprocessConfig

ARRAY_NAMES = ("image", "masks", "crops", "slices", "slice_masks")


@dataclass
class PreparedCase:
    """One CT on the model's grids, with the text that goes with each region (plain numpy, no torch)."""

    keys: list[str]
    arrays: dict[str, np.ndarray]
    names: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    paragraphs: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)  # regions given with an empty mask (no slot, no report)

    def name_of(self, key: str) -> str:
        return self.names.get(key) or key.replace("_", " ")

    def to_payload(self) -> dict:
        """Plain dict (lists, strings, numpy arrays) for transport; inverse of :meth:`from_payload`."""
        return {"keys": list(self.keys), "names": dict(self.names), "attributes": dict(self.attributes),
                "paragraphs": dict(self.paragraphs), "empty": list(self.empty),
                "arrays": {k: np.ascontiguousarray(v) for k, v in self.arrays.items()}}

    @classmethod
    def from_payload(cls, payload: dict) -> PreparedCase:
        try:
            arrays = {k: np.asarray(v, dtype=np.float32) for k, v in payload["arrays"].items()}
            keys = [str(k) for k in payload["keys"]]
        except (KeyError, TypeError) as exc:
            raise InputError(f"prepared case payload lacks {exc}; build it with PreparedCase.to_payload().") from exc
        unknown = set(arrays) - set(ARRAY_NAMES)
        if unknown:
            raise InputError(f"prepared case has unknown arrays {sorted(unknown)}; expected some of {ARRAY_NAMES}.")
        return cls(keys=keys, arrays=arrays, names=dict(payload.get("names", {})),
                   attributes=dict(payload.get("attributes", {})), paragraphs=dict(payload.get("paragraphs", {})),
                   empty=list(payload.get("empty", [])))


# --- elementary steps -------------------------------------------------------------------------------------
def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder/flip axes to the closest RAS orientation (no interpolation); returns the array and new affine."""
    affine = np.asarray(affine, dtype=np.float64)
    ornt = io_orientation(affine)  # array axes -> closest RAS axes (what nibabel's as_closest_canonical uses)
    out = apply_orientation(array, ornt)
    new_affine = affine @ inv_ornt_aff(ornt, array.shape)
    return np.ascontiguousarray(out), new_affine


def spacing_of(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def _grow(box_lo, box_hi, margin_mm, spacing, shape):
    pad = np.ceil(np.asarray(margin_mm) / spacing).astype(int)
    lo = np.maximum(np.asarray(box_lo) - pad, 0)
    hi = np.minimum(np.asarray(box_hi) + pad, np.asarray(shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def bounding_box(mask: np.ndarray, margin_mm: float, spacing) -> tuple[slice, slice, slice] | None:
    """Bounding box of the True voxels grown by ``margin_mm`` (None when the mask is empty)."""
    if not mask.any():
        return None
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return _grow(lo, hi, margin_mm, np.asarray(spacing), mask.shape)


def body_box(hu: np.ndarray, spacing, config: PreprocessConfig) -> tuple[slice, slice, slice]:
    """Box of the largest connected component above ``body_threshold_hu`` (the patient, not table or air).

    The component is found on every second voxel along each axis (a full-resolution labelling costs seconds
    and the box is grown by a margin anyway); the box is then mapped back to full resolution.
    """
    step = 2 if min(hu.shape) >= 8 else 1
    above = hu[::step, ::step, ::step] > config.body_threshold_hu
    labels, count = ndimage.label(above)
    if count == 0:
        raise InputError(f"no voxel is above {config.body_threshold_hu} HU, so no body was found; check that "
                         "the image is a CT in Hounsfield units.")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    coarse = ndimage.find_objects(labels)[int(np.argmax(sizes)) - 1]
    lo = [s.start * step for s in coarse]
    hi = [min(s.stop * step, n) for s, n in zip(coarse, hu.shape)]
    return _grow(lo, hi, config.body_margin_mm, np.asarray(spacing), hu.shape)


def normalise_3d(hu: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    clipped = np.clip(hu.astype(np.float32), config.hu_min, config.hu_max)
    return (clipped - np.float32(config.norm_offset)) / np.float32(config.norm_scale)


def window_01(hu: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    clipped = np.clip(hu.astype(np.float32), config.hu_min, config.hu_max)
    return (clipped - np.float32(config.hu_min)) / np.float32(config.hu_max - config.hu_min)


@lru_cache(maxsize=64)
def _axis_weights(n_in: int, n_out: int, mode: str = "area") -> np.ndarray:
    """(n_out, n_in) resampling matrix with voxel edges aligned: area (overlap) weights when shrinking,
    linear interpolation between voxel centres when enlarging. ``mode="adaptive"``: adaptive average pooling
    (output j is the plain mean of inputs floor(j n_in / n_out) .. ceil((j + 1) n_in / n_out) - 1), what torch's
    ``interpolate(mode="area")`` and so MONAI's ``Resize`` compute, both shrinking and enlarging."""
    ratio = n_in / n_out
    w = np.zeros((n_out, n_in), dtype=np.float32)
    if mode == "adaptive":
        for j in range(n_out):
            lo, hi = (j * n_in) // n_out, -((-(j + 1) * n_in) // n_out)
            w[j, lo:hi] = 1.0 / (hi - lo)
    elif n_out <= n_in:
        for j in range(n_out):
            lo, hi = j * ratio, (j + 1) * ratio
            i = np.arange(int(np.floor(lo)), min(int(np.ceil(hi)), n_in))
            w[j, i] = (np.minimum(i + 1, hi) - np.maximum(i, lo)) / ratio
    else:
        x = np.clip((np.arange(n_out) + 0.5) * ratio - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = (x - i0).astype(np.float32)
        rows = np.arange(n_out)
        np.add.at(w, (rows, i0), 1 - frac)
        np.add.at(w, (rows, i1), frac)
    w.setflags(write=False)
    return w


def resize(array: np.ndarray, shape, box: tuple[slice, slice, slice] | None = None, mode: str = "area") -> np.ndarray:
    """Separable resampling of a 3D array to ``shape``: the local mean over each output voxel's footprint when
    shrinking (exact area averaging, as ``skimage.transform.resize_local_mean``), linear when enlarging.

    Hand-written rather than scikit-image so that ``box`` (where the array is known to be non-zero, e.g. a
    region's bounding box) restricts the work to that box: resampling ten region masks of a full-resolution CT
    then costs about as much as resampling one.
    """
    shape = tuple(int(s) for s in shape)
    if box is None:
        box = tuple(slice(0, n) for n in array.shape)
    out = np.asarray(array[box], dtype=np.float32)
    offsets = []
    for axis in np.argsort([o / i for o, i in zip(shape, array.shape)]):  # shrink the most first: less work
        w = _axis_weights(array.shape[axis], shape[axis], mode)[:, box[axis]]
        rows = np.flatnonzero(np.abs(w).sum(axis=1) > 0)
        r0, r1 = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
        out = np.moveaxis(np.tensordot(w[r0:r1], out, axes=([1], [axis])), 0, axis)
        offsets.append((axis, r0, r1))
    full = np.zeros(shape, dtype=np.float32)
    place = [slice(None)] * 3
    for axis, r0, r1 in offsets:
        place[axis] = slice(r0, r1)
    full[tuple(place)] = out
    return full


def resize_mask(mask: np.ndarray, shape, mode: str = "area") -> np.ndarray:
    """Mask occupancy in [0, 1] on ``shape`` (area fraction of each output voxel covered by the mask)."""
    box = bounding_box(mask, 0.0, np.ones(3))
    if box is None:
        return np.zeros(tuple(int(s) for s in shape), dtype=np.float32)
    return np.clip(resize(mask, shape, box=box, mode=mode), 0.0, 1.0)


def foreground_box(values: np.ndarray, threshold: float, margin_mm: float, spacing) -> tuple[slice, slice, slice]:
    """Box of every voxel above ``threshold`` (MONAI's CropForeground with ``x > threshold``), grown by a margin;
    the whole array when no voxel is above it."""
    box = bounding_box(values > threshold, margin_mm, spacing)
    return box if box is not None else tuple(slice(0, n) for n in values.shape)


def _image_on_grid(hu: np.ndarray, config: PreprocessConfig, shape) -> np.ndarray:
    """HU -> normalised image on ``shape``: clip then resample (default), or resample raw HU then clip (Reg2RG)."""
    if config.clip_before_resize:
        return resize(normalise_3d(hu, config), shape, mode=config.resample)
    return normalise_3d(resize(np.asarray(hu, dtype=np.float32), shape, mode=config.resample), config)


def to_display_slices(volume_xyz: np.ndarray) -> np.ndarray:
    """(X, Y, Z) RAS -> (Z, H, W) radiological axial slices: row 0 anterior, column 0 the patient's right."""
    return np.ascontiguousarray(np.transpose(volume_xyz[::-1, ::-1, :], (2, 1, 0)))


# --- the whole case ---------------------------------------------------------------------------------------
def _volume_and_affine(case: dict):
    volume = case.get("volume")
    if volume is None:
        raise InputError("case has no 'volume'; give a Volume or an HU array with its 'affine'.")
    if hasattr(volume, "array") and hasattr(volume, "affine"):
        return np.asarray(volume.array), np.asarray(volume.affine, dtype=np.float64)
    affine = case.get("affine")
    if affine is None:
        raise InputError("case gives 'volume' as an array without 'affine'; add the 4x4 voxel-to-RAS affine.")
    array = np.asarray(volume)
    if array.ndim != 3:
        raise InputError(f"case volume has {array.ndim} dimensions; give a 3D CT.")
    return array, np.asarray(affine, dtype=np.float64)


def prepare_case(case: dict, config: PreprocessConfig, needed=ARRAY_NAMES) -> PreparedCase:
    """Preprocess one case (a mapping; see below) into the arrays named in ``needed``.

    ``case``: ``volume`` (a :class:`~MedRegionCTLib.volume.Volume` or an HU array plus ``affine``), ``regions``
    ({key: boolean mask on the volume grid}), optional ``names``, ``attributes`` and ``paragraphs`` ({key: str}).
    """
    hu, affine = _volume_and_affine(case)
    regions = case.get("regions")
    if not isinstance(regions, dict) or not regions:
        raise InputError("case has no 'regions'; give a dict {region_key: boolean mask on the CT grid}.")
    unknown = set(needed) - set(ARRAY_NAMES)
    if unknown:
        raise InputError(f"unknown prepared arrays {sorted(unknown)}; choose from {ARRAY_NAMES}.")
    shape0 = hu.shape
    as_stored = config.orientation == "as_stored"
    hu, affine_c = (hu, affine) if as_stored else to_canonical(hu, affine)
    spacing = spacing_of(affine_c)
    keys, empty, masks = [], [], []
    for key, mask in regions.items():
        mask = np.asarray(mask)
        if mask.shape != shape0:
            raise InputError(f"region {key!r} mask has shape {mask.shape} but the CT is {shape0}; "
                             "resample the mask onto the CT grid.")
        if not mask.any():
            empty.append(str(key))
            continue
        keys.append(str(key))
        masks.append(mask.astype(bool) if as_stored else to_canonical(mask.astype(bool), affine)[0])
    if not keys:
        raise InputError("every region mask is empty; segment the CT first or give non-empty region masks.")

    grid = tuple(config.grid)
    arrays: dict[str, np.ndarray] = {}
    body = body_box(hu, spacing, config) if config.body_box == "largest_component" else \
        foreground_box(hu, config.body_threshold_hu, config.body_margin_mm, spacing)
    hu_body = hu[body]
    mode = config.resample
    if "image" in needed:
        arrays["image"] = _image_on_grid(hu_body, config, grid)
    if "masks" in needed:
        arrays["masks"] = np.stack([resize_mask(m[body], grid, mode) for m in masks])
    if "slices" in needed or "slice_masks" in needed:
        slice_shape = (config.num_slices, int(config.slice_size), int(config.slice_size))
        xyz_shape = (slice_shape[2], slice_shape[1], slice_shape[0])  # W <- X, H <- Y, Z
        if "slices" in needed:
            arrays["slices"] = to_display_slices(resize(window_01(hu_body, config), xyz_shape))
        if "slice_masks" in needed:
            arrays["slice_masks"] = np.stack([to_display_slices(resize_mask(m[body], xyz_shape)) for m in masks])
    if "crops" in needed:
        crops = []
        outside = np.float32(config.hu_min if config.outside_region_hu is None else config.outside_region_hu)
        for mask in masks:
            if config.region_box == "foreground":  # the mask's voxels above the threshold (Reg2RG)
                box = bounding_box(mask & (hu > config.body_threshold_hu), config.region_margin_mm, spacing) or \
                    bounding_box(mask, config.region_margin_mm, spacing)
            else:
                box = bounding_box(mask, config.region_margin_mm, spacing)
            region = hu[box].astype(np.float32)
            if config.mask_outside_region:
                region = np.where(mask[box], region, outside)
            crops.append(_image_on_grid(region, config, grid))
        arrays["crops"] = np.stack(crops)

    def _pick(name):
        table = case.get(name) or {}
        return {str(k): str(v) for k, v in table.items() if str(k) in keys and v is not None}

    return PreparedCase(keys=keys, arrays=arrays, names=_pick("names"), attributes=_pick("attributes"),
                        paragraphs=_pick("paragraphs"), empty=empty)
