"""The built-in segmenter on real CTs (needs MEDREGIONCT_REALDATA pointing at the shared data folder):
05 whole-lung Dice >= 0.95 and the airway found; 09 adult volumes and correct sides; 03 (abdomen and pelvis)
reported as not a chest CT without invented chest organs."""


import numpy as np
import pytest
from realdata_paths import require

from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.volume import read_labelmap, read_volume

pytestmark = pytest.mark.realdata

ROOT = require("realct")


def lobes(lm, side=""):
    return np.isin(lm.array, [i for i, n in lm.names.items()
                              if n.startswith("lung_") and "lobe" in n and n.endswith(side)])


def x_of(mask, affine):
    return float((np.argwhere(mask).mean(axis=0) @ affine[:3, :3].T + affine[:3, 3])[0])


def test_05_whole_lung_dice_and_airway():
    lm = BuiltinSegmenter().segment(read_volume(ROOT / "05_cip_copdgene_whole_chest_lowres/ct_DERIVED.nii.gz"))
    ref = read_labelmap(ROOT / "05_cip_copdgene_whole_chest_lowres/whole_lung_DERIVED.nii.gz").array > 0
    ours = lobes(lm)
    assert 2.0 * (ours & ref).sum() / (ours.sum() + ref.sum()) >= 0.95
    assert lm.mask("trachea").sum() * lm.voxel_volume_ml > 5.0


def test_09_full_resolution_thorax_is_plausible():
    lm = BuiltinSegmenter().segment(read_volume(ROOT / "09_itkelastix_thorax_ct_fullres/ct_DERIVED_from_dicom.nii.gz"))
    ml = lm.voxel_volume_ml
    left, right = lobes(lm, "left"), lobes(lm, "right")
    assert 1000 < left.sum() * ml < 4500 and 1200 < right.sum() * ml < 5000
    assert x_of(left, lm.affine) < x_of(right, lm.affine)
    heart = lm.mask("heart")
    assert 300 < heart.sum() * ml < 1300
    assert x_of(heart, lm.affine) < (x_of(left, lm.affine) + x_of(right, lm.affine)) / 2
    airway = lm.mask("trachea") | lm.mask("lung_airways")
    assert 20 < airway.sum() * ml < 150
    bones = np.isin(lm.array, [i for i, n in lm.names.items() if n.startswith(("vertebrae_", "rib_", "sternum"))])
    assert 400 < bones.sum() * ml < 3000


def test_03_abdomen_is_not_made_into_a_chest():
    lm = BuiltinSegmenter().segment(read_volume(ROOT / "03_totalseg_example_ct_abdomen_pelvis_NONCHEST/ct.nii.gz"))
    assert lm.meta["chest_ct"] is False
    assert any("not look like a chest CT" in note for note in lm.meta["notes"])
    for name in ("heart", "trachea", "lung_airways", "aorta", "esophagus", "mediastinum", "thyroid_gland"):
        assert not lm.mask(name).any()
        assert name in lm.meta["not_found"]
