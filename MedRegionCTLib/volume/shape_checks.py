"""Dimension checks shared by the readers: a CT must be one 3D volume with at least two slices."""

from __future__ import annotations

from ..errors import VolumeReadError


def spatial_shape(shape: tuple[int, ...], what: str, *, min_slices: int = 2) -> tuple[int, int, int]:
    """The 3D shape of an image of ``shape``, dropping trailing singleton dimensions (``x*y*z*1``).

    Raises a one-line :class:`VolumeReadError` for a 2D image, a single slice or a 4D series.
    """
    shape = tuple(int(n) for n in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    dims = " x ".join(str(n) for n in shape)
    if len(shape) > 3:
        raise VolumeReadError(f"{what} is a {len(shape)}D image ({dims}); it holds {shape[3]} volumes: "
                              "extract the one 3D CT you want first (e.g. nibabel img.slicer[..., 0]).")
    if len(shape) < 3:
        raise VolumeReadError(f"{what} is a {len(shape)}D image ({dims}), not a 3D CT; give the whole CT "
                              "volume or series (at least two slices).")
    if min(shape) < min_slices:
        raise VolumeReadError(f"{what} holds a single slice ({dims}); a 3D CT needs at least {min_slices} "
                              "slices: give the whole volume or series.")
    return shape  # type: ignore[return-value]
