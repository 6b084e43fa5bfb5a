"""Orientation and resampling: exact reorientation, spacing changes that keep the field of view, grids."""

from __future__ import annotations

import numpy as np
import pytest

from MedRegionCTLib.errors import InputError
from MedRegionCTLib.volume import (
    LabelMap,
    Volume,
    reorient,
    resample_labels,
    resample_like,
    resample_to_spacing,
)


def _affine(direction, spacing, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=float) * np.asarray(spacing, dtype=float)
    affine[:3, 3] = origin
    return affine


def _rot(angle_deg, axis):
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def ramp(ras):
    """A linear function of world position (linear interpolation reproduces it exactly)."""
    return -600.0 + 4.0 * ras[..., 0] - 3.0 * ras[..., 1] + 7.0 * ras[..., 2]


def _ramp_volume(shape, affine, dtype=np.float32) -> Volume:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    ras = ijk @ affine[:3, :3].T + affine[:3, 3]
    return Volume(ramp(ras).astype(dtype), affine, {"source": "test"})


def _check_world_consistent(original, moved):
    """Every voxel of ``original`` is found, with its value, where ``moved``'s affine puts that position."""
    grid = np.meshgrid(*[np.arange(n) for n in original.shape], indexing="ij")
    ijk = np.stack(grid, axis=-1).reshape(-1, 3)
    world = ijk @ original.affine[:3, :3].T + original.affine[:3, 3]
    new = moved.world_to_index(world)
    np.testing.assert_allclose(new, np.round(new), atol=1e-6)  # a pure permutation/flip of the grid
    new = np.round(new).astype(int)
    np.testing.assert_array_equal(moved.array[tuple(new.T)], original.array[tuple(ijk.T)])


@pytest.mark.parametrize("direction", [np.diag([-1, -1, 1]), np.diag([-1, 1, 1]),
                                       np.eye(3)[:, [2, 0, 1]] * [1, -1, 1], _rot(20, 2) @ _rot(10, 0)])
def test_reorient_to_ras_is_exact(direction):
    rng = np.random.default_rng(0)
    vol = Volume(rng.integers(-1000, 1000, (7, 5, 4)).astype(np.int16), _affine(direction, (0.7, 0.9, 2.0),
                                                                                   (10, -20, 30)))
    ras = reorient(vol, "RAS")
    assert ras.orientation == "RAS"
    assert ras.array.dtype == np.int16
    _check_world_consistent(vol, ras)
    back = reorient(ras, vol.orientation)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-9)


def test_reorient_labelmap_keeps_names_and_rejects_bad_codes():
    labels = LabelMap(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), _affine(np.diag([-1, -1, 1]), (1, 1, 1),
                                                                                (0, 0, 0)), {5: "liver"})
    lps_to_pir = reorient(labels, "PIR")
    assert isinstance(lps_to_pir, LabelMap) and lps_to_pir.names == {5: "liver"}
    assert lps_to_pir.orientation == "PIR"
    _check_world_consistent(labels, lps_to_pir)
    for bad in ("RAX", "RRS", "RA"):
        with pytest.raises(InputError, match="axis code"):
            reorient(labels, bad)


@pytest.mark.parametrize("direction", [np.diag([-1, -1, 1]), _rot(25, 2) @ _rot(-10, 1)])
def test_resample_to_spacing_keeps_extent_direction_and_values(direction):
    affine = _affine(direction, (0.8, 0.8, 2.5), (-30, 12, -100))
    vol = _ramp_volume((30, 25, 12), affine)
    out = resample_to_spacing(vol, (1.6, 1.2, 1.0))
    assert out.shape == (15, 17, 30)
    np.testing.assert_allclose(out.spacing, (1.6, 1.2, 1.0), atol=1e-9)
    np.testing.assert_allclose(out.direction, vol.direction, atol=1e-9)
    # Same field of view: the grid centres coincide and the extents match within one new voxel.
    centre = lambda v: v.index_to_world((np.asarray(v.shape) - 1) / 2)  # noqa: E731
    np.testing.assert_allclose(centre(out), centre(vol), atol=1e-6)
    old_extent = np.asarray(vol.shape) * vol.spacing
    new_extent = np.asarray(out.shape) * out.spacing
    assert np.all(np.abs(new_extent - old_extent) <= np.asarray(out.spacing) / 2 + 1e-9)
    # Linear interpolation of a linear ramp is exact away from the half-voxel border.
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), axis=-1)
    src = vol.world_to_index(out.index_to_world(ijk))
    inside = np.all((src >= 0) & (src <= np.asarray(vol.shape) - 1), axis=-1)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(out.array[inside], ramp(out.index_to_world(ijk))[inside], atol=1e-2)


def test_resample_int16_rounds_and_keeps_dtype():
    vol = _ramp_volume((20, 20, 10), _affine(np.eye(3), (1, 1, 3), (0, 0, 0)), dtype=np.int16)
    out = resample_to_spacing(vol, 1.5)
    assert out.array.dtype == np.int16
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), axis=-1)
    src = vol.world_to_index(out.index_to_world(ijk))
    inside = np.all((src >= 0) & (src <= np.asarray(vol.shape) - 1), axis=-1)
    expected = np.rint(ramp(out.index_to_world(ijk)))
    assert np.max(np.abs(out.array[inside] - expected[inside])) <= 1


def test_resample_labels_nearest_keeps_label_set_and_volumes():
    array = np.zeros((40, 40, 20), dtype=np.uint8)
    array[5:25, 8:30, 4:14] = 3
    array[28:36, 10:20, 2:18] = 7
    labels = LabelMap(array, _affine(np.diag([-1, -1, 1]), (0.75, 0.75, 2.0), (5, 5, 5)), {3: "a", 7: "b"})
    out = resample_labels(labels, 1.0)
    assert isinstance(out, LabelMap) and out.array.dtype == np.uint8 and out.names == labels.names
    assert set(np.unique(out.array)) == {0, 3, 7}
    for name, ml in labels.volumes_ml().items():
        assert out.volumes_ml()[name] == pytest.approx(ml, rel=0.08)
    assert resample_to_spacing(labels, 1.0, order=1).array.dtype == np.uint8  # labels: always nearest
    with pytest.raises(InputError, match="LabelMap"):
        resample_labels(Volume(array.astype(np.int16), labels.affine), 1.0)
    with pytest.raises(InputError, match="spacing"):
        resample_to_spacing(labels, (1.0, -1.0, 1.0))


def test_resample_like_oblique_onto_ras_grid():
    source = _ramp_volume((30, 30, 20), _affine(_rot(30, 2), (1.0, 1.0, 1.5), (-15, -15, -15)))
    reference = Volume(np.zeros((40, 40, 30), dtype=np.int16),
                       _affine(np.eye(3), (1.2, 1.2, 1.2), (-30, -25, -20)))
    out = resample_like(source, reference)
    assert out.same_grid(reference)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), axis=-1)
    src = source.world_to_index(out.index_to_world(ijk))
    inside = np.all((src >= 0) & (src <= np.asarray(source.shape) - 1), axis=-1)
    outside = np.any((src < -0.5 - 1e-3) | (src > np.asarray(source.shape) - 0.5 + 1e-3), axis=-1)
    assert inside.any() and outside.any()
    np.testing.assert_allclose(out.array[inside], ramp(out.index_to_world(ijk))[inside], atol=1e-2)
    assert np.all(out.array[outside] == -1024)


def test_resample_like_labels_and_identity():
    array = np.zeros((10, 10, 6), dtype=np.uint16)
    array[2:6, 3:7, 1:4] = 512
    labels = LabelMap(array, _affine(np.diag([-1, -1, 1]), (2, 2, 3), (0, 0, 0)), {512: "airway"})
    same = resample_like(labels, labels)
    np.testing.assert_array_equal(same.array, array)
    assert not np.shares_memory(same.array, array)
    finer = Volume(np.zeros((20, 20, 18), dtype=np.int16), _affine(np.diag([-1, -1, 1]), (1, 1, 1),
                                                                    (0.5, 0.5, -1.0)))
    out = resample_like(labels, finer)
    assert out.array.dtype == np.uint16 and set(np.unique(out.array)) == {0, 512}
    assert out.volumes_ml()["airway"] == pytest.approx(labels.volumes_ml()["airway"], rel=0.05)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_engines_agree(order):
    source = _ramp_volume((24, 20, 12), _affine(_rot(15, 2) @ _rot(5, 0), (1.1, 0.9, 2.0), (-10, -8, -12)),
                          dtype=np.int16)
    reference = Volume(np.zeros((26, 22, 20), dtype=np.int16),
                       _affine(np.eye(3), (1.0, 1.0, 1.3), (-14, -12, -14)))
    by_itk = resample_like(source, reference, order=order, engine="simpleitk")
    by_scipy = resample_like(source, reference, order=order, engine="scipy")
    assert by_itk.array.dtype == by_scipy.array.dtype == np.int16
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in reference.shape], indexing="ij"), axis=-1)
    src = source.world_to_index(reference.index_to_world(ijk))
    # Away from the border (where the engines extend the image differently for splines) they agree to
    # rounding; nearest neighbour may pick the other voxel at exact half-way points only.
    interior = np.all((src >= 2) & (src <= np.asarray(source.shape) - 3), axis=-1)
    diff = np.abs(by_itk.array.astype(int) - by_scipy.array)[interior]
    assert interior.sum() > 500
    if order == 0:
        assert (diff > 0).mean() < 0.01
    else:
        assert diff.max() <= 1
    outside = np.any((src < -0.6) | (src > np.asarray(source.shape) - 0.4), axis=-1)
    assert np.all(by_itk.array[outside] == -1024) and np.all(by_scipy.array[outside] == -1024)


def test_sheared_grid_uses_scipy():
    affine = _affine(np.eye(3), (1, 1, 2), (0, 0, 0))
    affine[1, 2] = 0.5  # gantry tilt: the slice axis leans towards anterior
    vol = _ramp_volume((12, 10, 8), affine)
    out = resample_to_spacing(vol, (1.0, 1.0, 1.0))
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), axis=-1)
    src = vol.world_to_index(out.index_to_world(ijk))
    inside = np.all((src >= 0) & (src <= np.asarray(vol.shape) - 1), axis=-1)
    np.testing.assert_allclose(out.array[inside], ramp(out.index_to_world(ijk))[inside], atol=1e-2)
    with pytest.raises(InputError, match="engine='scipy'"):
        resample_to_spacing(vol, 1.0, engine="simpleitk")
    assert resample_to_spacing(vol, 1.0, order=2).array.dtype == np.float32  # order 2: scipy
