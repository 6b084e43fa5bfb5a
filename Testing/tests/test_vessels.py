"""Vessel calibres on planes perpendicular to the centreline (measure.vessels): exact on analytic tubes, the
plane follows the vessel, landmarks placed as TotalSegmentator's reports place them (and from the vessel's
shape without their masks), and on the phantom within 1.5 mm of the true section of its tubes."""

import numpy as np
import pytest

from MedRegionCTLib.measure import measure
from MedRegionCTLib.measure.vessels import aorta_landmarks, cross_section, pulmonary_landmarks, vessel_centerline
from MedRegionCTLib.phantom import make_phantom, section_diameters


def tube_mask(shape, spacing, p0, p1, radius):
    """A straight tube from p0 to p1 (mm) of ``radius`` on a grid (affine: diagonal spacing, origin 0)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
    d = np.asarray(p1, float) - np.asarray(p0, float)
    t = np.clip(((idx - p0) @ d) / (d @ d), 0, 1)
    dist = np.linalg.norm(idx - (np.asarray(p0) + t[..., None] * d), axis=-1)
    return dist <= radius, np.diag(list(spacing) + [1.0])


def test_section_of_a_straight_tube_is_its_diameter():
    mask, affine = tube_mask((60, 60, 60), (1.0, 1.0, 1.0), (30, 30, 5), (30, 30, 55), 12.0)
    s = cross_section(mask, affine, (30, 30, 30), (0, 0, 1))
    assert s.diameter_mm == pytest.approx(24.0, abs=1.0)
    assert s.diameter_pd_mm == pytest.approx(24.0, abs=1.0)
    assert s.area_mm2 == pytest.approx(np.pi * 144, rel=0.05)
    tilted = cross_section(mask, affine, (30, 30, 30), (0, np.sin(0.6), np.cos(0.6)))
    assert tilted.diameter_mm > s.diameter_mm + 3  # an oblique plane overstates the calibre


def test_centerline_follows_an_oblique_tube_and_its_plane_is_perpendicular():
    mask, affine = tube_mask((70, 70, 80), (1.0, 1.0, 1.0), (15, 20, 5), (50, 45, 75), 9.0)
    line, _ = vessel_centerline(mask, affine)
    axis = np.array([35, 25, 70.0]) / np.linalg.norm([35, 25, 70.0])
    mid = len(line) // 2
    assert abs(line.tangents[mid] @ axis) > 0.99
    s = cross_section(mask, affine, line.points[mid], line.tangents[mid])
    assert s.diameter_mm == pytest.approx(18.0, abs=1.0)
    # ordered from the anterior (proximal) end
    assert line.points[0][1] > line.points[-1][1]


def disc_plane(radius_mm, inside_hu, wall_mm=0.0, wall_hu=45.0, around_hu=-100.0, size=80, spacing=0.5):
    """One axial slab (3 slices) of a round vessel on a fine grid: lumen, optional wall, then ``around_hu``."""
    ax = (np.arange(size) - size / 2 + 0.5) * spacing
    r = np.hypot(*np.meshgrid(ax, ax, indexing="ij"))
    hu = np.where(r <= radius_mm - wall_mm, inside_hu, np.where(r <= radius_mm, wall_hu, around_hu))
    return np.repeat(hu[:, :, None], 3, axis=2).astype(np.float32), r, np.diag([spacing] * 3 + [1.0])


WALL = {"mm": 3.0, "fat_hu": -30.0, "max_hu": 200.0, "contrast_lumen_hu": 150.0, "contrast_mm": 4.5,
        "unenhanced_mm": 3.0, "rise_hu": 50.0, "fat_floor_hu": -100.0, "growth_spread_mm": 1.0}


def section_of(mask, hu, affine):
    centre = np.array(mask.shape) / 2 - 0.5
    return cross_section(mask, affine, affine[:3, :3] @ centre, (0, 0, 1), 18.0, 0.25, hu, WALL)


def test_outline_reaches_the_outer_wall_past_a_short_lumen_mask():
    """Iodine in a 24 mm aorta with a 2 mm wall in fat: a mask that stops 1.5 mm inside the bright lumen is
    measured out to the fat (outer wall), not at its own edge."""
    hu, r, affine = disc_plane(12.0, 320.0, wall_mm=2.0)
    mask = np.repeat((r <= 8.5)[:, :, None], 3, axis=2)
    s = section_of(mask, hu, affine)
    assert s.diameter_mm == pytest.approx(24.0, abs=1.0)
    assert s.diameter_pd_mm == pytest.approx(24.0, abs=1.0)


def test_unenhanced_mask_a_voxel_short_reaches_the_fat_but_not_a_neighbour():
    """Unenhanced blood in fat: a mask 1.5 mm short grows to the fat; against soft tissue with no fat within
    reach (a neighbouring organ) the mask's edge stands."""
    hu, r, affine = disc_plane(12.0, 40.0)
    mask = np.repeat((r <= 10.5)[:, :, None], 3, axis=2)
    assert section_of(mask, hu, affine).diameter_mm == pytest.approx(24.0, abs=1.0)
    hu, _, _ = disc_plane(12.0, 40.0, around_hu=40.0)
    assert section_of(mask, hu, affine).diameter_mm == pytest.approx(21.0, abs=1.0)


def test_outline_stops_at_a_bright_neighbour():
    """A bright vessel beside the lumen's edge, past a dimmer gap: the attenuation rises again there, so the
    outline does not grow into it however near the fat lies beyond."""
    hu, r, affine = disc_plane(12.0, 320.0, wall_mm=2.0)
    size = hu.shape[0]
    ax = (np.arange(size) - size / 2 + 0.5) * 0.5
    x, y = np.meshgrid(ax, ax, indexing="ij")
    neighbour = np.hypot(x - 15.5, y) <= 3.0  # 1.5 mm past the outer wall, 6 mm across
    hu[neighbour] = 320.0
    mask = np.repeat((r <= 10.0)[:, :, None], 3, axis=2)
    s = section_of(mask, hu, affine)
    assert s.diameter_mm < 25.0  # not 24 + the neighbour


def test_no_vessel_no_landmarks():
    empty = np.zeros((20, 20, 20), bool)
    line, landmarks, notes = aorta_landmarks(empty, np.eye(4))
    assert line is None and landmarks == {} and notes
    line, landmarks, notes = pulmonary_landmarks(empty, np.eye(4))
    assert line is None and landmarks == {} and notes


@pytest.fixture(scope="module")
def phantom_none():
    ph = make_phantom("small", seed=0, findings="none", truth_points=2**12)
    return ph, measure(ph.volume, ph.labels, lesions=False, regions=False)


def test_landmarks_on_the_phantom_are_its_true_sections(phantom_none):
    ph, result = phantom_none
    c = result.clinical
    landmarks = c["aorta_landmarks"]["landmarks"]
    # the truth labels carry the branch and vertebra masks: the landmarks are placed as TotalSegmentator does
    assert landmarks["distal_ascending_aorta"]["placed_by"] == "brachiocephalic trunk origin"
    assert landmarks["proximal_descending_aorta"]["placed_by"] == "left subclavian artery origin"
    assert landmarks["descending_aorta_t12"]["placed_by"] == "T12 vertebra"
    for key in ("sinotubular_junction", "mid_ascending_aorta", "distal_ascending_aorta",
                "proximal_descending_aorta", "mid_descending_aorta"):
        lm = landmarks[key]
        true_max, _ = section_diameters(ph.truth["vessels"]["aorta"], lm["point_ras"], lm["normal_ras"])
        assert lm["diameter_mm"] == pytest.approx(true_max, abs=1.5), key
    pa = c["pulmonary_artery_landmarks"]["landmarks"]["main_pulmonary_artery"]
    true_max, _ = section_diameters(ph.truth["vessels"]["pulmonary_artery"], pa["point_ras"], pa["normal_ras"])
    assert pa["diameter_mm"] == pytest.approx(true_max, abs=1.5)
    assert c["main_pulmonary_artery_diameter_mm"]["value"] == pytest.approx(26.0, abs=1.5)
    # the ascending aorta is judged from the sinotubular junction up, never on the root in the heart
    asc = c["ascending_aorta_diameter_mm"]
    assert asc["landmark"] in ("sinotubular_junction", "mid_ascending_aorta", "distal_ascending_aorta")
    assert asc["value"] == pytest.approx(32.0, abs=1.5) and asc["abnormal"] is False
    assert c["descending_aorta_diameter_mm"]["abnormal"] is False


def test_a_trace_narrower_than_an_adult_aorta_is_not_measured(phantom_none):
    """The phantom's aorta at half its size (16 mm ascending, 12 mm descending: the width of the superior vena
    cava or a branch, which a trace can follow instead) gives no ascending or descending landmark, and says
    why."""
    ph, _ = phantom_none
    aorta = ph.labels.array == ph.labels.index_of("aorta")
    half = ph.labels.affine.copy()
    half[:3, :3] *= 0.5
    _, landmarks, notes = aorta_landmarks(aorta, half, {})
    assert not {"sinotubular_junction", "mid_ascending_aorta", "distal_ascending_aorta", "mid_aortic_arch",
                "proximal_descending_aorta", "mid_descending_aorta"} & set(landmarks)
    assert any("traced as the ascending aorta is 16 mm across" in n for n in notes), notes
    assert any("traced as the descending aorta is 1" in n for n in notes), notes
    _, full, _ = aorta_landmarks(aorta, ph.labels.affine, {})
    assert {"mid_ascending_aorta", "mid_descending_aorta"} <= set(full)


def test_landmarks_from_the_shape_alone(phantom_none):
    """Without the branch, junction and vertebra masks the landmarks come from the aorta's shape and say so."""
    ph, _ = phantom_none
    aorta = ph.labels.array == ph.labels.index_of("aorta")
    line, landmarks, _ = aorta_landmarks(aorta, ph.labels.affine, {}, ph.volume.array)
    assert {"sinotubular_junction", "mid_ascending_aorta", "distal_ascending_aorta", "mid_aortic_arch",
            "proximal_descending_aorta", "mid_descending_aorta"} <= set(landmarks)
    assert "shape" in landmarks["distal_ascending_aorta"].placed_by
    # the ascending landmarks lie before the arch's top, the descending ones after it, in that order
    order = [landmarks[k].index for k in ("sinotubular_junction", "mid_ascending_aorta", "distal_ascending_aorta",
                                          "mid_aortic_arch", "proximal_descending_aorta", "mid_descending_aorta")]
    assert order == sorted(order)
    top = int(np.argmax(line.points[:, 2]))
    assert landmarks["distal_ascending_aorta"].index <= top <= landmarks["proximal_descending_aorta"].index
    for key in ("mid_ascending_aorta", "mid_descending_aorta"):
        s = landmarks[key].section
        true_max, _ = section_diameters(ph.truth["vessels"]["aorta"], s.point, s.normal)
        assert s.diameter_mm == pytest.approx(true_max, abs=1.5), key
