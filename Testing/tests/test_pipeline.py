"""pipeline.analyze and run_batch: segment -> measure -> report on real phantom CTs and real files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MedRegionCTLib.errors import CancelledError, InputError
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.pipeline import analyze, get_reporter
from MedRegionCTLib.pipeline.batch import find_cases
from MedRegionCTLib.progress import CancelToken
from MedRegionCTLib.report import Evidence, RegionReport, Report, Sentence
from MedRegionCTLib.volume import write_nifti


class VolumeReporter:
    """A reporter that states each region's measured volume (exercises the pipeline, not the phrasing)."""

    name = "volume-test"

    def settings(self) -> dict:
        return {"unit": "mL"}

    def write(self, case, progress=None, cancel=None):
        out = []
        for r in case.regions:
            a = case.measurements.regions.get(r.key)
            text = f"{r.region.name} volume {a['volume_ml']:.1f} mL." if a else f"{r.region.name} not found."
            out.append(RegionReport(r.key, r.region.name, sentences=[
                Sentence(text, Evidence([f"region:{r.key}"], [f"regions/{r.key}/volume_ml"] if a else []))]))
        return out


@pytest.fixture(scope="module")
def tiny():
    return make_phantom("tiny", seed=3)


def test_analyze_with_given_labels_reports_every_region_in_schema_order(tiny):
    seen = []
    analysis = analyze(tiny.volume, labelmap=tiny.labels, reporter=VolumeReporter(),
                       progress=lambda f, m: seen.append(f))
    report = analysis.report
    assert [r.key for r in report.regions] == [r.key for r in analysis.regions] == analysis.schema.keys
    lung = report.region("lung")
    true_ml = np.count_nonzero(analysis.region_masks()["lung"]) * tiny.volume.voxel_volume_ml
    assert lung.paragraph == f"Lung volume {true_ml:.1f} mL."
    assert report.provenance.segmenter == "given label map" and report.provenance.reporter == "volume-test"
    assert report.provenance.settings["reporter"] == {"unit": "mL"}
    assert set(report.provenance.timings_s) >= {"segment", "measure", "report", "total"}
    assert report.provenance.input["shape"] == list(tiny.volume.shape)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert Report.from_json(json.loads(json.dumps(report.to_json()))) == report


def test_analyze_segments_with_the_builtin_segmenter(tiny):
    analysis = analyze(tiny.volume, reporter=VolumeReporter())
    assert analysis.report.provenance.segmenter == "builtin"
    assert "lung_upper_lobe_right" in analysis.labelmap.names.values() or "lung" in analysis.labelmap.names.values()
    assert analysis.report.region("lung").paragraph.startswith("Lung volume")


def test_analyze_reads_a_path(tiny, tmp_path):
    write_nifti(tiny.volume, tmp_path / "ct.nii.gz")
    analysis = analyze(tmp_path / "ct.nii.gz", labelmap=tiny.labels, reporter=VolumeReporter())
    assert analysis.report.provenance.input["source"] == "file"
    assert np.array_equal(analysis.volume.array, tiny.volume.array)


def test_analyze_cancel_stops_with_cancelled_error(tiny):
    token = CancelToken()
    token.set()
    with pytest.raises(CancelledError):
        analyze(tiny.volume, labelmap=tiny.labels, reporter=VolumeReporter(), cancel=token)


def test_bad_reporter_and_grid_are_input_errors(tiny):
    with pytest.raises(InputError, match="unknown reporter"):
        get_reporter("llm-of-my-dreams")
    with pytest.raises(InputError, match="not a reporter"):
        get_reporter(object())
    other = make_phantom("tiny", seed=3)
    other.labels.affine = other.labels.affine.copy()
    other.labels.affine[0, 3] += 5.0
    with pytest.raises(InputError, match="grid"):
        analyze(tiny.volume, labelmap=other.labels, reporter=VolumeReporter())


def test_find_cases_takes_images_and_dicom_folders_and_ignores_the_rest(tmp_path, tiny):
    write_nifti(tiny.volume, tmp_path / "a.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty_folder").mkdir()
    cases, ignored = find_cases(tmp_path)
    assert list(cases) == ["a"] and sorted(ignored) == ["empty_folder", "notes.txt"]
    with pytest.raises(InputError, match="not a folder"):
        find_cases(tmp_path / "a.nii.gz")
