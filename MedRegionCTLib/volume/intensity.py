"""Stored values -> int16 Hounsfield units, and the "is this really CT?" plausibility check.

Conversions work in place where the stored type allows it (16-bit integers with integral rescale) and slab by
slab otherwise, so reading a CT never holds more than the stored array plus the int16 result.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import load_json
from ..errors import NotCTError, VolumeReadError

_I16 = np.iinfo(np.int16)
NO_CT_CHECK_HINT = "pass check_ct=False (command line: --no-ct-check) to load it anyway"


def _checks() -> dict:
    return load_json("ct_intensity_check.json")


def _slabs(shape: tuple[int, ...], max_voxels: int = 1 << 22):
    """Index tuples that cut an array into slabs along its last axis (bounded temporaries)."""
    per_slab = max(1, int(np.prod(shape[:-1], dtype=np.int64)))
    step = max(1, max_voxels // per_slab)
    for start in range(0, shape[-1], step):
        yield (..., slice(start, min(start + step, shape[-1])))


def _wrap_int16(value: float) -> np.int16:
    """``value`` (an integer) reduced modulo 2**16 into int16 (for wrap-around in-place arithmetic)."""
    return np.int16(((int(value) + 32768) % 65536) - 32768)


def native_byte_order(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order, swapped in place when it is writable."""
    if array.dtype.isnative:
        return array
    if array.flags.writeable:
        return array.byteswap(inplace=True).view(array.dtype.newbyteorder("="))
    return array.astype(array.dtype.newbyteorder("="))


def value_range(array: np.ndarray) -> tuple[float, float]:
    if array.size == 0:
        return 0.0, 0.0
    if np.issubdtype(array.dtype, np.floating):
        return float(np.nanmin(array)), float(np.nanmax(array))
    return float(array.min()), float(array.max())


def scale_to_hu(raw: np.ndarray, slope: float = 1.0, inter: float = 0.0, *, what: str,
                check_ct: bool = True) -> np.ndarray:
    """``raw * slope + inter`` as int16 (rounded) when the result fits, reusing ``raw``'s memory if it can.

    ``raw`` may be modified in place (callers pass arrays they own). When the values do not fit int16 or are
    not finite, this raises :class:`NotCTError` with ``check_ct`` and returns float32 without it.
    """
    if raw.dtype.kind not in "biuf":
        raise VolumeReadError(f"{what} has pixel type {raw.dtype} (colour or complex data), not a grey-level "
                              "CT; give a single-channel CT image.")
    if not raw.dtype.isnative:
        raw = native_byte_order(raw)
    slope = 1.0 if slope is None or not math.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not math.isfinite(inter) else float(inter)
    if raw.dtype.kind == "f" and not all(np.isfinite(raw[part]).all() for part in _slabs(raw.shape)):
        if check_ct:
            raise NotCTError(f"{what} contains NaN or infinite values, which a CT in HU never has; fill them "
                             f"(e.g. with -1024) or {NO_CT_CHECK_HINT} as float.")
        return _to_float32(raw, slope, inter)
    lo, hi = value_range(raw)
    out_lo, out_hi = sorted((lo * slope + inter, hi * slope + inter))
    if round(out_lo) < _I16.min or round(out_hi) > _I16.max:
        if check_ct:
            raise NotCTError(f"{what} has values {out_lo:g}..{out_hi:g}, outside any Hounsfield-unit range; "
                             f"it is not a CT in HU: {NO_CT_CHECK_HINT} (as float).")
        return _to_float32(raw, slope, inter)
    integral = raw.dtype.kind in "biu" and float(slope).is_integer() and float(inter).is_integer()
    if raw.dtype == np.int16 and slope == 1 and inter == 0:
        return raw
    if integral and (raw.dtype.itemsize == 1 or (raw.dtype.itemsize == 2 and raw.flags.writeable)):
        # 16-bit storage is converted in place (8-bit widened once). Wrap-around int16 arithmetic is exact
        # modulo 2**16 and the true result fits int16, so the result is exact with no second copy.
        out = raw.astype(np.int16) if raw.dtype.itemsize == 1 else raw.view(np.int16)
        if slope != 1:
            np.multiply(out, _wrap_int16(slope), out=out)
        if inter != 0:
            np.add(out, _wrap_int16(inter), out=out)
        return out
    out = np.empty(raw.shape, dtype=np.int16, order="F" if raw.flags.f_contiguous else "C")
    for index in _slabs(raw.shape):
        part = raw[index].astype(np.int64 if integral else np.float64)
        if slope != 1:
            part *= int(slope) if integral else slope
        if inter != 0:
            part += int(inter) if integral else inter
        if part.dtype.kind == "f":
            np.rint(part, out=part)
        out[index] = part
    return out


def _to_float32(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    out = raw if raw.dtype == np.float32 and raw.flags.writeable else raw.astype(np.float32)
    if slope != 1:
        out *= np.float32(slope)
    if inter != 0:
        out += np.float32(inter)
    return out


def _sample(array: np.ndarray, max_voxels: int) -> np.ndarray:
    """A strided view with at most about ``max_voxels`` voxels (no copy)."""
    step = 1
    if array.size > max_voxels:
        step = max(1, math.ceil((array.size / max_voxels) ** (1.0 / array.ndim)))
    return array[tuple(slice(None, None, step if n >= 4 * step else 1) for n in array.shape)]


def check_ct_values(array: np.ndarray, what: str, modality: str | None = None) -> dict:
    """Raise :class:`NotCTError` unless ``array`` plausibly holds CT Hounsfield units; returns the figures."""
    cfg = _checks()
    if modality is not None and modality.upper() not in cfg["ct_modalities"]:
        raise NotCTError(f"{what} is a {modality} series, not CT; give a CT series or {NO_CT_CHECK_HINT}.")
    lo, hi = value_range(array)
    air_lo, air_hi = cfg["air_window_hu"]
    sample = _sample(array, int(cfg["sample_max_voxels"]))
    air = int(np.count_nonzero((sample >= air_lo) & (sample <= air_hi)))
    fraction = air / max(sample.size, 1)
    if fraction >= cfg["min_air_fraction"]:
        return {"air_fraction": round(fraction, 6), "value_range": [lo, hi]}
    raw_lo, raw_hi = cfg["raw_unrescaled_range"]
    if lo >= raw_lo and hi <= raw_hi and hi > 500:
        raise NotCTError(
            f"{what} has values {lo:g}..{hi:g} with no air (about -1000 HU): it looks like raw stored CT "
            f"values without the rescale intercept (usually {cfg['typical_missing_intercept_hu']}); fix the "
            f"header's rescale/scl_inter or {NO_CT_CHECK_HINT}.")
    raise NotCTError(
        f"{what} does not look like CT in Hounsfield units: values {lo:g}..{hi:g} and no voxel of air "
        f"({air_lo}..{air_hi} HU), as in MR or normalised images; give a CT or {NO_CT_CHECK_HINT}.")
