"""Acceptance of the built-in segmenter on the standard phantom (512 x 512 x 300): Dice at least 0.95 for the
body, each lung and the bones; 0.90 for trachea with main bronchi and the heart; 0.80 for aorta and oesophagus.
Also the contrast and arms-down variants of the small phantom. Run with ``-m slow``."""

import numpy as np
import pytest

from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.segment.builtin import BuiltinSegmenter

pytestmark = pytest.mark.slow

GROUPS = {
    "body": (lambda n: n != "body_extremities" and not n.startswith("humerus"), 0.95),
    "lung_left": (lambda n: n.startswith("lung_") and "lobe" in n and n.endswith("left"), 0.95),
    "lung_right": (lambda n: n.startswith("lung_") and "lobe" in n and n.endswith("right"), 0.95),
    "bones": (lambda n: n.startswith(("vertebrae_", "rib_")) or n == "sternum", 0.95),
    "trachea_and_bronchi": (lambda n: n in ("trachea", "lung_airways"), 0.90),
    "heart": (lambda n: n == "heart", 0.90),
    "aorta": (lambda n: n == "aorta", 0.80),
    "esophagus": (lambda n: n == "esophagus", 0.80),
}


def group(labels, pred):
    return np.isin(labels.array, [i for i, n in labels.names.items() if pred(n)])


def dice(a, b):
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum()) + int(b.sum()))


@pytest.fixture(scope="module")
def standard():
    ph = make_phantom("standard", seed=0, findings="default")
    return ph, BuiltinSegmenter().segment(ph.volume)


@pytest.mark.parametrize("name", list(GROUPS))
def test_standard_phantom_acceptance(standard, name):
    ph, lm = standard
    pred, minimum = GROUPS[name]
    assert dice(group(lm, pred), group(ph.labels, pred)) >= minimum


@pytest.mark.parametrize("lobe", ["lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
                                  "lung_middle_lobe_right", "lung_lower_lobe_right"])
def test_standard_phantom_lobes_from_fissures(standard, lobe):
    ph, lm = standard
    assert lm.meta["lobes"] == "fissures"
    assert dice(lm.mask(lobe), ph.labels.mask(lobe)) >= 0.9


@pytest.mark.parametrize("options, checks", [
    ({"contrast": True}, {"heart": 0.88, "lung_left": 0.95, "bones": 0.8}),
    ({"arms": "down", "findings": "none"}, {"body": 0.97, "heart": 0.9, "bones": 0.85}),
])
def test_small_phantom_variants(options, checks):
    ph = make_phantom("small", seed=2, **options)
    lm = BuiltinSegmenter().segment(ph.volume)
    for name, minimum in checks.items():
        assert dice(group(lm, GROUPS[name][0]), group(ph.labels, GROUPS[name][0])) >= minimum, name
    if options.get("contrast"):
        assert lm.meta["contrast"] is True
    if options.get("arms") == "down":
        arms = ph.labels.mask("body_extremities")
        assert dice(lm.mask("body_extremities"), arms) >= 0.7
