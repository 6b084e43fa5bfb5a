"""Input checks before analysis: voxel spacing limits, sheared grids put on the patient axes, thin slabs segmented
slice by slice and reported within their range, scans that are not chest CTs stopped or reported without lung
and pleura statements. Real files written here (NIfTI, NRRD, DICOM) and the phantom chest CT."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from MedRegionCTLib.errors import GeometryError, NotChestCTError
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.pipeline import analyze, prepare_volume
from MedRegionCTLib.pipeline.scope import chest_ct, scan_scope
from MedRegionCTLib.report.document import LIMITATION_SENTENCE, NEGATIVE_SENTENCE, NOT_ASSESSED
from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.segment.builtin.thin_slab import slice_lungs
from MedRegionCTLib.volume import LabelMap, Volume, orthogonalize, read_volume, resample_like, slab
from MedRegionCTLib.volume.grid_checks import orthogonal_grid, shear


@pytest.fixture(scope="module")
def tiny():
    return make_phantom("tiny", seed=3)


def lung_ids(labels):
    return [i for i, n in labels.names.items() if n.startswith("lung_")]


def crop(ph, k0: int, k1: int):
    """Slices k0..k1-1 of the phantom (k runs inferior -> superior), as a CT and its true labels."""
    affine = ph.volume.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ [0, 0, k0] + affine[:3, 3]
    vol = Volume(ph.volume.array[:, :, k0:k1].copy(), affine)
    return vol, LabelMap(ph.labels.array[:, :, k0:k1].copy(), affine.copy(), ph.labels.names)


def gantry_tilt(vol: Volume, degrees: float) -> Volume:
    """The CT as a gantry-tilted scanner would store it: slice planes tilted about the left-right axis, the
    table (the slice step) moving along the body axis, the grid centred where it was."""
    affine = vol.affine.copy()
    size = np.linalg.norm(affine[:3, 1])
    theta = np.radians(degrees)
    affine[:3, 1] = np.array([0.0, np.sign(affine[1, 1]) * np.cos(theta), np.sin(theta)]) * size
    centre = (np.asarray(vol.shape) - 1) / 2
    affine[:3, 3] += vol.affine[:3, :3] @ centre - affine[:3, :3] @ centre
    return resample_like(vol, SimpleNamespace(shape=vol.shape, affine=affine))


# --- spacing -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing, words", [((1.0, 1.0, 0.0), "above 0"), ((0.7, 0.7, -2.0), "above 0"),
                                            ((1.0, 1.0, 1000.0), "more than the 20 mm")])
def test_bad_spacing_in_a_nifti_header_is_a_geometry_error(tmp_path, spacing, words):
    import nibabel as nib

    array = np.full((20, 20, 12), -1000, np.int16)
    array[5:15, 5:15] = 40
    header = nib.Nifti1Image(array, np.diag([1.0, 1.0, 2.0, 1.0])).header.copy()
    header["pixdim"][1:4] = spacing  # qform geometry: nibabel would silently read a 0 as 1 mm
    header["sform_code"], header["qform_code"] = 0, 1
    path = tmp_path / "ct.nii"
    with open(path, "wb") as fh:
        fh.write(header.binaryblock + b"\0" * 4 + array.tobytes(order="F"))
    with pytest.raises(GeometryError, match=words) as info:
        read_volume(path)
    assert "\n" not in str(info.value) and "fix the spacing" in str(info.value)


def test_zero_spacing_nrrd_and_analyze_of_an_in_memory_volume(tmp_path, tiny):
    header = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 8 8 6\n"
              "space directions: (1,0,0) (0,1,0) (0,0,0)\nkinds: domain domain domain\nendian: little\n"
              "encoding: raw\nspace origin: (0,0,0)\n\n")
    (tmp_path / "ct.nrrd").write_bytes(header.encode() + np.zeros(8 * 8 * 6, "<i2").tobytes())
    with pytest.raises(GeometryError, match="1 x 1 x 0 mm"):
        read_volume(tmp_path / "ct.nrrd", check_ct=False)
    coarse = Volume(tiny.volume.array, tiny.volume.affine @ np.diag([1.0, 1.0, 6.0, 1.0]))  # 24 mm slices
    with pytest.raises(GeometryError, match="24 mm"):
        analyze(coarse, segmenter="builtin")


# --- sheared grids ---------------------------------------------------------------------------------------------
def test_orthogonal_grid_holds_every_voxel_of_a_sheared_grid():
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[1, 2] = 2.5 * np.tan(np.radians(20))  # each slice shifted 0.91 mm anteriorly
    shape = (50, 40, 30)
    found = shear(affine, shape)
    assert found.degrees == pytest.approx(20, abs=1e-6) and found.needs_resampling
    assert found.shift_mm == pytest.approx(29 * 2.5 * np.tan(np.radians(20)))
    new_shape, new_affine = orthogonal_grid(affine, shape)
    assert np.allclose(new_affine[:3, :3], np.diag([0.8, 0.8, 2.5]))  # the patient axes, same voxel sizes
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    world = affine[:3, :3] @ corners + affine[:3, 3:4]
    index = np.linalg.inv(new_affine[:3, :3]) @ (world - new_affine[:3, 3:4])
    assert index.min() > -1e-6 and np.all(index.max(axis=1) < np.asarray(new_shape) - 1 + 1e-6)
    assert not shear(np.diag([0.8, 0.8, 2.5, 1.0]), shape).needs_resampling


def test_gantry_tilted_ct_is_resampled_onto_the_patient_axes_and_the_report_says_so(tiny):
    tilted = gantry_tilt(tiny.volume, 15.0)
    assert shear(tilted.affine, tilted.shape).needs_resampling
    upright = orthogonalize(tilted)
    assert upright.meta["orthogonalized"]["shear_deg"] == pytest.approx(15.0, abs=0.01)
    assert not upright.is_oblique and upright.spacing[2] == pytest.approx(4.0)
    # the anatomy stays where it was: back on the phantom's grid the CT matches within interpolation error
    back = resample_like(upright, tiny.volume)
    inside = (tiny.labels.array > 0)[:, :, 20:75]  # away from the ends the tilted scan did not reach
    assert np.median(np.abs(back.array[:, :, 20:75].astype(float) - tiny.volume.array[:, :, 20:75])[inside]) < 40
    report = analyze(tilted, segmenter="builtin").report
    assert any("sheared by 15.0 degrees" in s for s in report.provenance.scope["limitations"])
    truth = {(f["kind"], f.get("side")) for f in tiny.truth["findings"]}
    for f in report.findings:  # nothing the shear invented (a sheared 9 mm nodule read as a mass, a displaced trachea)
        if f.kind in ("nodule", "mass", "pleural_effusion"):
            assert (f.kind, f.side) in truth, f
        assert f.kind != "tracheal_deviation"
    mass = [f for f in report.findings if f.kind == "mass"]
    assert len(mass) == 1 and abs(mass[0].size["max_diameter_mm"] - 38.0) < 4.0


def test_prepare_volume_leaves_an_orthogonal_ct_untouched(tiny):
    assert prepare_volume(tiny.volume) is tiny.volume


# --- thin slabs ----------------------------------------------------------------------------------------------
def test_slab_coverage():
    vol = Volume(np.zeros((8, 8, 2), np.int16), np.diag([0.6, 0.6, 1.0, 1.0]))
    assert slab(vol).thin and slab(vol).slices == 2 and slab(vol).extent_mm == 2.0
    assert slab(Volume(np.zeros((8, 8, 12), np.int16), np.diag([0.6, 0.6, 2.0, 1.0]))).thin  # 24 mm
    assert not slab(Volume(np.zeros((8, 8, 12), np.int16), np.diag([0.6, 0.6, 3.0, 1.0]))).thin
    assert slab(Volume(np.zeros((8, 8, 40), np.int16), np.diag([0.6, 0.6, 0.5, 1.0]))).thin  # 20 mm


def test_slice_lungs_matches_the_phantom_lungs_slice_by_slice(tiny):
    params = BuiltinSegmenter().params
    vol, truth = crop(tiny, 45, 47)
    lm = BuiltinSegmenter().segment(vol)
    assert lm.meta["chest_ct"] is True and "thin slab" in lm.meta["notes"][0]
    assert set(lm.names.values()) == {"body_trunc", "lung_left", "lung_right"}
    for side in ("left", "right"):
        ours = lm.mask(f"lung_{side}")
        ref = np.isin(truth.array, [i for i, n in truth.names.items() if n.startswith("lung_") and n.endswith(side)])
        for k in range(2):  # found on both slices, on the right side
            a, b = ours[:, :, k], ref[:, :, k]
            assert 2.0 * (a & b).sum() / (a.sum() + b.sum()) > 0.9
    # one slice straight through slice_lungs: the canonical grid puts the patient's right at high axis 0
    hu = np.asarray(vol.array[::-1, ::-1, 0], np.float32)  # LPS -> RAS
    body, right, left = slice_lungs(hu, vol.spacing[:2], params)
    assert right.any() and left.any() and not (right & left).any()
    assert np.argwhere(right)[:, 0].mean() > np.argwhere(left)[:, 0].mean()
    assert (right | left).sum() < body.sum()


def test_thin_slab_report_keeps_to_the_slab(tiny):
    vol, _ = crop(tiny, 45, 47)
    analysis = analyze(vol, segmenter="builtin")
    scope = analysis.report.provenance.scope
    assert scope["chest_ct"] is True and scope["coverage"] == {
        "slices": 2, "extent_mm": 8.0, "z_range_mm": scope["coverage"]["z_range_mm"], "thin_slab": True}
    assert any(s.startswith("Thin slab: 2 axial slice(s) covering 8.0 mm") for s in scope["limitations"])
    lung = analysis.report.region("lung")
    assert "appears on 2 of 2 slice(s)" in lung.paragraph
    for region in analysis.report.regions:
        assert all(s.kind != NEGATIVE_SENTENCE for s in region.sentences)
        assert "No " not in region.paragraph  # no absence is stated on 8 mm of chest
        assert region.sentences[-1].kind == LIMITATION_SENTENCE
        for f in region.findings:
            assert any("2-slice slab" in p for p in f.provenance)


# --- not a chest CT ------------------------------------------------------------------------------------------
def test_abdomen_without_lungs_stops_unless_allowed(tiny):
    vol, truth = crop(tiny, 0, 11)  # the 44 mm below the lung bases
    with pytest.raises(NotChestCTError, match="--allow-non-chest") as info:
        analyze(vol, segmenter="builtin")
    assert "\n" not in str(info.value)
    analysis = analyze(vol, segmenter="builtin", allow_non_chest=True)
    scope = analysis.report.provenance.scope
    assert scope["chest_ct"] is False and scope["limitations"][0].startswith("Not a chest CT")
    assert any("not look like a chest CT" in n for n in scope["notes"])  # the segmenter's own notes
    for key in ("lung", "pleura"):
        region = analysis.report.region(key)
        assert region.status == NOT_ASSESSED and region.findings == []
        assert region.paragraph.startswith("Not assessed: the scan does not look like a chest CT")
    assert not any("lung" in s.lower() or "pleura" in s.lower() for s in analysis.report.impression)
    six = analyze(vol, segmenter="builtin", allow_non_chest=True, schema="medregion6").report
    assert six.region("lung_parenchyma").status == NOT_ASSESSED


def test_chest_verdict_of_a_label_map_without_the_segmenters_flag(tiny):
    assert chest_ct(tiny.labels)[0] is True
    _, below = crop(tiny, 0, 11)
    verdict, reason = chest_ct(below)
    assert verdict is False and reason == "no lungs in the field of view"
    scope = scan_scope(below)
    assert scope["limitations"] == ["Not a chest CT: no lungs in the field of view, so the lungs and pleura are "
                                    "not assessed."]
    flagged = LabelMap(tiny.labels.array, tiny.labels.affine, tiny.labels.names, {"chest_ct": False})
    assert chest_ct(flagged)[0] is False  # the segmenter's verdict wins


def test_batch_fails_a_non_chest_case_with_its_reason_and_goes_on(tiny, tmp_path):
    from MedRegionCTLib.pipeline.batch import read_summary, run_batch
    from MedRegionCTLib.volume import write_nifti

    cases = tmp_path / "cts"
    cases.mkdir()
    write_nifti(crop(tiny, 0, 11)[0], cases / "abdomen.nii.gz")
    write_nifti(crop(tiny, 45, 47)[0], cases / "slab.nii.gz")
    result = run_batch(cases, tmp_path / "out", formats=("json",), lesions=False, segmenter="builtin")
    status = {c.name: c for c in result.cases}
    assert status["slab"].status == "done" and status["abdomen"].status == "failed"
    assert "does not look like a chest CT" in status["abdomen"].error and "\n" not in status["abdomen"].error
    assert not (tmp_path / "out" / "abdomen").exists()
    assert read_summary(tmp_path / "out")["counts"] == {"done": 1, "skipped": 0, "failed": 1}
    again = run_batch(cases, tmp_path / "out", formats=("json",), lesions=False, segmenter="builtin",
                      allow_non_chest=True)
    assert {c.name: c.status for c in again.cases} == {"slab": "skipped", "abdomen": "done"}
    assert (tmp_path / "out" / "abdomen" / "report.json").is_file()
