"""Real-CT scorecard: run the main job (segment, measure, report) on every real diseased chest and on the relevant
normal real CTs, and score what the report says against the references.

    .venv/bin/python Testing/benchmarks/realct_scorecard.py [DATA_DIR] [--cases lung1001,09] [--json OUT.json]
    (DATA_DIR defaults to $MEDREGIONCT_REALDATA: the shared data folder with realct/ and realct_pathology/)

References:
- tumours: ``Testing/realdata/pathology_reference.json`` (found on the images by hand; no image data);
- effusions: each case's expert mask (``effusion_mask.nii.gz``), volume per side from the mask's world
  coordinates (RAS x > 0 is the patient's right), as the data README defines it;
- abstention: a negative statement ("no nodule or mass", "no effusion", "no emphysema") is checked against the
  report's own coverage and quality checks, and against the case's known state (a cut lung, a cut pleural space).

Per case it prints each reference finding as found / missed / false with its size error, the seconds and peak
memory of the main job, then totals. ``--json`` writes everything (the per-case figures) for comparisons; the
realdata test ``test_realct_scorecard.py`` runs this scorer and holds the totals at the figures reached.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from MedRegionCTLib.pipeline import analyze
from MedRegionCTLib.volume import read_volume

REFERENCE = Path(__file__).resolve().parents[1] / "realdata" / "pathology_reference.json"
LESION_KINDS = ("nodule", "mass")
NEGATIVE_PHRASES = {
    "nodule or mass": ("no pulmonary nodule", "no nodule", "no mass", "no pulmonary mass"),
    "effusion": ("no pleural effusion", "no effusion"),
    "emphysema": ("no emphysema", "without emphysema"),
}


def load_reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def effusion_truth(mask_path: Path) -> dict:
    """mL per side of an expert effusion mask (world RAS x > 0: the patient's right)."""
    import nibabel as nib

    img = nib.load(str(mask_path))
    mask = np.asarray(img.dataobj) > 0
    ijk = np.argwhere(mask)
    x = ijk @ img.affine[0, :3] + img.affine[0, 3]
    voxel_ml = float(abs(np.linalg.det(img.affine[:3, :3]))) / 1000.0
    return {"right": float(np.count_nonzero(x > 0)) * voxel_ml, "left": float(np.count_nonzero(x <= 0)) * voxel_ml}


def run_case(path: Path) -> dict:
    """The main job on one CT, timed, with the report's findings and statements."""
    volume = read_volume(path)
    t = time.perf_counter()
    # the built-in chain (the default where TotalSegmentator is not installed); a scan that is no chest CT is
    # still reported, without lung or pleura statements, so its report can be scored too
    analysis = analyze(volume, segmenter="builtin", allow_non_chest=True)
    seconds = time.perf_counter() - t
    report = analysis.report
    lesions = analysis.measurements.lesions
    findings = []
    for f in report.findings:
        findings.append({"kind": f.kind, "side": f.side, "location": f.location, "size": f.size,
                         "values": f.values, "provenance": f.provenance,
                         "lesion": next((int(m.split(":")[1]) for m in f.evidence.masks if m.startswith("lesion:")),
                                        None)})
    negatives = []
    for region in report.regions:
        for s in region.sentences:
            low = s.text.lower()
            for topic, phrases in NEGATIVE_PHRASES.items():
                if any(p in low for p in phrases):
                    negatives.append({"region": region.key, "topic": topic, "text": s.text, "kind": s.kind})
    return {"seconds": round(seconds, 1), "lesions": lesions, "findings": findings, "negatives": negatives,
            "scope": report.provenance.scope, "statuses": {r.key: r.status for r in report.regions},
            "text": report.text(), "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _centre(lesion: dict) -> np.ndarray:
    return np.asarray(lesion["centroid_ras"], dtype=float)


def match_tumour(ref: dict, lesions: list[dict]) -> dict | None:
    """The reported lung lesion that is this tumour: its centre within the tumour's radius (at least 20 mm) of the
    reference centre; the nearest when several."""
    best, best_d = None, np.inf
    reach = max(20.0, 0.5 * ref["max_diameter_mm"])
    for les in lesions:
        if les["kind"] not in LESION_KINDS + ("consolidation",):
            continue
        d = float(np.linalg.norm(_centre(les) - np.asarray(ref["centre_ras_mm"], dtype=float)))
        if d <= reach and d < best_d:
            best, best_d = les, d
    return best


def score_tumours(refs: list[dict], result: dict) -> list[dict]:
    rows = []
    lesions = [les for les in result["lesions"] if les["kind"] in LESION_KINDS + ("consolidation",)]
    for ref in refs:
        les = match_tumour(ref, lesions)
        row = {"finding": f"{ref['id']} ({ref['side']} {ref['lobe']}, {ref['max_diameter_mm']:.0f} mm)",
               "required": ref.get("required", True)}
        if les is None:
            row.update(status="missed")
        else:
            err = (les["max_diameter_mm"] - ref["max_diameter_mm"]) / ref["max_diameter_mm"]
            lobe = (les.get("lobe") or "").replace("lung_", "").replace("_", " ")
            ok_place = les.get("side") == ref["side"] and lobe == ref["lobe_class"].replace("lung_", "").replace(
                "_", " ")
            ok_kind = les["kind"] in LESION_KINDS
            status = "found" if ok_place and ok_kind and abs(err) <= 0.20 else "wrong"
            row.update(status=status, kind=les["kind"], side=les.get("side"), lobe=lobe,
                       measured_mm=round(les["max_diameter_mm"], 1), size_error=round(err, 3),
                       touches=les.get("touches", []))
        rows.append(row)
    return rows


def score_effusions(truth: dict | None, expect_none: bool, result: dict) -> list[dict]:
    measured = {"right": 0.0, "left": 0.0}
    for les in result["lesions"]:
        if les["kind"] == "pleural_effusion" and les.get("side") in measured:
            measured[les["side"]] += float(les["volume_ml"])
    rows = []
    for side in ("right", "left"):
        ref = truth[side] if truth is not None else (0.0 if expect_none else None)
        if ref is None:
            continue
        got = measured[side]
        row = {"finding": f"{side} effusion (expert {ref:.0f} mL)", "measured_ml": round(got, 1), "reference_ml":
               round(ref, 1)}
        if ref >= 50.0:
            err = (got - ref) / ref
            row.update(status="found" if abs(err) <= 0.40 else ("missed" if got < 50.0 else "wrong"),
                       size_error=round(err, 3), required=True)
        elif ref < 1.0:
            row.update(status="false" if got >= 50.0 else "ok", required=True)
        else:  # a small expert effusion (< 50 mL): not required either way
            row.update(status="ok" if got < 50.0 or abs(got - ref) / ref <= 0.40 else "wrong", required=False)
        rows.append(row)
    return rows


def score_abstention(case: dict, result: dict) -> list[dict]:
    """Negative statements on topics the case cannot support."""
    unsupported = set(case.get("cannot_state_negative", []))
    bad = []
    for neg in result["negatives"]:
        if neg["topic"] in unsupported:
            bad.append({"finding": f"negative statement on {neg['topic']}", "status": "false", "text": neg["text"],
                        "required": True})
    return bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=os.environ.get("MEDREGIONCT_REALDATA"))
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("give the shared data folder (or set MEDREGIONCT_REALDATA)")
    data = Path(args.data)
    reference = load_reference()
    wanted = [c for c in args.cases.split(",") if c]
    totals = {"found": 0, "missed": 0, "wrong": 0, "false": 0, "ok": 0}
    out = {"cases": {}, "totals": totals}
    for name, case in reference["cases"].items():
        if wanted and name not in wanted and name.split("/")[-1] not in wanted:
            continue
        ct = data / case["ct"]
        if not ct.exists():
            print(f"{name}: {ct} not found, skipped")
            continue
        # one fresh process per case: its peak memory is the case's own
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result = pool.submit(run_case, ct).result()
        peak_gib = result["peak_rss_kib"] / 2**20
        truth = effusion_truth(data / case["effusion_mask"]) if case.get("effusion_mask") else None
        rows = score_tumours(case.get("tumours", []), result)
        rows += score_effusions(truth, case.get("no_effusion", False), result)
        rows += score_abstention(case, result)
        print(f"\n== {name}: main job {result['seconds']:.1f} s, peak RSS {peak_gib:.2f} GiB")
        for row in rows:
            extra = {k: v for k, v in row.items() if k not in ("finding", "status", "required")}
            print(f"  {row['status']:7s} {row['finding']}  {json.dumps(extra)}")
            if row.get("required", True):
                totals[row["status"]] = totals.get(row["status"], 0) + 1
        others = [les for les in result["lesions"] if les["kind"] in LESION_KINDS and not any(
            match_tumour(t, [les]) for t in case.get("tumours", []))]
        for les in others:
            print(f"  other   {les['kind']} {les.get('side')} {les.get('lobe')} {les['max_diameter_mm']:.1f} mm "
                  f"at {[round(v) for v in les['centroid_ras']]}")
        for neg in result["negatives"]:
            print(f"  negative [{neg['region']}] {neg['text']}")
        out["cases"][name] = {"rows": rows, "seconds": result["seconds"], "peak_rss_gib": round(peak_gib, 2),
                              "other_lesions": [{k: les.get(k) for k in ("kind", "side", "lobe", "max_diameter_mm",
                                                                          "centroid_ras")} for les in others],
                              "negatives": result["negatives"], "scope": result["scope"]}
    print("\nTotals:", json.dumps(totals))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
