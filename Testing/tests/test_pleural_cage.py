"""The pleural cavity's cage on a synthetic grid: bone behind the vertebral body near the midline (the laminae and
the spinous process, which lie in the back muscles) never widens the cage, whatever the bone labels call it."""

import numpy as np

from MedRegionCTLib.data import load_json
from MedRegionCTLib.segment.builtin.bones import Skeleton
from MedRegionCTLib.segment.builtin.grid import Grid
from MedRegionCTLib.segment.builtin.pleural import pleural_cavity
from MedRegionCTLib.volume import Volume

SHAPE = (80, 80, 12)   # canonical grid, 2 mm voxels: x grows to the patient's right here (as pleural.py reads it)
MIDLINE = 40


def chest(back_piece_name: str):
    """A right lung inside an arc of rib, a vertebral body with its lamina behind it, and one more piece of
    bone behind the body beside the midline, named ``back_piece_name``."""
    xs, ys = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    hu = np.full(SHAPE, -1000, np.int16)
    body = ((xs - 40) ** 2 / 38 ** 2 + (ys - 40) ** 2 / 36 ** 2) <= 1
    hu[body] = 40
    lung2d = ((xs - 58) ** 2 / 11 ** 2 + (ys - 42) ** 2 / 15 ** 2) <= 1
    ring = ((xs - 58) ** 2 / 17 ** 2 + (ys - 42) ** 2 / 21 ** 2)
    rib2d = (ring >= 0.85) & (ring <= 1.0) & (xs > MIDLINE + 6) & (ys > 18)
    vertebra2d = (np.abs(xs - MIDLINE) <= 5) & (ys >= 20) & (ys <= 30)   # y runs forward: the body in front
    lamina2d = (np.abs(xs - MIDLINE) <= 3) & (ys >= 10) & (ys <= 16)
    back2d = (xs >= 46) & (xs <= 50) & (ys >= 8) & (ys <= 11)           # behind the body, 12-20 mm off the midline
    parts = np.zeros(SHAPE, np.int16)
    names = ["vertebrae_T6", "rib_right_6", back_piece_name]
    for k in range(SHAPE[2]):
        hu[:, :, k][lung2d] = -850
        for mask2d in (rib2d, vertebra2d, lamina2d, back2d):
            hu[:, :, k][mask2d] = 700
        parts[:, :, k][vertebra2d | lamina2d] = 1
        parts[:, :, k][rib2d] = 2
        parts[:, :, k][back2d] = names.index(back_piece_name) + 1
    volume = Volume(hu, np.diag([2.0, 2.0, 2.0, 1.0]), {})
    grid = Grid(volume, 2.0)
    axis = np.tile(np.array([MIDLINE, 30.0, 20.0]), (SHAPE[2], 1))
    skeleton = Skeleton(bone=parts > 0, parts=parts, names=names, spine_axis=axis)
    lung = np.broadcast_to(lung2d[:, :, None], SHAPE).copy()
    return grid, skeleton, lung, np.broadcast_to(body[:, :, None], SHAPE).copy()


def cavity_of(back_piece_name: str) -> np.ndarray:
    grid, skeleton, lung, body = chest(back_piece_name)
    params = load_json("builtin_segmenter.json")["pleural_space"]
    keep_out = skeleton.bone.copy()
    return pleural_cavity(grid, lung, skeleton, "right", body, keep_out, np.full(SHAPE[2], float(MIDLINE)), params)


def test_bone_behind_the_vertebral_body_never_widens_the_cage():
    behind = np.zeros(SHAPE, bool)
    behind[44:52, 6:16, :] = True   # the back muscles beside the spinous process, behind the vertebral body
    as_rib = cavity_of("rib_right_7")
    as_scapula = cavity_of("scapula_right")
    assert as_scapula.any() and not (as_scapula & behind).any()
    # named rib or not, the piece behind the body takes no back muscle into the cage
    assert not (as_rib & behind).any()
    assert (as_rib == as_scapula).all()
