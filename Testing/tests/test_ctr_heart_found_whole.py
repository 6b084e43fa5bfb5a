"""The cardiothoracic ratio is read only from a heart found whole: a heart mask smaller than an adult heart (a
segmentation that missed the ventricles, or cut the heart in half) gives no ratio, with the reason; and on a
contrast CT the diaphragm is not fitted to the lung lying on the heart's blood-filled chambers."""

import numpy as np

from MedRegionCTLib.anatomy import patient_axes
from MedRegionCTLib.measure.clinical import cardiothoracic_ratio
from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.segment.builtin.diaphragm import diaphragm_height
from MedRegionCTLib.segment.builtin.grid import Grid
from MedRegionCTLib.segment.builtin.lungs import Lungs
from MedRegionCTLib.segment.builtin.segmenter import _dome_heights
from MedRegionCTLib.volume import Volume


def _chest(heart_radius_mm: float):
    """2 mm voxels, RAS: two lungs 60 mm either side of a round heart of ``heart_radius_mm``."""
    n = 160
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    x, y, z = np.meshgrid(*(np.arange(n) * 2.0 - 160.0,) * 3, indexing="ij")
    heart = x ** 2 + y ** 2 + z ** 2 <= heart_radius_mm ** 2
    lungs = ((np.abs(x) - 100.0) ** 2 / 40.0 ** 2 + y ** 2 / 80.0 ** 2 + z ** 2 / 100.0 ** 2 <= 1) & ~heart
    return heart, lungs, patient_axes(affine), affine


def test_a_heart_too_small_to_be_whole_gives_no_ratio():
    heart, lungs, axes, affine = _chest(40.0)  # about 268 mL
    ctr = cardiothoracic_ratio(heart, lungs, axes, affine)
    ml = heart.sum() * 8 / 1000
    assert ctr["value"] is None and "not found whole" in ctr["not_assessed"] and f"{ml:.0f} mL" in ctr["not_assessed"]


def test_a_whole_heart_gives_its_ratio():
    heart, lungs, axes, affine = _chest(55.0)  # 697 mL
    ctr = cardiothoracic_ratio(heart, lungs, axes, affine)
    assert "not_assessed" not in ctr
    assert abs(ctr["value"] - 112.0 / 280.0) < 0.02


def test_floors_over_the_chambers_blood_are_not_the_diaphragm():
    # a lung whose floor lies on the liver (60 HU) at z 20 on the right half, and on a chamber of iodinated
    # blood (300 HU) at z 45 on the left half: only the liver's floor is diaphragm
    hu = np.full((60, 40, 80), 40, np.int16)
    hu[:, :, :20] = 60
    lungs = np.zeros(hu.shape, bool)
    lungs[5:55, 5:35, 20:70] = True
    lungs[30:55, 5:35, 20:45] = False
    hu[lungs] = -850
    hu[30:55, 5:35, 33:45] = 300
    blood = np.zeros(hu.shape, bool)
    blood[30:55, 5:35, 33:45] = True
    grid = Grid(Volume(hu, np.diag([2.0, 2.0, 2.0, 1.0]), {}), coarse_mm=2.0)
    body = np.ones(hu.shape, bool)
    params = dict(BuiltinSegmenter().params["diaphragm"], dome_outlier_mm=float("inf"))
    plain = diaphragm_height(grid, lungs, body, params)
    assert plain[40, 20] > 40  # the lung lying on the chamber taken for the diaphragm
    fitted = diaphragm_height(grid, lungs, body, params, blood=blood)
    assert fitted[40, 20] < 25 and fitted[15, 20] < 25


def test_the_dome_is_not_read_over_the_heart():
    # two lungs resting on a flat surface at z 10, lifted to z 30 over the heart's columns beside the left lung's
    # middle: the left dome is read off the heart (realct_pathology/lung1016 read it 39 mm above the right)
    shape = (80, 40, 60)
    grid = Grid(Volume(np.zeros(shape, np.int16), np.diag([2.0, 2.0, 2.0, 1.0]), {}), coarse_mm=2.0)
    height = np.full(shape[:2], 10.0)
    heart_cols = np.zeros(shape[:2], bool)
    heart_cols[14:26, 10:30] = True  # canonical RAS: x grows to the patient's right, the left lung at low x
    height[heart_cols] = 30.0
    z = np.arange(shape[2])[None, None, :]
    left = np.zeros(shape, bool)
    right = np.zeros(shape, bool)
    left[2:38, 5:35] = (z >= height[2:38, 5:35, None]) & (z < 55)
    right[42:78, 5:35] = (z >= height[42:78, 5:35, None]) & (z < 55)
    lungs = Lungs(left=left, right=right)
    plain = _dome_heights(grid, height, lungs, 10.0)
    kept = _dome_heights(grid, height, lungs, 10.0, heart_cols)
    assert plain["left"] - plain["right"] > 30
    assert abs(kept["left"] - kept["right"]) < 3
