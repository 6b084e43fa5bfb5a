"""Training datasets: the RadGenome-ChestCT layout written to tmp_path and read back, the npz cache of prepared
cases, and the synthetic phantom paragraphs checked against the CT-RATE labeler."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from MedRegionCTLib.errors import InputError
from MedRegionCTLib.model.tiny import synthetic_case, tiny_config
from MedRegionCTLib.report import label_report
from MedRegionCTLib.train import PreparedDataset, RadGenomeDataset, make_source, read_region_reports
from MedRegionCTLib.train.synthetic import (
    FindingSampler,
    SyntheticPhantomDataset,
    expected_labels,
    paragraphs_from_truth,
    records_from_spec,
)

GRID = {"grid": (16, 16, 8), "num_slices": 8, "slice_size": 16, "body_margin_mm": 2.0}


def _write_radgenome(root, split="train"):
    """Two CTs with masks and region reports, and a third CT that has no report (skipped)."""
    rows = []
    for n, seed in ((1, 3), (2, 4), (3, 5)):
        case = synthetic_case(seed)
        name = f"{split}_{n}_a_1"
        folder = root / f"{split}_preprocessed" / f"{split}_{n}" / f"{split}_{n}_a"
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(case["volume"], case["affine"]), str(folder / f"{name}.nii.gz"))
        masks = root / f"{split}_region_mask" / f"seg_{name}"
        masks.mkdir(parents=True)
        files = {"lung": "lung", "heart": "heart", "trachea": "trachea and bronchie"}
        for key, region in files.items():
            nib.save(nib.Nifti1Image(case["regions"][key].astype(np.uint8), case["affine"]),
                     str(masks / f"{region}.nii.gz"))
        if n == 3:
            continue
        rows += [(f"{name}.nii.gz", "lung", case["paragraphs"]["lung"].split(". ")[0] + "."),
                 (f"{name}.nii.gz", "lung", "No effusion."),
                 (f"{name}.nii.gz", "heart", case["paragraphs"]["heart"]),
                 (f"{name}.nii.gz", "thyroid", "The thyroid is normal."),  # no mask: no slot
                 (f"{name}.nii.gz", "", "Whole-report sentence.")]
    with (root / f"{split}_region_report.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Volumename", "Anatomy", "Sentence"])
        writer.writerows(rows)
    return root


def test_radgenome_layout_is_read_back(tmp_path):
    root = _write_radgenome(tmp_path / "radgenome")
    reports = read_region_reports(root / "train_region_report.csv")
    assert reports["train_1_a_1"]["lung"].endswith(". No effusion.") and reports["train_1_a_1"][""]
    ds = make_source({"kind": "radgenome", "root": str(root), "split": "train",
                      "regions": ["lung", "heart", "trachea and bronchie", "thyroid"]})
    assert isinstance(ds, RadGenomeDataset)
    assert len(ds) == 2 and [ds.case_id(i) for i in range(2)] == ["train_1_a_1", "train_2_a_1"]
    case = ds.load_case(1)
    truth = synthetic_case(4)
    assert set(case["regions"]) == {"lung", "heart", "trachea and bronchie"}  # thyroid has no mask file
    assert np.array_equal(case["regions"]["heart"], truth["regions"]["heart"])
    assert case["paragraphs"]["heart"] == truth["paragraphs"]["heart"]
    assert "trachea and bronchie" not in case["paragraphs"]  # masked but not reported: slot without answer
    assert np.array_equal(case["volume"].array, truth["volume"])
    assert "No effusion." in ds.texts()[0] + ds.texts()[1] and "The thyroid is normal." in ds.texts()


def test_radgenome_errors_name_the_missing_piece(tmp_path):
    with pytest.raises(InputError, match="train_preprocessed"):
        RadGenomeDataset(tmp_path, "train")
    root = _write_radgenome(tmp_path / "r")
    (root / "train_region_report.csv").unlink()
    with pytest.raises(InputError, match="region report CSV"):
        RadGenomeDataset(root, "train")
    with pytest.raises(InputError, match="kind"):
        make_source({"kind": "mimic"})


def test_prepared_cases_are_cached_as_npz_and_read_back(tmp_path):
    root = _write_radgenome(tmp_path / "radgenome")
    source = RadGenomeDataset(root, "train", regions=["lung", "heart", "trachea and bronchie"])
    config = tiny_config("llm", "vision", preprocess=GRID)
    need = config.needed_inputs()
    ds = PreparedDataset(source, config.preprocess, need, tmp_path / "cache")
    first = ds[0]
    path = ds.cache_path(0)
    assert path.is_file() and path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as data:  # no pickled objects inside
        assert "meta" in data.files
    again = ds[0]
    assert again.keys == first.keys and again.paragraphs == first.paragraphs and again.case_id == "train_1_a_1"
    for name in first.arrays:
        assert np.array_equal(again.arrays[name], first.arrays[name])
    # another preprocessing is another cache entry
    other = PreparedDataset(source, tiny_config("llm", "v", preprocess={**GRID, "hu_min": -900.0}).preprocess, need,
                            tmp_path / "cache")
    assert other.cache_path(0) != path
    with pytest.raises(IndexError):
        ds[5]


@pytest.mark.parametrize("spec", [
    "nodule:RUL:9:solid", "nodule:LLL:12:subsolid", "mass:LUL:38", "consolidation:RLL", "emphysema:upper",
    "pleural_effusion:right:300", "pericardial_effusion:9", "cardiomegaly:1.3", "dilated_aorta:48", "none",
    "nodule:RML:8:part-solid,cardiomegaly:1.3,pleural_effusion:left:200,pericardial_effusion:10"])
@pytest.mark.parametrize("phrasing", ["fixed", "varied"])
def test_synthetic_paragraphs_carry_exactly_the_planted_labels(spec, phrasing):
    truth = {"findings": records_from_spec(spec)}
    paragraphs = paragraphs_from_truth(truth, phrasing=phrasing, seed=7)
    assert len(paragraphs) == 10 and all(paragraphs.values())
    labels = {n for n, v in label_report(" ".join(paragraphs.values())).items() if v["present"]}
    assert labels == expected_labels(truth)


def test_finding_sampler_is_seeded_and_covers_kinds():
    sampler = FindingSampler()
    specs = [sampler.spec(np.random.default_rng(i)) for i in range(200)]
    assert specs[:20] == [FindingSampler().spec(np.random.default_rng(i)) for i in range(20)]
    kinds = {item.split(":")[0] for s in specs for item in s.split(",")}
    assert {"nodule", "pleural_effusion", "cardiomegaly", "none"} <= kinds
    assert FindingSampler({"probability": {"nodule": 0.0}}).spec(np.random.default_rng(0)).count("nodule:") == 0
    with pytest.raises(InputError):
        FindingSampler({"probability": {"tumour": 1.0}})


def test_synthetic_phantom_case_has_masks_and_truth_paragraphs():
    ds = SyntheticPhantomDataset(2, seed=5, findings=["nodule:RUL:12:solid,pleural_effusion:left:300", "none"],
                                 attributes="truth")
    case = ds.load_case(0)
    assert set(case["regions"]) == {"lung", "pleura", "heart", "mediastinum", "trachea and bronchie"}
    assert all(m.any() for m in case["regions"].values())
    assert "upper lobe of the right lung" in case["paragraphs"]["lung"]
    assert "left hemithorax" in case["paragraphs"]["pleura"]
    assert case["labels"] == ["Lung nodule", "Pleural effusion"]
    assert "12.0 mm" in case["attributes"]["lung"] and "cardiothoracic ratio" in case["attributes"]["heart"]
    assert ds.texts()[:5] == list(case["paragraphs"].values())
    with pytest.raises(InputError):
        SyntheticPhantomDataset(1, regions=["spleen"])


def test_radgenome_masks_can_come_from_one_of_our_segmenters(tmp_path):
    """masks='labels:FILE' (the import segmenter) stands for any segmenter: its label map goes through the
    RadGenome-10 region schema instead of the dataset's mask files."""
    from MedRegionCTLib.segment.totalsegmentator import native_classes

    root = _write_radgenome(tmp_path / "radgenome")
    truth = synthetic_case(3)
    index = {name: i for i, name in native_classes("total").items()}
    labels = np.zeros(truth["volume"].shape, dtype=np.uint8)
    labels[truth["regions"]["lung"]] = index["lung_upper_lobe_left"]
    labels[truth["regions"]["heart"]] = index["heart"]
    nib.save(nib.Nifti1Image(labels, truth["affine"]), str(tmp_path / "seg.nii.gz"))
    ds = RadGenomeDataset(root, "train", regions=["lung", "heart", "pleura"], masks=f"labels:{tmp_path / 'seg.nii.gz'}",
                          limit=1)
    case = ds.load_case(0)
    assert set(case["regions"]) == {"lung", "heart", "pleura"}
    assert np.array_equal(case["regions"]["heart"], truth["regions"]["heart"])
    assert np.array_equal(case["regions"]["lung"], truth["regions"]["lung"] & ~truth["regions"]["heart"])
    assert case["regions"]["pleura"].any()  # the schema derives the pleura from the lungs by a rule
    assert ds.fingerprint()["masks"].startswith("labels:")
