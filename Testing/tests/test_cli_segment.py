"""`medregionct segment`: a synthetic CT plus a label file (labels: method) -> labels + region files."""

import json

import nibabel as nib
import numpy as np
import pytest

from MedRegionCTLib.anatomy import LabelTable
from MedRegionCTLib.cli.main import COMMANDS, main

IDX = LabelTable.default().index
AFFINE = np.array([[-3.0, 0, 0, 90.0], [0, -3.0, 0, 80.0], [0, 0, 4.0, -60.0], [0, 0, 0, 1]])  # LPS grid


@pytest.fixture
def case(tmp_path):
    """A small CT (air, body, two lungs, heart, spine) and a foreign-numbered label file with a CSV table."""
    shape = (60, 54, 30)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    x, y, z = np.moveaxis(ijk @ AFFINE[:3, :3].T + AFFINE[:3, 3], -1, 0)
    x, y, z = x - 1.5, y + 1.5, z - 2.0  # centre the anatomy on the grid (RAS mm)
    ct = np.full(shape, -1000, np.int16)
    ct[(x / 85) ** 2 + (y / 75) ** 2 <= 1] = 30
    labels = np.zeros(shape, np.uint8)
    right = ((x - 42) / 28) ** 2 + (y / 45) ** 2 + (z / 50) ** 2 <= 1
    left = ((x + 42) / 28) ** 2 + (y / 45) ** 2 + (z / 50) ** 2 <= 1
    heart = ((x + 4) / 12) ** 2 + ((y - 12) / 12) ** 2 + ((z + 15) / 15) ** 2 <= 1
    spine = (x ** 2 + (y + 42) ** 2 <= 81) & (np.abs(z) < 58)
    for value, mask, hu in ((1, right, -850), (2, left, -850), (3, heart, 40), (4, spine, 300)):
        labels[mask] = value
        ct[mask] = hu
    ct_path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct, AFFINE), str(ct_path))
    label_path = tmp_path / "mine.nii.gz"
    nib.save(nib.Nifti1Image(labels, AFFINE), str(label_path))
    (tmp_path / "mine.csv").write_text("index,name\n1,right lung\n2,left lung\n3,Heart\n4,vertebrae_T7\n")
    (tmp_path / "map.json").write_text(json.dumps({"right lung": "lung_right", "left lung": "lung_left"}))
    return tmp_path, ct_path, label_path, labels


def test_segment_is_registered():
    assert COMMANDS["segment"] == "segment"


def test_segment_with_label_file_writes_labels_and_regions(case, capsys):
    tmp, ct_path, label_path, labels = case
    out = tmp / "out"
    rc = main(["segment", str(ct_path), "--out", str(out), "--method", f"labels:{label_path}",
               "--map", str(tmp / "map.json"), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "mediastinum" in text and "rule between_lungs" in text

    written = nib.load(str(out / "labels.nii.gz"))
    assert np.allclose(written.affine, AFFINE)
    array = np.asanyarray(written.dataobj)
    assert (array == IDX("heart")).sum() == (labels == 3).sum()
    assert (array == IDX("vertebrae_T7")).sum() == (labels == 4).sum()
    info = json.loads((out / "labels.json").read_text())
    assert info["labels"][str(IDX("heart"))] == "heart"
    # whole-lung names are no TotalSegmentator classes; the project table gives them a block of their own
    assert info["unknown_names"] == []
    assert info["labels"][str(IDX("lung_left"))] == "lung_left" and IDX("lung_right") == IDX("lung_left") + 1
    assert info["chest_ct"] is True and info["coverage"]["thin_slab"] is False
    assert info["method"] == f"labels:{label_path}"
    assert "not_found" in info

    regions = json.loads((out / "regions.json").read_text())
    assert regions["schema"] == "radgenome10"
    files = sorted(p.name for p in (out / "regions").iterdir())
    assert files == ["bone.nii.gz", "heart.nii.gz", "lung.nii.gz", "mediastinum.nii.gz", "pleura.nii.gz"]
    lung = np.asanyarray(nib.load(str(out / "regions" / "lung.nii.gz")).dataobj)
    assert lung.dtype == np.uint8 and set(np.unique(lung)) == {0, 1}
    assert lung.sum() == np.isin(labels, [1, 2]).sum()
    heart = regions["regions"]["heart"]
    assert heart["file"] == "regions/heart.nii.gz" and heart["terminology"]["code"] == "80891009"
    assert heart["volume_ml"] == pytest.approx((labels == 3).sum() * 36 / 1000, rel=1e-6)
    assert regions["regions"]["breast"]["file"] is None
    assert "trachea and bronchie" in regions["missing_expected_regions"]
    mediastinum = np.asanyarray(nib.load(str(out / "regions" / "mediastinum.nii.gz")).dataobj).astype(bool)
    assert mediastinum.any() and not (mediastinum & (labels > 0)).any()


def test_segment_output_reads_back_as_labels_and_medregion6(case, capsys):
    tmp, ct_path, label_path, labels = case
    first, second = tmp / "first", tmp / "second"
    assert main(["segment", str(ct_path), "--out", str(first), "--method", f"labels:{label_path}",
                 "--map", str(tmp / "map.json"), "--no-progress"]) == 0
    # our own labels.nii.gz + labels.json are a valid labels: input (round trip)
    assert main(["segment", str(ct_path), "--out", str(second), "--schema", "medregion6", "--json",
                 "--method", f"labels:{first / 'labels.nii.gz'}", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["schema"] == "medregion6"
    assert summary["regions"]["heart_great_vessels"]["file"] == "regions/heart_great_vessels.nii.gz"
    assert summary["labels"]["labels"] == json.loads((first / "labels.json").read_text())["labels"]
    a = np.asanyarray(nib.load(str(first / "labels.nii.gz")).dataobj)
    b = np.asanyarray(nib.load(str(second / "labels.nii.gz")).dataobj)
    assert np.array_equal(a, b)


def test_segment_errors_are_one_line(case, capsys):
    tmp, ct_path, label_path, _ = case
    assert main(["segment", str(ct_path), "--out", str(tmp / "o"), "--method", "magic", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("medregionct segment: error: unknown segmentation method 'magic'")
    assert len(err.splitlines()) == 1
    assert main(["segment", str(ct_path), "--out", str(tmp / "o"), "--method", "totalsegmentator",
                 "--label-table", "x.csv", "--no-progress"]) == 1
    assert "--label-table/--map apply to --method labels:FILE only" in capsys.readouterr().err
    assert main(["segment", str(ct_path), "--out", str(tmp / "o"), "--method", f"labels:{label_path}",
                 "--schema", "nope", "--no-progress"]) == 1
    assert "unknown region schema" in capsys.readouterr().err
    assert not (tmp / "o").exists()  # nothing written when the command fails before segmenting
