"""The `medregionct` command: help, demo and info, run as a user would (a real subprocess, real files)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from MedRegionCTLib.anatomy import load_schema
from MedRegionCTLib.cli.main import COMMANDS, main
from MedRegionCTLib.report import Report
from MedRegionCTLib.volume import read_labelmap, read_volume

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "MedRegionCTLib.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_help_documents_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout
        sub = run_cli(name, "--help")
        assert sub.returncode == 0 and "usage: medregionct " + name in sub.stdout


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "d"
    result = run_cli("demo", "--out", str(out), "--preset", "tiny", "--seed", "5", "--quiet")
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_demo_writes_ct_labels_and_truth(demo_dir):
    out, stdout = demo_dir
    for name in ("ct.nii.gz", "truth_labels.nii.gz", "truth_labels.json", "truth_findings.nii.gz", "truth.json"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_mode & 0o044, f"{name} must be readable by others like any new file"
    ct = read_volume(out / "ct.nii.gz")
    labels = read_labelmap(out / "truth_labels.nii.gz")
    truth = json.loads((out / "truth.json").read_text())
    names = json.loads((out / "truth_labels.json").read_text())
    assert ct.shape == tuple(truth["grid"]["shape"]) and labels.shape == ct.shape
    assert np.allclose(ct.affine, truth["grid"]["affine"], atol=1e-5)
    assert {int(k): v for k, v in names.items()} == labels.names
    # the written label map holds exactly the voxel counts the truth reports
    vox = labels.voxel_volume_ml
    for s in truth["structures"].values():
        assert np.count_nonzero(labels.array == s["index"]) * vox == pytest.approx(s["label_map_volume_ml"], abs=1e-3)
    assert "finding 1: nodule" in stdout
    assert len(truth["findings"]) == 6


def test_demo_runs_the_whole_chain_to_the_report(demo_dir):
    out, stdout = demo_dir
    for name in ("report.json", "report.md", "report.html", "measurements.json", "measurements.csv",
                 "labels.nii.gz", "labels.json", "regions.json"):
        assert (out / name).is_file(), name
    report = Report.load(out / "report.json")
    assert report.provenance.segmenter == "builtin" and report.provenance.reporter == "measurement"
    assert [r.key for r in report.regions] == load_schema("radgenome10").keys
    lung = report.region("lung")
    assert lung.paragraph in stdout and lung.paragraph in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 10 and "http://" not in html and "https://" not in html


def test_demo_refuses_to_overwrite_without_flag(demo_dir):
    out, _ = demo_dir
    before = (out / "truth.json").read_bytes()
    result = run_cli("demo", "--out", str(out), "--preset", "tiny", "--quiet")
    assert result.returncode == 1
    assert "--overwrite" in result.stderr and result.stderr.count("\n") == 1
    assert (out / "truth.json").read_bytes() == before


def test_demo_bad_findings_is_one_line_error(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "x"), "--preset", "tiny", "--findings", "nodule:XYZ:8", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "unknown lobe" in err and err.count("\n") == 1
    assert not (tmp_path / "x" / "ct.nii.gz").exists()


def test_info_reports_geometry(demo_dir):
    out, _ = demo_dir
    text = run_cli("info", str(out / "ct.nii.gz"))
    assert text.returncode == 0
    assert "LPS" in text.stdout and "right to left" in text.stdout and "inferior to superior" in text.stdout
    data = json.loads(run_cli("info", str(out / "ct.nii.gz"), "--json").stdout)
    assert data["orientation"] == "LPS" and data["spacing_mm"] == [4.0, 4.0, 4.0]
    assert data["value_range"][0] <= -1000 and data["value_range"][1] > 300


def test_info_missing_path_is_clear(tmp_path):
    result = run_cli("info", str(tmp_path / "nope.nii.gz"))
    assert result.returncode == 1
    assert "nope.nii.gz" in result.stderr and result.stderr.count("\n") == 1


def _readme_commands():
    text = (REPO / "README.md").read_text()
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_readme_gives_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert "medregionct demo" in main_job and "pytest" in tests
    assert tests in (REPO / ".ci" / "run").read_text()
    assert "constraints-cpu.txt" in main_job and "constraints-cpu.txt" in tests
    assert "torch==2.13.0" in (REPO / "constraints-cpu.txt").read_text()
