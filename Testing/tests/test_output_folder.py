"""Output folders: checked before any work, written whole or not at all (also on Ctrl-C), replaced as a whole by
--overwrite, never mixed with files MedRegionCT did not write; and a closed stdout pipe ends a command quietly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from MedRegionCTLib.cli.main import main
from MedRegionCTLib.errors import OutputError
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.pipeline.output_folder import MANIFEST, OutputFolder
from MedRegionCTLib.volume import write_nifti


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A tiny phantom CT and its true label map on disk."""
    folder = tmp_path_factory.mktemp("outputs")
    ph = make_phantom("tiny", seed=3, findings="none")
    write_nifti(ph.volume, folder / "ct.nii.gz")
    write_nifti(ph.labels, folder / "truth.nii.gz")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medregionct {command}: error: "), err
    return lines[0]


def report_args(case: Path, out: Path, *extra: str) -> list[str]:
    return ["report", str(case / "ct.nii.gz"), "--out", str(out), "--method", f"labels:{case / 'truth.nii.gz'}",
            "--no-progress", "--no-lesions", "--formats", "json,md", *extra]


def test_overwrite_with_another_schema_leaves_nothing_of_the_earlier_run(case, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(report_args(case, out)) == 0
    assert (out / "regions" / "pleura.nii.gz").is_file() and (out / "report.md").is_file()
    assert main(report_args(case, out, "--schema", "medregion6", "--formats", "json", "--overwrite")) == 0
    files = sorted(snapshot(out))
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(manifest["files"]) == [f for f in files if f != MANIFEST]  # nothing but this run's files
    assert manifest["command"] == "report"
    assert "regions/pleura.nii.gz" not in files and "report.md" not in files  # radgenome10 and md were earlier
    assert "regions/lung_parenchyma.nii.gz" in files
    assert json.loads((out / "regions.json").read_text())["schema"] == "medregion6"
    assert leftovers(tmp_path, "rep") == []
    assert (out.stat().st_mode & 0o755) == 0o755  # the renamed staging folder has ordinary permissions
    capsys.readouterr()


def test_existing_foreign_and_input_folders_are_refused_before_any_work(case, tmp_path, capsys, monkeypatch):
    import MedRegionCTLib.volume as volume_layer

    def no_reading(*args, **kwargs):
        raise AssertionError("the CT was read before the output folder was checked")

    out = tmp_path / "rep"
    assert main(report_args(case, out)) == 0
    before = snapshot(out)
    monkeypatch.setattr(volume_layer, "read_volume", no_reading)
    assert main(report_args(case, out)) == 1
    assert "already holds" in one_error_line(capsys, "report") and snapshot(out) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    assert main(report_args(case, mine, "--overwrite")) == 1
    assert "did not write (notes.txt)" in one_error_line(capsys, "report")
    assert (mine / "notes.txt").read_text() == "my notes" and sorted(os.listdir(mine)) == ["notes.txt"]
    assert main(["segment", str(case / "ct.nii.gz"), "--out", str(case), "--overwrite", "--no-progress"]) == 1
    assert "lies inside --out" in one_error_line(capsys, "segment")
    assert leftovers(tmp_path, "rep") == [] and leftovers(tmp_path, "mine") == []


@pytest.mark.parametrize("command", ["report", "segment", "measure", "demo", "batch"])
def test_unwritable_output_folder_fails_before_any_work(case, tmp_path, capsys, monkeypatch, command):
    import MedRegionCTLib.phantom as phantom_layer
    import MedRegionCTLib.volume as volume_layer

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output folder was checked")

    monkeypatch.setattr(volume_layer, "read_volume", no_work)
    monkeypatch.setattr(phantom_layer, "make_phantom", no_work)
    monkeypatch.setattr("MedRegionCTLib.pipeline.batch.process_case", no_work)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = str(blocker / "out")  # its parent is a file: no user, root included, can create it
    argv = {"report": ["report", str(case / "ct.nii.gz"), "--out", out, "--no-progress"],
            "segment": ["segment", str(case / "ct.nii.gz"), "--out", out, "--no-progress"],
            "measure": ["measure", str(case / "ct.nii.gz"), "--out", out, "--no-progress"],
            "demo": ["demo", "--preset", "tiny", "--out", out, "--quiet"],
            "batch": ["batch", str(case), "--out", out, "--no-progress"]}[command]
    assert main(argv) == 1
    line = one_error_line(capsys, command)
    assert "cannot create" in line or "cannot write" in line
    assert blocker.read_text() == "not a folder"


def test_failure_or_ctrl_c_while_writing_keeps_the_previous_results(case, tmp_path, capsys, monkeypatch):
    import MedRegionCTLib.report.render as render

    out = tmp_path / "rep"
    assert main(report_args(case, out)) == 0
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "to_markdown", interrupted)  # labels, measurements and more are written by then
    assert main(report_args(case, out, "--overwrite")) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err
    assert snapshot(out) == before and leftovers(tmp_path, "rep") == []
    fresh = tmp_path / "fresh"
    assert main(report_args(case, fresh)) == 130  # interrupted first run: nothing at all
    assert not fresh.exists() and leftovers(tmp_path, "fresh") == []
    capsys.readouterr()


def test_real_sigint_leaves_the_previous_or_the_new_complete_folder(case, tmp_path):
    out = tmp_path / "rep"
    assert main(report_args(case, out)) == 0
    before = snapshot(out)
    command = [sys.executable, "-m", "MedRegionCTLib.cli.main", *report_args(case, out, "--overwrite")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # wait until it writes its results
        staging = [p for p in tmp_path.iterdir() if p.name.startswith(".rep.partial-")]
        if staging and (staging[0] / "labels.json").exists():
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    assert proc.returncode in (0, 130)
    after = snapshot(out)
    manifest = json.loads(after[MANIFEST])
    assert sorted(manifest["files"]) == sorted(f for f in after if f != MANIFEST)  # one complete run
    if proc.returncode == 130:
        assert after == before
    assert leftovers(tmp_path, "rep") == []


def test_info_into_a_closed_pipe_exits_quietly(case):
    command = [sys.executable, "-m", "MedRegionCTLib.cli.main", "info", str(case / "ct.nii.gz")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -0`: the reader is gone before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    proc.stderr.close()
    assert err == "" and proc.returncode == 141
    shell = subprocess.run(f"{sys.executable} -m MedRegionCTLib.cli.main info {case / 'ct.nii.gz'} | head -1",
                           shell=True, capture_output=True, text=True, timeout=60)
    assert shell.stderr == "" and shell.stdout.strip() == str(case / "ct.nii.gz")


def test_output_folder_api(tmp_path):
    folder = OutputFolder(tmp_path / "x", command="test")
    with folder as staging:
        (staging / "report.json").write_text("{}")
        assert not (tmp_path / "x").exists()
    assert sorted(os.listdir(tmp_path / "x")) == [MANIFEST, "report.json"]
    with pytest.raises(OutputError, match="pass --overwrite"):
        OutputFolder(tmp_path / "x").check()
    with pytest.raises(RuntimeError), OutputFolder(tmp_path / "x", overwrite=True) as staging:
        (staging / "report.json").write_text('{"new": 1}')
        raise RuntimeError("failed half-way")
    assert (tmp_path / "x" / "report.json").read_text() == "{}" and leftovers(tmp_path, "x") == []
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        OutputFolder(tmp_path / "f").check()


def test_a_folder_without_write_permission_is_a_clear_error(tmp_path, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):  # what mkdtemp meets in a read-only folder (as root the test cannot chmod it)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(OutputError, match=r"cannot write into .* \(Permission denied\)") as info:
        OutputFolder(tmp_path / "x").start()
    assert "\n" not in str(info.value) and not (tmp_path / "x").exists()
