"""Heart, great vessels and bones on the real CTs: print every figure issue 14 asks for (exit 1 on a failure).

    .venv/bin/python Testing/realdata/check_heart_vessels.py [/path/to/shared/data] [--cases 09,01,bones]
    (or set MEDREGIONCT_REALDATA)

- 09: CTR and the slices it used, heart volume, ascending and descending aorta with their landmarks, on the CT
  and with Gaussian noise of 20 HU (statements must not change).
- 01: aorta landmarks and the main pulmonary artery on TotalSegmentator's own masks and on the built-in
  segmentation, against TotalSegmentator's aorta and pulmonary reports (largest diameter and perpendicular
  width, mm); TotalSegmentator vessel and heart voxels the built-in segmenter labels bone.
- bones: spine Dice against TotalSegmentator's vertebrae and the level named inside each of its vertebrae
  (01: T12 only, within its slab; 02; 04), and blood labelled bone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from MedRegionCTLib.measure import measure
from MedRegionCTLib.pipeline import analyze
from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.segment.labels_import import import_labelmap
from MedRegionCTLib.volume import Volume, read_labelmap, read_volume

ORDER = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]
BONES = ("vertebrae", "rib_", "sternum", "clavicula", "scapula", "humerus")
FAILURES: list[str] = []


def check(ok: bool, what: str) -> str:
    if not ok:
        FAILURES.append(what)
    return "ok  " if ok else "FAIL"


def landmarks_against(result, reference: Path, vessel: str):
    ref = {L["name"]: L for L in json.loads(reference.read_text())["landmarks"].values()}
    key = "aorta_landmarks" if vessel == "aorta" else "pulmonary_artery_landmarks"
    got = (result.clinical.get(key) or {}).get("landmarks", {})
    for k, L in got.items():
        r = ref.get(L["name"])
        if r is None or r.get("diameter") is None or "diameter_mm" not in L:
            print(f"    {k:28s} not measured: {L.get('notes')}")
            continue
        d, pd = L["diameter_mm"] - 10 * r["diameter"], L["diameter_pd_mm"] - 10 * r["diameter_pd"]
        ok = check(abs(d) <= 3.0, f"{vessel} {k}")
        print(f"    {ok} {k:28s} {L['diameter_mm']:5.1f} / {L['diameter_pd_mm']:5.1f} mm"
              f"  reference {10 * r['diameter']:4.0f} / {10 * r['diameter_pd']:4.0f}  (diff {d:+.1f} / {pd:+.1f})"
              f"  placed by {L['placed_by']}")
    notes = (result.clinical.get(key) or {}).get("notes")
    if notes:
        print(f"    notes: {notes}")


def case_09(root: Path) -> None:
    ct = read_volume(root / "09_itkelastix_thorax_ct_fullres/ct_DERIVED_from_dicom.nii.gz")
    said = {}
    for sigma in (0, 20):
        vol = ct
        if sigma:
            noisy = ct.array.astype(np.float32) + np.random.default_rng(0).normal(0, sigma, ct.shape)
            vol = Volume(np.clip(np.rint(noisy), -1024, 3071).astype(np.int16), ct.affine.copy(), dict(ct.meta))
        a = analyze(vol)
        c = a.measurements.clinical
        ctr, asc, desc = c["cardiothoracic_ratio"], c["ascending_aorta_diameter_mm"], c["descending_aorta_diameter_mm"]
        heart_ml = a.labelmap.mask("heart").sum() * a.labelmap.voxel_volume_ml
        print(f"09 noise {sigma} HU (segment {a.report.provenance.timings_s.get('segment', 0):.1f} s):")
        print(f"    {check(ctr['value'] is not None and 0.40 <= ctr['value'] <= 0.50 and not ctr['abnormal'], 'CTR')}"
              f" CTR {ctr['value']:.3f}: heart {ctr['heart_width_mm']:.0f} mm on slice {ctr['heart_slice_index']}"
              f" ({ctr['heart_slice_z_mm']} mm), thorax {ctr['thorax_width_mm']:.0f} mm on slice"
              f" {ctr['thorax_slice_index']} ({ctr['thorax_slice_z_mm']} mm); heart {heart_ml:.0f} mL")
        ok = asc["value"] is not None and 30 <= asc["value"] <= 38 and not asc["abnormal"]
        print(f"    {check(ok, f'ascending aorta (noise {sigma})')} ascending {asc['value']:.1f} mm at"
              f" {asc.get('landmark')}; descending {desc['value']:.1f} mm at {desc.get('landmark')}"
              f" (dilated: {desc['abnormal']})")
        for k, L in c["aorta_landmarks"]["landmarks"].items():
            print(f"      {k:28s} {L.get('diameter_mm')} / {L.get('diameter_pd_mm')} mm  {L['placed_by']}")
        said[sigma] = {r: [re.sub(r"\d+(\.\d+)?", "#", s.text) for s in a.report.region(r).sentences]
                       for r in ("heart", "mediastinum")}
        print("    " + a.report.region("heart").paragraph)
        print("    " + a.report.region("mediastinum").paragraph)
    print(f"    {check(said[0] == said[20], 'statements under noise')} statements unchanged under 20 HU noise")


def case_01(root: Path) -> None:
    cta = root / "01_totalseg_chest_cta_crop"
    with tempfile.TemporaryDirectory() as tmp:
        for crop, names in (("aorta_crop", ("aorta", "aorta_true_lumen", "aorta_false_lumen", "brachiocephalic_trunk",
                                            "subclavian_artery_left", "sinotubular_junction", "vertebrae_T12")),
                            ("pulmonary_crop", ("pulmonary_artery", "pul_bifurcation"))):
            folder = Path(tmp) / crop
            folder.mkdir()
            for n in names:
                shutil.copy(cta / crop / "seg_model_output" / f"{n}.nii.gz", folder / f"{n}.nii.gz")
            ct = read_volume(cta / crop / "ct.nii.gz")
            result = measure(ct, import_labelmap(folder), lesions=False, regions=False)
            vessel = "aorta" if crop == "aorta_crop" else "pulmonary"
            ref = cta / crop / f"{'aorta' if vessel == 'aorta' else 'pulmonary'}_report_reference.json"
            print(f"01 {vessel} on TotalSegmentator's masks (largest diameter / width across, mm):")
            landmarks_against(result, ref, vessel)
    ct = read_volume(cta / "aorta_crop/ct.nii.gz")
    labels = BuiltinSegmenter().segment(ct)
    result = measure(ct, labels, lesions=False, regions=False)
    print("01 aorta on the built-in segmentation:")
    landmarks_against(result, cta / "aorta_crop/aorta_report_reference.json", "aorta")
    pa = result.clinical["main_pulmonary_artery_diameter_mm"]
    print(f"    {check(pa['value'] is not None, 'built-in main pulmonary artery')} main pulmonary artery: "
          f"{pa['value'] if pa['value'] is not None else 'not segmented by the built-in segmenter'}")
    bone = np.isin(labels.array, [i for i, n in labels.names.items() if n.startswith(BONES)])
    for name in ("aorta", "aorta_false_lumen", "heart_DERIVED_cropped_from_fullgrid"):
        v = read_labelmap(cta / "aorta_crop/seg_model_output" / f"{name}.nii.gz").array > 0
        n = int((v & bone).sum())
        print(f"    {check(n <= 0.001 * v.sum(), f'blood as bone ({name})')} {name}: {n} of {int(v.sum())} voxels "
              "labelled bone")
    spine_checks("01", labels, read_labelmap(cta / "aorta_crop/seg_model_output/vertebrae_T12.nii.gz"), slab=True,
                 names={1: "vertebrae_T12"})


def spine_checks(case: str, labels, ts, slab: bool = False, names=None) -> None:
    names = names or ts.names
    ours = np.isin(labels.array, [i for i, n in labels.names.items() if n.startswith("vertebrae")])
    theirs = np.isin(ts.array, [i for i, n in names.items() if str(n).startswith("vertebrae")])
    if slab:  # only the slab of the vertebrae TotalSegmentator labelled
        zs = np.flatnonzero(theirs.any(axis=(0, 1)))
        ours, theirs = ours[:, :, zs[0]:zs[-1] + 1], theirs[:, :, zs[0]:zs[-1] + 1]
    d = 2 * (ours & theirs).sum() / max(ours.sum() + theirs.sum(), 1)
    print(f"{case} spine: {check(d >= 0.8, f'{case} spine Dice')} Dice {d:.3f} against TotalSegmentator's vertebrae")
    for i, n in sorted(names.items()):
        if not str(n).startswith("vertebrae"):
            continue
        inside = labels.array[ts.array == i]
        got = [labels.names[int(v)] for v in inside if labels.names.get(int(v), "").startswith("vertebrae")]
        if not got:
            print(f"    {check(False, f'{case} {n} level')} {n}: no vertebra named there")
            continue
        top = max(set(got), key=got.count)
        off = ORDER.index(top.split("_")[1]) - ORDER.index(str(n).split("_")[1])
        print(f"    {check(abs(off) <= 1, f'{case} {n} level')} {n}: named {top} (off {off:+d})")


def case_bones(root: Path) -> None:
    for case, ct_path, ts_path in (
            ("02", "02_totalseg_example_ct_sm_upper_abdomen_lung_bases/ct.nii.gz",
             "02_totalseg_example_ct_sm_upper_abdomen_lung_bases/seg_total_ml_model_output.nii.gz"),
            ("04", "04_totalseg_example_ct_dicom_upper_abdomen/ct_from_dicom_DERIVED.nii.gz",
             "04_totalseg_example_ct_dicom_upper_abdomen/seg_total_fast_ml_model_output.nii.gz")):
        labels = BuiltinSegmenter().segment(read_volume(root / ct_path))
        ts = import_labelmap(root / ts_path)
        spine_checks(case, labels, ts)
        bone = np.isin(labels.array, [i for i, n in labels.names.items() if n.startswith(BONES)])
        vessels = np.isin(ts.array, [i for i, n in ts.names.items() if n in (
            "aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein", "heart")])
        print(f"    blood as bone: {int((vessels & bone).sum())} of {int(vessels.sum())} vessel voxels; "
              f"levels: {labels.meta.get('vertebral_levels') or 'not anchored'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.environ.get("MEDREGIONCT_REALDATA"))
    ap.add_argument("--cases", default="09,01,bones")
    args = ap.parse_args(argv)
    if not args.data:
        print("give the shared data folder as argument or set MEDREGIONCT_REALDATA", file=sys.stderr)
        return 2
    root = Path(args.data) / "realct"
    runs = {"09": case_09, "01": case_01, "bones": case_bones}
    for case in args.cases.split(","):
        runs[case](root)
    if FAILURES:
        print("FAILED: " + "; ".join(FAILURES))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
