"""The built-in segmenter on the phantom: the cardiothoracic ratio by its standard definition (within 0.02 of
the truth, cardiomegaly found, not assessed when the field of view cuts the thorax), vessel calibres within
1.5 mm of the phantom's true sections, and the contrast-enhanced phantom (arterial-phase blood) with no blood
labelled bone and the vertebral column found by its shape."""

import numpy as np
import pytest
from scipy import ndimage

from MedRegionCTLib.measure import measure
from MedRegionCTLib.phantom import make_phantom, section_diameters
from MedRegionCTLib.pipeline import analyze
from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.volume import LabelMap, Volume

BONES = ("vertebrae", "rib_", "sternum", "clavicula", "scapula", "humerus")
BLOOD = ("aorta", "pulmonary_artery", "heart", "superior_vena_cava", "brachiocephalic_trunk",
         "subclavian_artery_left", "common_carotid_artery_left")


def of(labels: LabelMap, names) -> np.ndarray:
    return np.isin(labels.array, [i for i, n in labels.names.items() if n.startswith(tuple(names))])


def dice(a, b) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def normal():
    ph = make_phantom("small", seed=0, findings="none", truth_points=2**12)
    labels = BuiltinSegmenter().segment(ph.volume)
    return ph, labels, measure(ph.volume, labels, lesions=False, regions=False)


def test_ctr_by_definition_on_builtin_segmentation(normal):
    ph, _, result = normal
    ctr = result.clinical["cardiothoracic_ratio"]
    assert ctr["value"] == pytest.approx(ph.truth["measures"]["cardiothoracic_ratio"], abs=0.02)
    assert ctr["abnormal"] is False
    assert ctr["heart_width_mm"] == pytest.approx(ph.truth["measures"]["heart_transverse_width_mm"], abs=6)
    # the slices used are stated, in the CT's own index and in millimetres
    assert 0 <= ctr["heart_slice_index"] < ph.volume.shape[2] and "heart_slice_z_mm" in ctr
    assert "maximum transverse cardiac diameter" in ctr["method"]


ON_THE_TUBE = ("sinotubular_junction", "mid_ascending_aorta", "distal_ascending_aorta", "proximal_descending_aorta",
               "mid_descending_aorta")


def assert_true_calibres(ph, clinical):
    """Each aorta landmark on the tube within 1.5 mm of the phantom's true section there, and the reported
    ascending and descending calibres within 1.5 mm of the tube's true diameters, neither judged dilated."""
    landmarks = clinical["aorta_landmarks"]["landmarks"]
    for key in ON_THE_TUBE:
        lm = landmarks[key]
        true = section_diameters(ph.truth["vessels"]["aorta"], lm["point_ras"], lm["normal_ras"])
        assert true is not None, key  # the plane lies on the true aorta
        assert lm["diameter_mm"] == pytest.approx(true[0], abs=1.5), key
    for name, truth in (("ascending_aorta_diameter_mm", "ascending_aorta_diameter_mm"),
                        ("descending_aorta_diameter_mm", "descending_aorta_diameter_mm")):
        assert clinical[name]["value"] == pytest.approx(ph.truth["measures"][truth], abs=1.5), name
        assert clinical[name]["abnormal"] is False


def test_vessels_on_builtin_segmentation_match_true_sections(normal):
    """The built-in aorta (tracked circles on a 2 mm grid, a voxel short of the wall) is measured out to the
    fat where the phantom's aorta really is, and its junction at the calibre waist, not on the heart's top."""
    ph, _, result = normal
    assert_true_calibres(ph, result.clinical)
    stj = result.clinical["aorta_landmarks"]["landmarks"]["sinotubular_junction"]
    assert "waist" in stj["placed_by"]


def test_cardiomegaly_still_found():
    ph = make_phantom("small", seed=3, findings="cardiomegaly:1.4", truth_points=2**12)
    labels = BuiltinSegmenter().segment(ph.volume)
    ctr = measure(ph.volume, labels, lesions=False, regions=False).clinical["cardiothoracic_ratio"]
    assert ctr["value"] == pytest.approx(ph.truth["measures"]["cardiothoracic_ratio"], abs=0.02)
    assert ctr["abnormal"] is True


def test_ctr_not_assessed_when_the_thorax_is_cut(normal):
    """A field of view narrower than the thorax: no ratio, the reason given, and the report says so."""
    ph, labels, _ = normal
    lungs = of(ph.labels, ("lung_",))
    xs = np.flatnonzero(lungs.any(axis=(1, 2)))
    cut = slice(xs[0] + 10, xs[-1] - 10)  # both lungs cut at the sides
    vol = Volume(ph.volume.array[cut].copy(), ph.volume.affine.copy())
    vol.affine[:3, 3] += vol.affine[:3, 0] * cut.start
    lab = LabelMap(ph.labels.array[cut].copy(), vol.affine.copy(), dict(ph.labels.names))
    a = analyze(vol, labelmap=lab)
    ctr = a.measurements.clinical["cardiothoracic_ratio"]
    assert ctr["value"] is None and "cuts the thorax" in ctr["not_assessed"]
    heart = a.report.region("heart").paragraph
    assert "cardiothoracic ratio is not assessed" in heart and "enlarged" not in heart and "normal in size" not in heart


def test_contrast_phantom_option():
    ph = make_phantom("tiny", seed=0, findings="none", contrast=True, truth_points=2**10)
    assert ph.truth["options"]["contrast"] is True
    aorta = ph.labels.array == ph.labels.index_of("aorta")
    blood = float(np.median(ph.volume.array[aorta]))
    assert 250 <= blood <= 400  # arterial phase


@pytest.fixture(scope="module")
def contrast():
    ph = make_phantom("small", seed=0, findings="none", contrast=True, truth_points=2**12)
    return ph, BuiltinSegmenter().segment(ph.volume)


def test_contrast_aorta_has_its_wall(contrast):
    """The aorta's wall stays soft tissue round the iodinated lumen, as on a CT angiogram."""
    ph, _ = contrast
    aorta = ph.labels.array == ph.labels.index_of("aorta")
    depth = ndimage.distance_transform_edt(aorta, sampling=ph.volume.spacing)
    rim, core = aorta & (depth <= min(ph.volume.spacing)), aorta & (depth >= 6.0)  # the outer voxel layer
    assert float(np.median(ph.volume.array[rim])) < 150 < 250 < float(np.median(ph.volume.array[core]))


def test_contrast_blood_is_never_bone(contrast):
    ph, labels = contrast
    assert labels.meta["contrast"] is True
    blood, bone = of(ph.labels, BLOOD), of(labels, BONES)
    assert (blood & bone).sum() <= 0.0005 * blood.sum()  # a few partial-volume voxels at a contact at most
    # the vertebral column by its shape: the spine as a whole and each level
    truth_spine, spine = of(ph.labels, ("vertebrae",)), of(labels, ("vertebrae",))
    assert dice(truth_spine, spine) >= 0.85
    for name in ("vertebrae_T4", "vertebrae_T8", "vertebrae_T12"):
        own = ph.labels.array == ph.labels.index_of(name)
        named = labels.array[own & spine]
        top = labels.names[int(np.bincount(named).argmax())]
        order = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
        assert abs(order.index(top.split("_")[1]) - order.index(name.split("_")[1])) <= 1


def test_contrast_vessels_and_heart(contrast):
    ph, labels = contrast
    result = measure(ph.volume, labels, lesions=False, regions=False)
    c = result.clinical
    assert c["cardiothoracic_ratio"]["value"] == pytest.approx(ph.truth["measures"]["cardiothoracic_ratio"],
                                                               abs=0.02)
    # the built-in mask holds the bright lumen; the calibre is the aorta's outer wall
    assert_true_calibres(ph, c)
