"""What a mass is measured on, what counts as resting on the heart, where a dome is read, and down to what volume an
absence of pleural fluid is stated: on small synthetic grids built here (1 mm voxels, lung at -850 HU)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from MedRegionCTLib.data import load_json
from MedRegionCTLib.measure.lesions import Lesion, detection_params
from MedRegionCTLib.measure.masses import find_masses, heart_contact_share
from MedRegionCTLib.segment.builtin.segmenter import _dome_heights

SHAPE = (90, 90, 90)
AFFINE = np.eye(4)


def _grid_mm():
    return np.indices(SHAPE).astype(np.float32)


def _ball(centre, radius):
    i, j, k = _grid_mm()
    return (i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2 <= radius ** 2


def _extent_mm(mask: np.ndarray) -> float:
    pts = np.argwhere(mask)
    return float(np.ptp(pts[:, 0])) + 1.0


def _masses(tissue: np.ndarray) -> list[Lesion]:
    hu = np.where(tissue, 40.0, -850.0).astype(np.float32)
    return find_masses(hu, np.ones(SHAPE, dtype=bool), AFFINE, detection_params())


def test_an_infiltrating_mass_is_measured_past_the_rules_margin_and_a_round_one_is_not_grown():
    p = detection_params()["masses"]
    assert p["measure_margin_mm"] > p["margin_mm"]
    ball = _ball((45, 45, 45), 14)
    # tumour tissue reaching out along the x axis as a band thinner than the opening's ball (8 mm): the opening
    # takes it off, the rules' margin gives 6 mm of it back, the measured mask up to 12 mm
    band = np.zeros(SHAPE, dtype=bool)
    band[45 + 10:45 + 14 + 20, 41:49, 41:49] = True
    (infiltrating,) = _masses(ball | band)
    crop, measured = infiltrating.attributes["measured_mask"]
    narrow = _extent_mm(infiltrating.mask)
    wide = _extent_mm(measured)
    assert wide >= narrow + 4.0, (narrow, wide)
    assert wide <= 2 * 14 + 1 + (p["measure_margin_mm"] - 0) + 1, wide  # never past the band's reach from the core
    (round_one,) = _masses(ball)
    crop, measured = round_one.attributes["measured_mask"]
    assert measured.sum() == round_one.mask.sum()  # aerated lung bounds it: nothing to give back


def test_the_measured_mask_stops_half_way_to_a_neighbouring_candidate():
    left, right = _ball((25, 45, 45), 10), _ball((65, 45, 45), 10)
    bridge = np.zeros(SHAPE, dtype=bool)
    bridge[30:61, 42:48, 42:48] = True  # a 6 mm strand between them, thinner than the opening's ball
    found = _masses(left | right | bridge)
    assert len(found) == 2
    owned = []
    for les in found:
        (crop, measured) = les.attributes["measured_mask"]
        full = np.zeros(SHAPE, dtype=bool)
        full[crop] = measured
        owned.append(full)
    assert not (owned[0] & owned[1]).any()
    # each took its half of the strand (at most to the midpoint at x = 45)
    xs = sorted((np.argwhere(m)[:, 0].min(), np.argwhere(m)[:, 0].max()) for m in owned)
    assert xs[0][1] <= 45 and xs[1][0] >= 45, xs


def test_a_lump_against_the_hearts_wall_rests_on_the_heart():
    labels = np.zeros(SHAPE, dtype=np.int16)
    heart, mediastinum = 51, 263
    labels[:, :30, :] = heart  # the blood pool
    # the myocardium, the atrial appendage and the pericardium, which a contrast CT leaves out of the heart's
    # mask; the lump (the appendage) lies in a notch of it
    labels[:, 30:50, :] = mediastinum
    lump = _ball((45, 50, 45), 11)
    lesion = Lesion("mass", (slice(0, 90),) * 3, lump)
    on_label_only = heart_contact_share(lesion, labels, heart, None, AFFINE, wall_mm=20.0)
    with_wall = heart_contact_share(lesion, labels, heart, mediastinum, AFFINE, wall_mm=20.0)
    assert on_label_only == 0.0
    assert with_wall >= detection_params()["masses"]["heart_contact_share"], with_wall
    # mediastinum far from the heart is not heart
    far = labels.copy()
    far[:, :30, :] = 0  # no heart in reach
    assert heart_contact_share(lesion, far, heart, mediastinum, AFFINE, wall_mm=20.0) == 0.0


def test_the_dome_is_read_where_the_lung_rests_on_it_away_from_the_medial_third():
    n = 60
    grid = SimpleNamespace(coarse_spacing=np.array([2.0, 2.0, 2.0]), factors=(1, 1, 1), affine=np.eye(4))
    height = np.full((n, n), 10.0)
    lungs = SimpleNamespace(left=np.zeros((n, n, n), dtype=bool), right=np.zeros((n, n, n), dtype=bool))
    lungs.right[5:25, 10:50, 11:50] = True  # both lungs rest on a flat floor at z 10
    lungs.left[35:55, 10:50, 11:50] = True
    flat = _dome_heights(grid, height, lungs, rest_mm=10.0)
    # medially under the left lung the floor is the aorta (a contrast CT's blood counts as an organ): the
    # surface fitted there stands 25 voxels higher, and so does the lung's floor
    height[35:40, 10:50] = 35.0
    lungs.left[35:40, 10:50, :36] = False
    # where the left lung lies over the heart the surface is carried under it, far below the lung's floor
    lungs.left[40:45, 10:30, :30] = False
    raised = _dome_heights(grid, height, lungs, rest_mm=10.0)
    assert raised["left"] == pytest.approx(flat["left"], abs=1.0), (flat, raised)
    assert raised["right"] == pytest.approx(flat["right"], abs=1.0)


def test_an_absence_of_pleural_fluid_is_stated_only_down_to_the_checked_size():
    from MedRegionCTLib.phantom import make_phantom
    from MedRegionCTLib.pipeline import analyze

    floor = load_json("builtin_segmenter.json")["pleural_space"]["absence_floor_ml"]
    assert floor >= load_json("builtin_segmenter.json")["pleural_space"]["effusion_side_min_ml"]
    ph = make_phantom("tiny", seed=0, findings="none")
    a = analyze(ph.volume, segmenter="builtin")
    text = a.report.region("pleura").paragraph
    assert f"No pleural effusion of {floor:.0f} mL or more is seen" in text, text
