"""Run the built-in segmenter on the real CT sets and check it against their reference labels.

    .venv/bin/python Testing/realdata/check_segment_builtin.py [/path/to/shared/data] [--out DIR]
    (or set MEDREGIONCT_REALDATA)

- 05 (COPDGene whole chest, 4 mm): whole-lung Dice against CIP's ``whole_lung`` (must be >= 0.95); the airway
  must be found.
- 09 (full-resolution thorax): volumes per structure in adult ranges, lungs and heart on the right sides.
- 03 (abdomen and pelvis): must be reported as not a chest CT, with no heart, trachea or thyroid invented.
- 02 (lung bases, TotalSegmentator labels): lung Dice against TotalSegmentator's lobes (a model, not truth).
- 01 (contrast CTA crop): heart and aorta Dice against TotalSegmentator's masks (a model, not truth).

Writes one PNG montage of the overlays per case and ``summary.json`` into ``--out`` (default
``./segment_builtin_realdata``); prints a table; exits 1 when a check fails. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, io_orientation

from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.volume import read_labelmap, read_volume

CASES = {
    "05": "05_cip_copdgene_whole_chest_lowres/ct_DERIVED.nii.gz",
    "09": "09_itkelastix_thorax_ct_fullres/ct_DERIVED_from_dicom.nii.gz",
    "03": "03_totalseg_example_ct_abdomen_pelvis_NONCHEST/ct.nii.gz",
    "02": "02_totalseg_example_ct_sm_upper_abdomen_lung_bases/ct.nii.gz",
    "01": "01_totalseg_chest_cta_crop/aorta_crop/ct.nii.gz",
}
CHEST_ONLY = ("heart", "trachea", "lung_airways", "thyroid_gland", "aorta", "esophagus", "mediastinum")
# adult ranges (mL): lungs at full inspiration, heart incl. chambers, trachea + main bronchi lumen and wall
ADULT_ML = {"lung_left": (1000, 4500), "lung_right": (1200, 5000), "heart": (300, 1300),
            "airway": (20, 150), "bones": (400, 3000)}


def lobes(labels, side):
    return np.isin(labels.array, [i for i, n in labels.names.items() if n.startswith("lung_") and "lobe" in n
                                  and n.endswith(side)])


def dice(a, b) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / s if s else float("nan")


def centroid_x(mask, affine) -> float:
    idx = np.argwhere(mask)
    return float((idx.mean(axis=0) @ affine[:3, :3].T + affine[:3, 3])[0]) if idx.size else float("nan")


GROUPS = [  # (colour, class-name prefixes): one colour per kind of structure keeps the montage readable
    ("#1f77b4", ("lung_upper_lobe_left",)), ("#aec7e8", ("lung_lower_lobe_left",)),
    ("#2ca02c", ("lung_upper_lobe_right",)), ("#98df8a", ("lung_middle_lobe_right",)),
    ("#bcbd22", ("lung_lower_lobe_right",)), ("#ff00ff", ("trachea", "lung_airways")),
    ("#d62728", ("heart",)), ("#ff7f0e", ("aorta",)), ("#8c564b", ("esophagus",)),
    ("#9467bd", ("mediastinum",)), ("#17becf", ("lung_pleural",)), ("#ffff00", ("thyroid_gland", "breast")),
    ("#f7f7f7", ("vertebrae", "rib_", "sternum", "clavicula", "scapula", "humerus")),
    ("#7f7f7f", ("abdominal_cavity", "liver", "stomach", "spleen")), ("#e377c2", ("body_extremities",)),
]


def montage(volume, labels, path: Path, title: str) -> None:
    """Axial, coronal and sagittal slices through the labelled region (body_trunc itself left uncoloured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    ornt = io_orientation(volume.affine)
    ct = apply_orientation(volume.array, ornt)
    lab = apply_orientation(labels.array, ornt)
    sp = np.linalg.norm(volume.affine[:3, :3], axis=0)[np.argsort(ornt[:, 0])]
    lut = np.zeros(int(lab.max()) + 1, int)
    for index, name in labels.names.items():
        for g, (_, prefixes) in enumerate(GROUPS, start=1):
            if name.startswith(prefixes):
                lut[index] = g
    group_map = lut[lab]
    cmap = ListedColormap(["#000000"] + [c for c, _ in GROUPS])
    n = 5
    fig, axes = plt.subplots(3, n, figsize=(3.4 * n, 10.5))
    for row, axis in enumerate((2, 1, 0)):
        hit = np.flatnonzero((group_map > 0).any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = (hit[0], hit[-1]) if hit.size else (0, ct.shape[axis] - 1)
        other = [a for a in range(3) if a != axis]
        aspect = sp[other[1]] / sp[other[0]]
        for col, i in enumerate(np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), n).astype(int)):
            ax = axes[row, col]
            ax.imshow(np.take(ct, i, axis=axis).T, origin="lower", cmap="gray", vmin=-1000, vmax=500, aspect=aspect)
            sl = np.take(group_map, i, axis=axis).astype(float)
            sl[sl == 0] = np.nan
            ax.imshow(sl.T, origin="lower", cmap=cmap, vmin=0, vmax=len(GROUPS), alpha=0.45, aspect=aspect,
                      interpolation="nearest")
            ax.set_title(f"{'axial' if axis == 2 else 'coronal' if axis == 1 else 'sagittal'} {i}", fontsize=8)
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c, _ in GROUPS]
    fig.legend(handles, ["/".join(p[:2]) for _, p in GROUPS], loc="lower center", ncol=8, fontsize=7)
    fig.suptitle(title + "\n(patient's left on the image's left; anterior up in axial views; superior up)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=60)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.environ.get("MEDREGIONCT_REALDATA"))
    ap.add_argument("--out", default="segment_builtin_realdata")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args(argv)
    if not args.data:
        print("give the shared data folder as argument or set MEDREGIONCT_REALDATA", file=sys.stderr)
        return 2
    root = Path(args.data) / "realct"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seg = BuiltinSegmenter()
    summary, failures = {}, []
    for case in args.cases.split(","):
        vol = read_volume(root / CASES[case])
        t0 = time.perf_counter()
        lm = seg.segment(vol)
        took = time.perf_counter() - t0
        vols = lm.volumes_ml()
        left, right = lobes(lm, "left"), lobes(lm, "right")
        airway = np.isin(lm.array, [lm.index_of("trachea") or -1, lm.index_of("lung_airways") or -1])
        bones = np.isin(lm.array, [i for i, n in lm.names.items()
                                   if n.startswith(("vertebrae", "rib_", "sternum", "clavicula", "scapula"))])
        ml = lm.voxel_volume_ml
        rec = {"seconds": round(took, 1), "shape": list(vol.shape), "meta": lm.meta,
               "volumes_ml": {k: round(v, 1) for k, v in sorted(vols.items())},
               "lung_left_ml": round(left.sum() * ml, 1), "lung_right_ml": round(right.sum() * ml, 1),
               "airway_ml": round(airway.sum() * ml, 1), "bones_ml": round(bones.sum() * ml, 1),
               "left_lung_x": centroid_x(left, lm.affine), "right_lung_x": centroid_x(right, lm.affine),
               "heart_x": centroid_x(lm.mask("heart"), lm.affine), "checks": {}}
        checks = rec["checks"]
        if case == "05":
            ref = read_labelmap(root / "05_cip_copdgene_whole_chest_lowres/whole_lung_DERIVED.nii.gz")
            d = round(dice(left | right, ref.array > 0), 4)
            checks["whole-lung Dice >= 0.95"] = (d, d >= 0.95)
            checks["airway found"] = (bool(lm.mask("trachea").any()), bool(lm.mask("trachea").any()))
        if case == "09":
            for key in ("lung_left", "lung_right", "heart", "airway", "bones"):
                v = {"heart": vols.get("heart", 0.0)}.get(key, rec.get(f"{key}_ml"))
                lo, hi = ADULT_ML[key]
                checks[f"{key}_ml in [{lo}, {hi}]"] = (v, lo <= v <= hi)
            ok = rec["left_lung_x"] < rec["right_lung_x"]
            checks["left lung at RAS x < right lung"] = (ok, ok)
            ok = rec["heart_x"] < (rec["left_lung_x"] + rec["right_lung_x"]) / 2
            checks["heart left of the lungs' midline"] = (ok, ok)
        if case == "03":
            ok = lm.meta["chest_ct"] is False
            checks["reported as not a chest CT"] = (ok, ok)
            invented = [c for c in CHEST_ONLY if lm.mask(c).any()]
            checks["no chest organs invented"] = (invented or "none", not invented)
        if case == "02":
            ref = read_labelmap(root / "02_totalseg_example_ct_sm_upper_abdomen_lung_bases/"
                                "seg_total_ml_model_output.nii.gz")
            ts = np.isin(ref.array, [10, 11, 12, 13, 14])
            checks["lung dice vs TotalSegmentator (info)"] = (round(dice(left | right, ts), 4), None)
        if case == "01":
            base = root / "01_totalseg_chest_cta_crop/aorta_crop/seg_model_output"
            for name, file in (("heart", "heart_DERIVED_cropped_from_fullgrid.nii.gz"), ("aorta", "aorta.nii.gz")):
                ref = read_labelmap(base / file)
                checks[f"{name} dice vs TotalSegmentator (info)"] = (round(dice(lm.mask(name), ref.array > 0), 4),
                                                                     None)
            checks["contrast detected"] = (lm.meta.get("contrast"), bool(lm.meta.get("contrast")))
        for key, (value, ok) in checks.items():
            if ok is False:
                failures.append(f"{case}: {key} = {value}")
        montage(vol, lm, out / f"builtin_{case}.png", f"realct {case}: {CASES[case]}")
        summary[case] = rec
        print(f"{case}: {took:5.1f} s  lungs L/R {rec['lung_left_ml']:.0f}/{rec['lung_right_ml']:.0f} mL  "
              f"heart {vols.get('heart', 0):.0f} mL  airway {rec['airway_ml']:.0f} mL  bones {rec['bones_ml']:.0f} mL"
              f"  lobes={lm.meta['lobes']}  chest={lm.meta['chest_ct']}")
        for key, (value, ok) in checks.items():
            print(f"    {'FAIL' if ok is False else 'ok  '} {key}: {value}")
        for note in lm.meta["notes"]:
            print(f"    note: {note}")
        print(f"    not found: {', '.join(lm.meta['not_found']) or '-'}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print(f"all checks passed; montages in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
