"""Import of an existing label map with its label table: NIfTI/NRRD + JSON/CSV/Slicer colour table, sidecars,
.seg.nrrd through slicerio, name mapping onto TotalSegmentator names, unknown names from 1000."""

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from MedRegionCTLib.anatomy import FIRST_EXTRA_INDEX, LabelTable
from MedRegionCTLib.errors import InputError
from MedRegionCTLib.segment import get_segmenter
from MedRegionCTLib.segment.labels_import import (
    LabelFileSegmenter,
    align_to_volume,
    import_labelmap,
    read_label_table,
    read_name_mapping,
)
from MedRegionCTLib.volume import Volume

IDX = LabelTable.default().index
AFFINE = np.array([[2.0, 0, 0, -20.0], [0, 2.0, 0, -18.0], [0, 0, 3.0, -12.0], [0, 0, 0, 1]])


def _foreign_labels(shape=(20, 18, 10)):
    """A label image in someone else's numbering: 1 Liver, 2 Left Lung, 3 tumour, 7 unnamed."""
    a = np.zeros(shape, dtype=np.uint8)
    a[1:6, 1:6, 1:5] = 1
    a[8:15, 2:12, 2:8] = 2
    a[10:12, 4:6, 4:6] = 3
    a[0, 0, 0] = 7
    return a


def _save(array, path, affine=AFFINE):
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def test_nifti_with_json_table_and_mapping(tmp_path):
    array = _foreign_labels()
    path = _save(array, tmp_path / "seg.nii.gz")
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"0": "Background", "1": "Liver", "2": "Left Lung", "3": "tumour"}))
    labels = import_labelmap(path, table=table, mapping={"Left Lung": "lung_upper_lobe_left"})
    assert labels.names[IDX("liver")] == "liver"  # 'Liver' normalised onto the TotalSegmentator name
    assert (labels.array == IDX("liver")).sum() == (array == 1).sum()
    assert (labels.array == IDX("lung_upper_lobe_left")).sum() == (array == 2).sum()
    assert labels.names[FIRST_EXTRA_INDEX] == "tumour"
    assert labels.meta["unknown_names"] == ["tumour", "label_7"]
    assert labels.meta["unnamed_values"] == [7]
    assert labels.meta["renamed"] == {"Liver": "liver", "Left Lung": "lung_upper_lobe_left"}
    assert np.allclose(labels.affine, AFFINE)


@pytest.mark.parametrize("suffix, text", [
    (".csv", "index,name,color\n1,liver,#ff0000\n2,lung_lower_lobe_left,#00ff00\n3,tumour,#0000ff\n"),
    (".tsv", "label_value\tstructure\n1\tliver\n2\tlung_lower_lobe_left\n3\ttumour\n"),
    (".ctbl", "# Color table file\n0 Background 0 0 0 0\n1 liver 221 130 101 255\n"
              "2 lung_lower_lobe_left 197 165 145 255\n3 tumour 255 0 0 255\n"),
    (".txt", "1 liver 221 130 101 255\n2 lung lower lobe left 197 165 145 255\n3 tumour 255 0 0 255\n"),
    (".json", json.dumps([{"value": 1, "name": "liver"}, {"value": 2, "name": "lung_lower_lobe_left"},
                          {"value": 3, "name": "tumour"}])),
])
def test_sidecar_tables_of_each_format(tmp_path, suffix, text):
    array = _foreign_labels()
    path = _save(array, tmp_path / "case.nii.gz")
    (tmp_path / f"case{suffix}").write_text(text)
    labels = import_labelmap(path)
    assert labels.meta["names_from"] == f"sidecar case{suffix}"
    assert (labels.array == IDX("liver")).sum() == (array == 1).sum()
    assert (labels.array == IDX("lung_lower_lobe_left")).sum() == (array == 2).sum()
    assert "tumour" in labels.meta["unknown_names"]


def test_table_readers_and_their_errors(tmp_path):
    assert read_label_table({"liver": 5, "spleen": 1}) == {5: "liver", 1: "spleen"}
    assert read_label_table(["spleen", "kidney_right"]) == {1: "spleen", 2: "kidney_right"}
    ours = tmp_path / "labels.json"
    ours.write_text(json.dumps({"labels": {"5": "liver"}, "not_found": ["heart"]}))
    assert read_label_table(ours) == {5: "liver"}
    bad = tmp_path / "bad.csv"
    bad.write_text("organ,colour\nliver,red\n")
    with pytest.raises(InputError, match="index and name columns"):
        read_label_table(bad)
    with pytest.raises(InputError, match="does not exist"):
        read_label_table(tmp_path / "missing.json")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"Lunge links": "lung_upper_lobe_left"}))
    assert read_name_mapping(mapping) == {"Lunge links": "lung_upper_lobe_left"}
    mapping.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        read_name_mapping(mapping)


def test_no_table_means_totalsegmentator_indices_or_a_clear_error(tmp_path):
    ts = np.zeros((6, 6, 6), np.uint8)
    ts[1:3, 1:3, 1:3] = 51
    labels = import_labelmap(_save(ts, tmp_path / "ts.nii.gz"))
    assert labels.names == {51: "heart"}
    assert "assumed TotalSegmentator" in labels.meta["names_from"]
    cip = np.zeros((6, 6, 6), np.uint16)
    cip[1:3, 1:3, 1:3] = 512
    with pytest.raises(InputError, match="no label table"):
        import_labelmap(_save(cip, tmp_path / "cip.nii.gz"))


def test_nrrd_label_map_with_table(tmp_path):
    array = _foreign_labels()
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetOrigin((20.0, 18.0, -12.0))  # LPS origin of the RAS affine above
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    path = tmp_path / "seg.nrrd"
    sitk.WriteImage(image, str(path))
    labels = import_labelmap(path, table={1: "liver", 2: "lung_lower_lobe_left", 3: "tumour"})
    assert np.allclose(labels.affine, AFFINE)
    assert (labels.array == IDX("liver")).sum() == (array == 1).sum()
    assert np.array_equal(labels.array == IDX("liver"), array == 1)


def test_slicer_seg_nrrd_with_overlapping_segments(tmp_path):
    import slicerio

    shape = (12, 10, 8)
    ijk_to_lps = np.diag([-2.0, -2.0, 3.0, 1.0])
    ijk_to_lps[:3, 3] = (20.0, 18.0, -12.0)
    seg = slicerio.create_segmentation(shape, ijk_to_lps)
    liver = np.zeros(shape, np.uint8)
    liver[1:6, 1:6, 1:5] = 1
    tumour = np.zeros(shape, np.uint8)
    tumour[4:8, 4:8, 2:4] = 1  # overlaps the liver: slicerio stores it in a second layer
    heart = np.zeros(shape, np.uint8)
    heart[8:11, 1:4, 5:7] = 1
    slicerio.add_segment(seg, liver, {"name": "Liver", "labelValue": 1})
    slicerio.add_segment(seg, tumour, {"name": "liver tumour", "labelValue": 2})
    slicerio.add_segment(seg, heart, {"name": "Heart", "labelValue": 3})
    path = tmp_path / "case.seg.nrrd"
    slicerio.write_segmentation(str(path), seg)
    labels = import_labelmap(path, mapping={"liver tumour": "liver_tumor"})
    assert np.allclose(labels.affine, AFFINE)  # slicerio's IJK-to-LPS turned into our RAS affine
    # the known class keeps the overlapping voxels
    assert np.array_equal(labels.array == IDX("liver"), liver.astype(bool))
    tumour_index = labels.index_of("liver_tumor")
    assert tumour_index >= FIRST_EXTRA_INDEX
    assert np.array_equal(labels.array == tumour_index, tumour.astype(bool) & ~liver.astype(bool))
    assert labels.meta["overlap_voxels_kept_by_earlier_class"] == {"liver_tumor": int((tumour & liver).sum())}
    assert (labels.array == IDX("heart")).sum() == heart.sum()
    # the same segmentation saved under a plain .nrrd name is still recognised by its segment header
    plain = tmp_path / "case.nrrd"
    slicerio.write_segmentation(str(plain), seg)
    again = import_labelmap(plain, mapping={"liver tumour": "liver_tumor"})
    assert again.meta["reader"] == "slicer seg.nrrd" and np.array_equal(again.array, labels.array)


def test_align_to_volume_flips_and_refuses_non_overlapping(tmp_path):
    array = _foreign_labels()
    path = _save(array, tmp_path / "seg.nii.gz")
    labels = import_labelmap(path, table={1: "liver", 2: "spleen", 3: "heart"})
    # the CT stored with i flipped (same world grid, other index order)
    flip = AFFINE.copy()
    flip[0, 0] = -2.0
    flip[0, 3] = -20.0 + 2.0 * (array.shape[0] - 1)
    ct = Volume(np.zeros(array.shape, np.int16), flip)
    moved = align_to_volume(labels, ct)
    assert np.array_equal(moved.array, labels.array[::-1])
    assert moved.meta["resampled_to_ct_grid"] is True
    far = AFFINE.copy()
    far[:3, 3] += 1000.0
    with pytest.raises(InputError, match="does not overlap"):
        align_to_volume(labels, Volume(np.zeros(array.shape, np.int16), far))


def test_label_file_segmenter_through_the_registry(tmp_path):
    array = _foreign_labels()
    path = _save(array, tmp_path / "seg.nii.gz")
    segmenter = get_segmenter(f"labels:{path}", table={1: "liver", 2: "lung_lower_lobe_left", 3: "heart"})
    assert isinstance(segmenter, LabelFileSegmenter)
    ct = Volume(np.zeros(array.shape, np.int16), AFFINE)
    seen = []
    labels = segmenter.segment(ct, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert labels.meta["segmenter"] == "labels"
    assert (labels.array == IDX("heart")).sum() == (array == 3).sum()
    with pytest.raises(InputError, match="does not exist"):
        get_segmenter(f"labels:{tmp_path / 'nope.nii.gz'}")
    with pytest.raises(InputError, match="needs a file"):
        get_segmenter("labels:")
