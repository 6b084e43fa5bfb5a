"""The synthetic chest phantom: determinism, anatomy in the right places, realistic HU, exact truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MedRegionCTLib.errors import CancelledError, InputError
from MedRegionCTLib.phantom import PRESETS, make_phantom, parse_findings
from MedRegionCTLib.phantom.chest import Structure
from MedRegionCTLib.phantom.render import Grid, integrate_volumes, render
from MedRegionCTLib.phantom.shapes import Box, Ellipsoid, Sphere, Tube


@pytest.fixture(scope="module")
def tiny():
    return make_phantom("tiny", seed=3, findings="default")


@pytest.fixture(scope="module")
def tiny_clean():
    return make_phantom("tiny", seed=3, findings="none")


def centroid_ras(labels, name):
    idx = np.argwhere(labels.mask(name))
    assert idx.size, f"{name} missing"
    return idx.mean(axis=0) @ labels.affine[:3, :3].T + labels.affine[:3, 3]


def test_tiny_preset_is_at_most_96_cubed(tiny):
    assert np.prod(tiny.volume.shape) <= 96**3
    assert tiny.volume.array.dtype == np.int16
    assert tiny.labels.shape == tiny.volume.shape
    assert tiny.volume.orientation == "LPS"


def test_standard_preset_matches_a_real_chest_ct_grid():
    shape, spacing = PRESETS["standard"]["shape"], PRESETS["standard"]["spacing"]
    assert shape == (512, 512, 300)
    assert 0.7 <= spacing[0] <= 0.8 and 1.0 <= spacing[2] <= 1.25


def test_same_seed_same_ct_other_seed_other_ct(tiny):
    again = make_phantom("tiny", seed=3, findings="default")
    assert np.array_equal(again.volume.array, tiny.volume.array)
    assert np.array_equal(again.labels.array, tiny.labels.array)
    other = make_phantom("tiny", seed=4, findings="default")
    assert not np.array_equal(other.volume.array, tiny.volume.array)


def test_airway_is_open_from_trachea_into_both_main_bronchi():
    from scipy import ndimage

    ph = make_phantom("small", seed=0, findings="none", truth_points=2**12)
    air = ph.volume.array < -500
    airway = ph.labels.mask("trachea") | ph.labels.mask("lung_airways")
    components, _ = ndimage.label(air & airway)
    top = np.argwhere(ph.labels.mask("trachea"))[:, 2].max()
    trachea_top = set(np.unique(components[:, :, top - 2])) - {0}
    reach = np.isin(components, list(trachea_top)) & ph.labels.mask("lung_airways")
    sides = ph.volume.index_to_world(np.argwhere(reach))[:, 0]
    assert (sides > 20).any() and (sides < -20).any(), "air runs from the trachea into both main bronchi"


def test_organs_lie_on_the_correct_side(tiny):
    lab = tiny.labels
    for name in ("lung_upper_lobe_left", "lung_lower_lobe_left", "spleen", "stomach", "rib_left_5"):
        assert centroid_ras(lab, name)[0] < -10, name
    for name in ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "liver",
                 "rib_right_5", "superior_vena_cava"):
        assert centroid_ras(lab, name)[0] > 10, name
    heart, trachea, liver = (centroid_ras(lab, n) for n in ("heart", "trachea", "liver"))
    assert heart[0] < 0, "the heart sits left of the midline"
    assert trachea[2] > heart[2] > liver[2], "trachea above heart above liver"
    assert centroid_ras(lab, "vertebrae_T5")[1] < heart[1], "spine posterior to the heart"
    assert centroid_ras(lab, "sternum")[1] > heart[1], "sternum anterior to the heart"
    upper, lower = centroid_ras(lab, "lung_upper_lobe_right"), centroid_ras(lab, "lung_lower_lobe_right")
    assert upper[2] > lower[2]


def test_label_names_are_totalsegmentator_classes(tiny):
    from MedRegionCTLib.data import totalsegmentator_class_indices

    table = totalsegmentator_class_indices()
    for index, name in tiny.labels.present().items():
        assert table[name] == index
    wanted = {"body_trunc", "trachea", "lung_airways", "heart", "aorta", "pulmonary_artery", "esophagus",
              "thyroid_gland", "sternum", "liver", "vertebrae_T1", "rib_left_1", "rib_right_12", "spinal_cord"}
    assert wanted <= set(tiny.labels.present().values())


@pytest.mark.parametrize("name, lo, hi", [
    ("lung_lower_lobe_left", -920, -780), ("liver", 40, 75), ("heart", 25, 60), ("autochthon_left", 35, 65),
    ("vertebrae_T8", 180, 600), ("thyroid_gland", 70, 130),
])
def test_tissues_have_realistic_median_hu(tiny_clean, name, lo, hi):
    values = tiny_clean.volume.array[tiny_clean.labels.mask(name)]
    assert lo <= np.median(values) <= hi


def test_air_outside_body_and_noise_level(tiny_clean):
    ct, lab = tiny_clean.volume.array, tiny_clean.labels.array
    assert np.median(ct[:3, :3, :]) < -980  # corner of the field of view
    liver = tiny_clean.labels.mask("liver")
    from scipy import ndimage

    core = ndimage.binary_erosion(liver, iterations=2)
    assert 3.0 < ct[core].std() < 12.0  # tiny preset noise is 6 HU (plus partial volume at vessel edges)
    assert lab.max() > 0


def test_partial_volume_edges_blend_tissues(tiny_clean):
    # voxels on the lung / chest-wall boundary take intermediate values
    from scipy import ndimage

    lung = np.isin(tiny_clean.labels.array, [tiny_clean.labels.index_of(n) for n in
                                             ("lung_upper_lobe_left", "lung_lower_lobe_left")])
    edge = lung & ~ndimage.binary_erosion(lung)
    values = tiny_clean.volume.array[edge]
    assert np.mean((values > -750) & (values < -150)) > 0.1


def test_truth_volumes_match_label_map_at_tiny_resolution(tiny):
    for name, s in tiny.truth["structures"].items():
        if s["volume_ml"] >= 200:  # large organs: 4 mm voxels still give a close count
            assert abs(s["label_map_volume_ml"] - s["volume_ml"]) / s["volume_ml"] < 0.03, name


def test_integrated_volume_of_known_shapes_is_exact():
    grid = Grid((60, 60, 60), np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.eye(4) + np.array(
        [[0, 0, 0, 30], [0, 0, 0, 30], [0, 0, 0, -30], [0, 0, 0, 0]]))
    index = {"liver": 5, "heart": 51, "aorta": 52}
    sphere = Sphere((0, 0, 0), 12.0)
    structures = [Structure(Box((-20, -20, -20), (20, 20, 20)), 50.0, "liver"),
                  Structure(sphere, 40.0, "heart"),
                  Structure(Tube([(-25, 0, 0), (25, 0, 0)], 3.0), 300.0, "aorta")]
    volumes, _ = integrate_volumes(structures, index, grid, n_points=2**16)
    sphere_ml = 4 / 3 * np.pi * 12**3 / 1000
    cyl_in_sphere = np.pi * 9 * 2 * np.sqrt(144 - 9) / 1000  # part of the tube inside the sphere (approx.)
    assert volumes["heart"] == pytest.approx(sphere_ml - cyl_in_sphere, rel=0.01)
    # box minus sphere minus the tube part outside the sphere and inside the box
    tube_in_box = np.pi * 9 * 40 / 1000
    expected_liver = 64.0 - sphere_ml - (tube_in_box - cyl_in_sphere)
    assert volumes["liver"] == pytest.approx(expected_liver, rel=0.01)
    _, labels, _ = render(structures, grid, index)
    assert np.count_nonzero(labels == 51) / 1000 == pytest.approx(volumes["heart"], rel=0.03)


def test_ellipsoid_extent_along_axes():
    from MedRegionCTLib.phantom.shapes import rotation_matrix

    e = Ellipsoid((0, 0, 0), (30, 10, 20), rotation_matrix(z_deg=90))
    assert e.extent_along(0) == pytest.approx(20.0)
    assert e.extent_along(1) == pytest.approx(60.0)
    assert e.exact_volume_ml() == pytest.approx(4 / 3 * np.pi * 6000 / 1000)


def test_planted_findings_have_exact_truth(tiny):
    findings = {f["id"]: f for f in tiny.truth["findings"]}
    kinds = sorted(f["kind"] for f in findings.values())
    assert kinds == sorted(["nodule", "nodule", "mass", "pleural_effusion", "emphysema", "dilated_aorta"])
    for f in findings.values():
        if f["kind"] == "nodule":
            assert f["volume_ml"] == pytest.approx(f["exact_volume_ml"], rel=0.02)
            center_ijk = np.rint(tiny.volume.world_to_index(f["center_ras"])).astype(int)
            assert tiny.labels.names[int(tiny.labels.array[tuple(center_ijk)])] == "lung_nodules"
            assert f["lobe"].endswith(f["side"])
        if f["kind"] == "pleural_effusion":
            assert f["volume_ml"] == pytest.approx(f["requested_volume_ml"], rel=0.05)
            mask = tiny.findings_map.array == f["id"]
            assert centroid_ras(tiny.findings_map.__class__(mask.astype(np.uint8), tiny.labels.affine,
                                                            {1: "e"}), "e")[0] > 0, "right effusion on the right"
        if f["kind"] == "emphysema":
            lungs = [n for n in tiny.truth["structures"] if "lobe" in n]
            lung_ct = tiny.volume.array[np.isin(tiny.labels.array, [tiny.labels.index_of(n) for n in lungs])]
            laa = 100 * np.mean(lung_ct < -950)
            assert laa > 0.4 * f["percent_of_lungs"], "the holes show as low-attenuation areas"
    assert tiny.truth["measures"]["ascending_aorta_diameter_mm"] == 46.0
    json.dumps(tiny.truth)  # the truth is plain JSON


def test_finding_free_phantom_has_no_lesions(tiny_clean):
    assert tiny_clean.truth["findings"] == []
    assert "lung_nodules" not in tiny_clean.labels.present().values()
    assert not tiny_clean.findings_map.array.any()
    lobes = [n for n in tiny_clean.labels.present().values() if "lobe" in n]
    lungs = np.isin(tiny_clean.labels.array, [tiny_clean.labels.index_of(n) for n in lobes])
    assert np.mean(tiny_clean.volume.array[lungs] < -950) < 0.01


def test_cardiomegaly_raises_heart_size_and_ratio():
    normal = make_phantom("tiny", seed=2, findings="none").truth["measures"]
    big = make_phantom("tiny", seed=2, findings="cardiomegaly:1.3,pericardial_effusion:8")
    m = big.truth["measures"]
    assert m["heart_volume_ml"] > 1.8 * normal["heart_volume_ml"]
    assert m["cardiothoracic_ratio"] > 0.5 > normal["cardiothoracic_ratio"]
    peri = [f for f in big.truth["findings"] if f["kind"] == "pericardial_effusion"][0]
    assert peri["volume_ml"] > 50
    assert "pericardial_effusion" in big.labels.present().values()


@pytest.mark.parametrize("spec, fragment", [
    ("tumour:RUL:8", "unknown finding kind"),
    ("nodule:RXL:8", "unknown lobe"),
    ("nodule:RUL:abc", "not a number"),
    ("mass:RUL:12", "30 mm or more"),
    ("pleural_effusion:up:100", "side"),
    ("pleural_effusion:left:9000", "does not fit"),
    ("cardiomegaly:3", "at most 1.6"),
])
def test_bad_findings_spec_gives_one_line_error(spec, fragment):
    with pytest.raises(InputError) as err:
        make_phantom("tiny", findings=spec)
    message = str(err.value)
    assert fragment in message and "\n" not in message


def test_parse_findings_presets():
    assert parse_findings("none") == []
    assert {s.kind for s in parse_findings("all")} >= {"nodule", "mass", "pleural_effusion", "pericardial_effusion",
                                                       "cardiomegaly", "dilated_aorta", "emphysema", "consolidation"}


def test_unknown_preset_and_cancel():
    with pytest.raises(InputError, match="unknown phantom preset"):
        make_phantom("huge")
    with pytest.raises(CancelledError):
        make_phantom("tiny", findings="none", cancel=lambda: True)


def test_progress_is_reported_and_reaches_one():
    seen = []
    make_phantom("tiny", seed=1, findings="none", progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-9 for a, b in zip(seen, seen[1:]))


def test_arms_down_and_breasts_options():
    ph = make_phantom("tiny", seed=0, findings="none", arms="down", breasts=True)
    present = set(ph.labels.present().values())
    assert {"breast", "body_extremities"} <= present
    arms = ph.labels.mask("body_extremities")
    assert not (arms & ph.labels.mask("body_trunc")).any()
    left = arms.copy()
    left[: arms.shape[0] // 2] = False  # LPS: high i is the patient's left
    assert left.any() and (arms & ~left).any(), "an arm on each side"
    assert centroid_ras(ph.labels, "breast")[1] > centroid_ras(ph.labels, "heart")[1], "breasts lie anterior"


@pytest.mark.slow
def test_standard_phantom_label_volumes_within_two_percent():
    ph = make_phantom("standard", seed=0, findings="all")
    for name, s in ph.truth["structures"].items():
        if s["volume_ml"] >= 5.0:
            assert abs(s["label_map_volume_ml"] - s["volume_ml"]) / s["volume_ml"] < 0.02, name
