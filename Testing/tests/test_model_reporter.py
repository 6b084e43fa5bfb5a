"""The local model as a report engine: pipeline.analyze(..., reporter="model:DIR") on a saved tiny model."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("monai")

from MedRegionCTLib.errors import InputError  # noqa: E402
from MedRegionCTLib.model import MedRegionModel  # noqa: E402
from MedRegionCTLib.model.reporter import ModelReporter  # noqa: E402
from MedRegionCTLib.model.tiny import synthetic_case, tiny_config, write_tiny_folders  # noqa: E402
from MedRegionCTLib.phantom import make_phantom  # noqa: E402
from MedRegionCTLib.pipeline import analyze  # noqa: E402
from MedRegionCTLib.report import ASSESSED, OUTSIDE_FIELD_OF_VIEW, Report  # noqa: E402


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    llm, vision = write_tiny_folders(root, [synthetic_case(1)])
    torch.manual_seed(0)
    config = tiny_config(llm, vision, name="hybrid", generation={"max_new_tokens": 10, "min_new_tokens": 10})
    MedRegionModel.from_config(config).save_pretrained(root / "saved")
    return root / "saved"


def test_model_reporter_writes_one_region_report_per_schema_region(saved_model):
    phantom = make_phantom("tiny", seed=2)
    analysis = analyze(phantom.volume, labelmap=phantom.labels, reporter=f"model:{saved_model}")
    report = analysis.report
    assert report.provenance.reporter == "model"
    assert report.provenance.settings["reporter"]["model"] == str(saved_model)
    assert [r.key for r in report.regions] == analysis.schema.keys
    for region, mask in zip(report.regions, analysis.regions, strict=True):
        if not mask.mask.any():
            assert region.status == OUTSIDE_FIELD_OF_VIEW and region.paragraph == ""
        elif region.status == ASSESSED:
            assert region.paragraph and region.evidence.masks == [f"region:{region.key}"]
    assert sum(r.status == ASSESSED for r in report.regions) >= 5  # min_new_tokens forces text per region
    assert Report.from_json(report.to_json()) == report


def test_model_reporter_names_a_folder_that_is_no_model(tmp_path):
    with pytest.raises(InputError, match="not a MedRegionCT model folder"):
        ModelReporter(tmp_path)
