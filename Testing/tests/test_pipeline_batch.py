"""medregionct batch / run_batch: every good case finished, the corrupt one listed, resumable."""

from __future__ import annotations

import json

from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.pipeline.batch import read_summary, run_batch
from MedRegionCTLib.report import Report
from MedRegionCTLib.volume import write_nifti


def test_batch_finishes_the_good_cases_lists_the_corrupt_one_and_resumes(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for seed in (1, 2):
        write_nifti(make_phantom("tiny", seed=seed, findings="none").volume, inputs / f"case{seed}.nii.gz")
    (inputs / "broken.nii.gz").write_bytes(b"\x1f\x8b this is not a gzip stream")
    out = tmp_path / "out"
    result = run_batch(inputs, out)
    status = {c.name: c.status for c in result.cases}
    assert status == {"broken": "failed", "case1": "done", "case2": "done"}
    assert "broken.nii.gz" in result.failed[0].error or "gzip" in result.failed[0].error.lower()
    for name in ("case1", "case2"):
        for f in ("report.json", "report.md", "report.html", "measurements.json", "labels.nii.gz"):
            assert (out / name / f).is_file(), (name, f)
        assert Report.load(out / name / "report.json").region("lung").paragraph
    assert not (out / "broken").exists() and not list(out.glob(".*partial"))
    summary = read_summary(out)
    assert summary["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert result.failed[0].attempts == 2  # tried once more at the end of the run, then listed
    failures = json.loads((out / "failures.json").read_text(encoding="utf-8"))["failures"]
    assert [(f["case"], f["error"]) for f in failures] == [("broken", result.failed[0].error)]

    before = (out / "case1" / "report.json").stat().st_mtime_ns
    again = run_batch(inputs, out)
    assert {c.name: c.status for c in again.cases} == {"case1": "skipped", "case2": "skipped", "broken": "failed"}
    assert (out / "case1" / "report.json").stat().st_mtime_ns == before
