"""Does region focus help? Tiny models trained on phantoms with small planted findings, with and without it.

Arms (same phantoms, same tiny LM and encoders, same steps and seeds):

- ``global``: no region focus. Every region slot is given the whole-body mask, so its tokens carry the same
  global view as the <image> tokens; slots keep a fixed order (the region is known from its position).
- ``region``: the region tokens of the real region masks (R2 mask pooling, region crop through the 3D ViT and
  Perceiver, mask encoder), slots shuffled (Reg2RG alignment).
- ``region_attr``: as ``region`` plus MedRegion-CT attribute sentences, measured by the measure layer on the
  phantom's exact label map (a perfect segmenter: an upper bound for the attribute path).

Prints per-finding clinical-efficacy F1 on held-out phantoms (CT-RATE labels from the offline labeler on the
whole generated report versus the truth paragraphs) for each arm, plus micro F1, BLEU-4 and region naming.

    python Testing/benchmarks/region_focus_synthetic.py [--train 48] [--eval 24] [--steps 240] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from MedRegionCTLib.train.datasets import CaseSource  # noqa: E402

REGIONS = ["lung", "pleura", "heart", "mediastinum"]
# small findings: nodules of 6-12 mm (1.5-3 voxels of the 4 mm tiny phantom), small effusions, mild cardiomegaly
SAMPLING = {"probability": {"nodule": 0.5, "mass": 0.0, "consolidation": 0.2, "emphysema": 0.2,
                            "pleural_effusion": 0.35, "pericardial_effusion": 0.25, "cardiomegaly": 0.3,
                            "dilated_aorta": 0.0},
            "nodule_diameter_mm": [6, 12], "pleural_effusion_ml": [100, 250], "pericardial_effusion_mm": [5, 9],
            "cardiomegaly_scale": [1.2, 1.3]}
FINDING_LABELS = ["Lung nodule", "Lung opacity", "Consolidation", "Emphysema", "Pleural effusion",
                  "Pericardial effusion", "Cardiomegaly"]


def build_raw(args) -> str:
    """One phantom -> npz with the CT, the real region masks, the body mask, paragraphs and measured attributes."""
    seed, folder = args
    path = Path(folder) / f"case{seed}.npz"
    if path.is_file():
        return str(path)
    from MedRegionCTLib.anatomy import build_regions
    from MedRegionCTLib.measure import measure
    from MedRegionCTLib.train.synthetic import SyntheticPhantomDataset, expected_labels, paragraphs_from_truth

    ds = SyntheticPhantomDataset(1, seed=seed, regions=REGIONS, sampling=SAMPLING)
    ph, spec = ds.build_phantom(0)
    masks = {r.key: r.mask for r in build_regions(ph.labels, "radgenome10", volume=ph.volume) if r.key in REGIONS}
    sentences = measure(ph.volume, ph.labels, "radgenome10").sentences
    meta = {"spec": spec, "paragraphs": paragraphs_from_truth(ph.truth, REGIONS),
            "attributes": {k: " ".join(sentences[k]) for k in REGIONS if sentences.get(k)},
            "labels": sorted(expected_labels(ph.truth))}
    arrays = {"volume": ph.volume.array, "affine": ph.volume.affine, "body": ph.volume.array > -500,
              **{f"mask_{i}": masks[k] for i, k in enumerate(REGIONS)}, "meta": np.array(json.dumps(meta))}
    tmp = path.with_suffix(".partial.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return str(path)


class ArmSource(CaseSource):
    """The cached phantoms as one arm sees them (module-level state only, so DataLoader workers can pickle it)."""

    regions = REGIONS

    def __init__(self, paths, arm):
        self.paths, self.arm = list(paths), arm

    def __len__(self):
        return len(self.paths)

    def case_id(self, i):
        return Path(self.paths[i]).stem

    def fingerprint(self):
        return {"kind": "region-focus-benchmark", "arm": self.arm}

    def texts(self):
        out = []
        for p in self.paths:
            with np.load(p, allow_pickle=False) as d:
                meta = json.loads(str(d["meta"]))
            # the same corpus in every arm, so that every arm gets the same tiny tokenizer and LM
            out += list(meta["paragraphs"].values()) + list(meta["attributes"].values())
        return out

    def load_case(self, i):
        with np.load(self.paths[i], allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            masks = {k: d[f"mask_{j}"] for j, k in enumerate(REGIONS)}
            if self.arm == "global":
                masks = {k: d["body"] for k in REGIONS}
            case = {"volume": d["volume"], "affine": d["affine"], "regions": masks,
                    "names": {k: k for k in REGIONS}, "paragraphs": meta["paragraphs"], "id": self.case_id(i)}
        if self.arm == "region_attr":
            case["attributes"] = meta["attributes"]
        return case


def run_arm(arm: str, train_paths, eval_paths, args) -> dict:
    from MedRegionCTLib.train import TrainConfig
    from MedRegionCTLib.train.trainer import Trainer

    prompt = {"use_attributes": arm == "region_attr", "shuffle_slots": arm != "global"}
    config = TrainConfig.from_dict({
        "output_dir": str(args.out / arm), "seed": args.seed,
        "model": {"preset": "hybrid", "tiny": {"hidden_size": 128, "vocab_size": 800},
                  "config": {"llm": {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                                     "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"]},
                             "prompt": prompt, "generation": {"max_new_tokens": 48, "batch_size": 32}}},
        "data": {"cache_dir": str(args.out / "cache"), "num_workers": args.workers, "batch_size": 4},
        "optim": {"lr": 3e-3, "warmup": 0.1},
        "train": {"steps": args.steps, "checkpoint_every": 0, "log_every": 20, "export_model": False,
                  "threads": args.threads},
        "eval": {"metrics": ["BLEU-1", "BLEU-4", "ROUGE-L"]},
    })
    t0 = time.perf_counter()
    result = Trainer(config, resume=False, progress=False, log=lambda m: print(f"[{arm}] {m}", flush=True),
                     train_source=ArmSource(train_paths, arm), eval_source=ArmSource(eval_paths, arm)).run()
    step = result["steps"]
    metrics = json.loads((args.out / arm / "eval" / f"step_{step:06d}_metrics.json").read_text())
    ce = metrics["clinical_efficacy"]
    return {"arm": arm, "time_s": time.perf_counter() - t0, "loss_first": result["loss_first"],
            "loss_last": result["loss_last"], "micro_f1": ce["micro"]["f1"], "BLEU-4": metrics["mean"]["BLEU-4"],
            "region_names": metrics["region_names"]["accuracy"],
            "per_label": {n: ce["per_label"][n] for n in FINDING_LABELS}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=48)
    parser.add_argument("--eval", type=int, default=24)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--arms", default="global,region,region_attr")
    parser.add_argument("--out", type=Path, default=Path("runs/region_focus"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    raw = args.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seeds = list(range(args.train)) + list(range(100000, 100000 + args.eval))
    with ProcessPoolExecutor(max(args.workers, 1)) as pool:
        paths = list(pool.map(build_raw, [(s, str(raw)) for s in seeds]))
    print(f"{len(paths)} phantoms ready in {time.perf_counter() - t0:.0f} s", flush=True)
    train_paths, eval_paths = paths[: args.train], paths[args.train:]
    support = {n: 0 for n in FINDING_LABELS}
    for p in eval_paths:
        with np.load(p, allow_pickle=False) as d:
            for n in json.loads(str(d["meta"]))["labels"]:
                support[n] = support.get(n, 0) + 1
    results = [run_arm(arm, train_paths, eval_paths, args) for arm in args.arms.split(",")]
    print("\nper-finding clinical-efficacy F1 on held-out phantoms (support = positive reports)")
    print(f"{'label':<22} {'support':>7} " + " ".join(f"{r['arm']:>12}" for r in results))
    for n in FINDING_LABELS:
        print(f"{n:<22} {support.get(n, 0):>7} " + " ".join(f"{r['per_label'][n]['f1']:>12.3f}" for r in results))
    for key in ("micro_f1", "BLEU-4", "region_names", "loss_last", "time_s"):
        print(f"{key:<22} {'':>7} " + " ".join(f"{r[key]:>12.3f}" for r in results))
    (args.out / "results.json").write_text(json.dumps({"support": support, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
