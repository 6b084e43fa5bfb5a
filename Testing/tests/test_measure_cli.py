"""`medregionct measure` end to end on real files: a phantom CT and its label map written as NIfTI."""

import csv
import json

import pytest

from MedRegionCTLib.cli.main import main
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.volume import write_nifti


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("measure_cli")
    ph = make_phantom("tiny", seed=2, findings="mass:RUL:34,pleural_effusion:left:250")
    write_nifti(ph.volume, folder / "ct.nii.gz")
    write_nifti(ph.labels, folder / "labels.nii.gz")
    return folder, ph


def test_measure_command_writes_json_and_csv(tiny_files, capsys):
    folder, ph = tiny_files
    out = folder / "out"
    code = main(["measure", str(folder / "ct.nii.gz"), "--labels", str(folder / "labels.nii.gz"),
                 "--out", str(out), "--no-progress"])
    assert code == 0
    data = json.loads((out / "measurements.json").read_text())
    assert data["format"] == "medregionct-measurements"
    assert data["structures"]["heart"]["volume_ml"] == pytest.approx(
        ph.truth["structures"]["heart"]["label_map_volume_ml"], abs=0.01)
    assert "lung" in data["regions"]
    assert data["clinical"]["cardiothoracic_ratio"]["source"]
    with open(out / "measurements.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kinds = {r["kind"] for r in rows}
    assert {"structure", "region"} <= kinds
    header = rows[0].keys()
    assert {"volume_ml", "max_diameter_mm", "hu_mean", "centroid_r_mm", "extent_si_mm"} <= set(header)
    heart = next(r for r in rows if r["kind"] == "structure" and r["name"] == "heart")
    assert float(heart["volume_ml"]) == pytest.approx(data["structures"]["heart"]["volume_ml"], abs=1e-3)
    printed = capsys.readouterr().out
    assert "structures" in printed


def test_measure_command_bad_labels_file(tiny_files, capsys):
    folder, _ = tiny_files
    code = main(["measure", str(folder / "ct.nii.gz"), "--labels", str(folder / "missing.nii.gz"),
                 "--out", str(folder / "bad"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "missing.nii.gz" in err and "error" in err
    assert not (folder / "bad" / "measurements.json").exists()
