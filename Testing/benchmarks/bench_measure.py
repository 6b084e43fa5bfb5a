"""Time `measure` on a phantom and print its errors against the analytic truth.

    python Testing/benchmarks/bench_measure.py [--preset standard] [--findings SPEC] [--cache FILE]
    python Testing/benchmarks/bench_measure.py --preset small --pyradiomics PYTHON

``--pyradiomics PYTHON``: a Python that has pyradiomics (it need not be this one); its shape features
(VoxelVolume, Maximum3DDiameter) of every class and every region are compared with ours, and timed.

``--cache FILE``: keep the built phantom in FILE (a pickle; built once, ~30 s for the standard preset).
``--json FILE``: write the full measurements (``to_json``) there, to compare runs.
``--profile``: print the time of each stage of ``measure`` (structures, regions, clinical, lesions).

Lesions are found from image intensity: the truth lesion labels are removed from the label map first.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_measure_phantom import STANDARD_FINDINGS, without_lesion_labels  # noqa: E402

from MedRegionCTLib.measure import measure  # noqa: E402
from MedRegionCTLib.phantom import make_phantom  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--findings", default=STANDARD_FINDINGS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pyradiomics", default=None, metavar="PYTHON")
    ap.add_argument("--cache", default=None, metavar="FILE")
    ap.add_argument("--json", default=None, metavar="FILE")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ph = _phantom(args)
    labels = without_lesion_labels(ph.labels)
    print(f"phantom {args.preset} {ph.volume.shape}: ready in {time.perf_counter() - t0:.1f} s")
    times = {}
    for what, kwargs in (("structures+clinical", {"regions": False, "lesions": False}),
                         ("everything", {})):
        stages = _StageClock()
        t, cpu = time.perf_counter(), time.process_time()
        result = measure(ph.volume, labels, progress=stages if args.profile else None, **kwargs)
        times[what] = time.perf_counter() - t
        # CPU time well below wall time means other jobs shared the cores: the wall figure is then too high.
        print(f"measure ({what}): {times[what]:.2f} s (CPU {time.process_time() - cpu:.2f} s)")
        if args.profile:
            print("  " + ", ".join(f"{name} {sec:.2f} s" for name, sec in stages.laps))
    if args.profile:
        from MedRegionCTLib.anatomy import build_regions

        t, cpu = time.perf_counter(), time.process_time()
        build_regions(labels, "radgenome10", ph.volume)
        print(f"  of which build_regions (own find_objects): {time.perf_counter() - t:.2f} s "
              f"(CPU {time.process_time() - cpu:.2f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1))
    truth = ph.truth["structures"]
    errors = []
    for name, a in result.structures.items():
        if name in truth and truth[name]["volume_ml"] > 1:
            errors.append((abs(a["volume_ml"] / truth[name]["volume_ml"] - 1) * 100, name))
    errors.sort(reverse=True)
    print(f"volume error vs analytic truth: median {np.median([e for e, _ in errors]):.2f} %, "
          f"worst: {', '.join(f'{n} {e:.2f} %' for e, n in errors[:5])}")
    m, c = ph.truth["measures"], result.clinical
    diag = float(np.linalg.norm(ph.volume.spacing))
    print(f"voxel diagonal {diag:.2f} mm")
    for ours, theirs in (("cardiothoracic_ratio", "cardiothoracic_ratio"),
                         ("ascending_aorta_diameter_mm", "ascending_aorta_diameter_mm"),
                         ("descending_aorta_diameter_mm", "descending_aorta_diameter_mm"),
                         ("main_pulmonary_artery_diameter_mm", "pulmonary_trunk_diameter_mm"),
                         ("trachea_diameter_mm", "trachea_outer_diameter_mm")):
        v = c[ours]["value"]
        print(f"  {ours}: {v:.3f} (truth {m[theirs]}, error {v - m[theirs]:+.3f})")
    for side in ("right", "left"):
        v, t = c["lung_volume_ml"][side], m[f"lung_volume_{side}_ml"]
        print(f"  lung volume {side}: {v:.1f} mL (truth {t}, {100 * (v / t - 1):+.2f} %)")
    for f in ph.truth["findings"]:
        if f["kind"] in ("nodule", "mass"):
            near = [les for les in result.lesions if les["kind"] in ("nodule", "mass") and
                    np.linalg.norm(np.subtract(les["centroid_ras"], f["center_ras"])) < f["diameter_mm"] / 2]
            if not near:
                print(f"  {f['kind']} {f['diameter_mm']} mm {f['lobe']}: NOT FOUND")
                continue
            les = near[0]
            print(f"  {f['kind']} {f['diameter_mm']} mm {f['lobe']}: found {les['max_diameter_mm']:.2f} mm "
                  f"({les['max_diameter_mm'] - f['diameter_mm']:+.2f}), {les['volume_ml']:.3f} mL (truth "
                  f"{f['volume_ml']}, {100 * (les['volume_ml'] / f['volume_ml'] - 1):+.1f} %), lobe {les['lobe']}, "
                  f"{les['subtype']}, confidence {les['confidence']}")
        if f["kind"] == "pleural_effusion":
            eff = [les for les in result.lesions if les["kind"] == "pleural_effusion"]
            for les in eff:
                print(f"  pleural effusion {les['side']}: {les['volume_ml']:.1f} mL (truth {f['volume_ml']} "
                      f"{f['side']}, {100 * (les['volume_ml'] / f['volume_ml'] - 1):+.1f} %)")
    print(f"lesions reported: {len(result.lesions)}; unreported candidates: "
          f"{len(result.meta.get('unreported_candidates', []))}")
    if args.pyradiomics:
        compare_pyradiomics(args.pyradiomics, ph, labels, result, times["everything"])


def _phantom(args):
    """The phantom, from ``--cache`` when it holds the same preset, seed and findings."""
    key = (args.preset, args.seed, args.findings)
    if args.cache and Path(args.cache).is_file():
        with open(args.cache, "rb") as f:
            cached_key, ph = pickle.load(f)
        if cached_key == key:
            return ph
    ph = make_phantom(args.preset, seed=args.seed, findings=args.findings)
    if args.cache:
        with open(args.cache, "wb") as f:
            pickle.dump((key, ph), f, protocol=pickle.HIGHEST_PROTOCOL)
    return ph


class _StageClock:
    """A progress callback that records the time between measure()'s steps."""

    def __init__(self):
        self.last = time.perf_counter()
        self.laps = []

    def __call__(self, *args, **kwargs):
        now = time.perf_counter()
        text = next((a for a in (*args, *kwargs.values()) if isinstance(a, str)), "step")
        self.laps.append((text, now - self.last))
        self.last = now


_RADIOMICS_SCRIPT = """
import json, sys, time, logging
import SimpleITK as sitk
import numpy as np
from radiomics import shape
logging.getLogger("radiomics").setLevel(logging.ERROR)
ct = sitk.ReadImage(sys.argv[1])
out = {}
t0 = time.perf_counter()
for path in sys.argv[3:]:
    lab = sitk.ReadImage(path)
    arr = sitk.GetArrayFromImage(lab)
    for value in np.unique(arr):
        if value == 0:
            continue
        mask = sitk.Cast(lab == int(value), sitk.sitkUInt8)
        mask.CopyInformation(lab)
        f = shape.RadiomicsShape(ct, mask, label=1)
        out[path + ":" + str(int(value))] = {"volume_mm3": float(f.getVoxelVolumeFeatureValue()),
                                            "max3d_mm": float(f.getMaximum3DDiameterFeatureValue())}
out["_seconds"] = time.perf_counter() - t0
json.dump(out, open(sys.argv[2], "w"))
"""


def compare_pyradiomics(python: str, ph, labels, result, our_seconds: float) -> None:
    """pyradiomics' VoxelVolume and Maximum3DDiameter of every class and region against ours."""
    from MedRegionCTLib.anatomy import build_regions
    from MedRegionCTLib.volume import LabelMap, write_nifti

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_nifti(ph.volume, tmp / "ct.nii.gz")
        write_nifti(LabelMap(labels.array, labels.affine, {}), tmp / "labels.nii.gz")
        region_files = {}
        for r in build_regions(labels, "radgenome10", ph.volume):
            if not r.empty:
                f = tmp / f"region_{len(region_files)}.nii.gz"
                write_nifti(LabelMap(r.mask.astype(np.uint8), labels.affine, {}), f)
                region_files[str(f) + ":1"] = r.key
        script = tmp / "rad.py"
        script.write_text(_RADIOMICS_SCRIPT)
        subprocess.run([python, str(script), str(tmp / "ct.nii.gz"), str(tmp / "out.json"),
                        str(tmp / "labels.nii.gz"), *sorted({k.rsplit(":", 1)[0] for k in region_files})],
                       check=True)
        rad = json.loads((tmp / "out.json").read_text())
    seconds = rad.pop("_seconds")
    vol_err, dia_err = [], []
    for key, feats in rad.items():
        path, value = key.rsplit(":", 1)
        if key in region_files:
            ours = result.regions.get(region_files[key])
        else:
            ours = result.structures.get(labels.names.get(int(value), ""))
        if not ours:
            continue
        vol_err.append((abs(ours["volume_ml"] * 1000 / feats["volume_mm3"] - 1) * 100, key))
        dia_err.append((abs(ours["max_diameter_mesh_mm"] / feats["max3d_mm"] - 1) * 100,
                        region_files.get(key, labels.names.get(int(value), key))))
    vol_err.sort(reverse=True)
    dia_err.sort(reverse=True)
    print(f"pyradiomics shape (VoxelVolume, Maximum3DDiameter) on {len(rad)} classes+regions: "
          f"{seconds:.1f} s (shape class only) vs ours {our_seconds:.1f} s for all measurements "
          f"({seconds / our_seconds:.1f}x)")
    print(f"  volume: max error {vol_err[0][0]:.4f} %")
    print(f"  Maximum3DDiameter vs our max_diameter_mesh_mm: max error {dia_err[0][0]:.3f} % ({dia_err[0][1]}), "
          f"median {np.median([e for e, _ in dia_err]):.4f} %; "
          f"{sum(e <= 1 for e, _ in dia_err)}/{len(dia_err)} within 1 %")


if __name__ == "__main__":
    main()
