"""Overfit check: a tiny MedRegion model learns 8 phantom CTs' region paragraphs to the exact text on a CPU.

Every part of the path has to learn for this to pass: the slot embeddings, the projectors, the 3D ViT and
Perceiver, the mask encoder and the LoRA adapter (the 2D encoder is frozen, as configured). Slots are shuffled
in every step, so the model must also recognise each region from its tokens to name it.

    python Testing/benchmarks/overfit_phantom.py [--steps 200] [--preset hybrid] [--cache DIR]

Prints the loss curve, the time, and every generated paragraph that differs from the truth; exits 1 when
any region's name or paragraph is not reproduced exactly.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

# 8 cases: the findings differ per case, so each paragraph can only be told apart from the image.
FINDINGS = [
    "nodule:RUL:14:solid",
    "nodule:LLL:10:solid,cardiomegaly:1.3",
    "pleural_effusion:right:300",
    "none",
    "nodule:RML:12:solid,pleural_effusion:left:250",
    "cardiomegaly:1.3",
    "nodule:LUL:16:solid,pleural_effusion:right:300",
    "nodule:RLL:10:solid,cardiomegaly:1.3,pleural_effusion:left:250",
]
REGIONS = ("lung", "heart", "pleura", "trachea and bronchie")
LOBE_WORDS = {"upper": "upper", "middle": "middle", "lower": "lower"}


def paragraphs_from_truth(truth: dict) -> dict[str, str]:
    """Region paragraphs that state exactly what the phantom truth records."""
    found = truth["findings"]
    nodules = [f for f in found if f["kind"] == "nodule"]
    effusions = [f for f in found if f["kind"] == "pleural_effusion"]
    big_heart = any(f["kind"] == "cardiomegaly" for f in found)
    if nodules:
        lung = " ".join(
            f"A {f['diameter_mm']:.0f} mm solid nodule is seen in the {f['side']} "
            f"{f['lobe'].split('_')[1]} lobe." for f in nodules)
    else:
        lung = "The lungs are clear."
    pleura = " ".join(f"There is a {f['side']} pleural effusion." for f in effusions) or "No pleural effusion."
    return {
        "lung": lung,
        "heart": "The heart is enlarged." if big_heart else "Heart size is normal.",
        "pleura": pleura,
        "trachea and bronchie": "The trachea and bronchi are patent.",
    }


def phantom_cases(cache: Path | None) -> list[dict]:
    from MedRegionCTLib.anatomy.regions import region_masks
    from MedRegionCTLib.phantom import make_phantom

    cases = []
    for seed, spec in enumerate(FINDINGS):
        path = cache / f"case{seed}.npz" if cache else None
        if path is not None and path.is_file():
            data = np.load(path, allow_pickle=False)
            regions = {k: data[f"mask_{i}"] for i, k in enumerate(REGIONS)}
            volume, affine = data["volume"], data["affine"]
            paragraphs = dict(zip(REGIONS, data["paragraphs"].tolist()))
        else:
            ph = make_phantom("tiny", seed=seed, findings=spec)
            masks = region_masks(ph.labels, "radgenome10", volume=ph.volume)
            regions = {k: masks[k] for k in REGIONS}
            volume, affine = ph.volume.array, ph.volume.affine
            paragraphs = paragraphs_from_truth(ph.truth)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(path, volume=volume, affine=affine,
                                    paragraphs=np.array([paragraphs[k] for k in REGIONS]),
                                    **{f"mask_{i}": regions[k] for i, k in enumerate(REGIONS)})
        cases.append({"volume": volume, "affine": affine, "regions": regions, "paragraphs": paragraphs})
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--preset", default="hybrid", choices=["hybrid", "reg2rg", "medregion"])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--cache", type=Path, default=None, help="folder to keep the phantom cases between runs")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from MedRegionCTLib.model import MedRegionModel
    from MedRegionCTLib.model.tiny import corpus_for, tiny_config, write_tiny_llm, write_tiny_vision2d

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    cases = phantom_cases(args.cache)
    t_data = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        grid = {"grid": (32, 32, 16), "num_slices": 16, "slice_size": 32}
        config_probe = tiny_config(tmp / "llm", tmp / "v2", name=args.preset, preprocess=grid)
        write_tiny_llm(tmp / "llm", corpus_for(cases, config_probe), hidden_size=128, layers=2, heads=4,
                       vocab_size=600, seed=args.seed)
        write_tiny_vision2d(tmp / "v2", image_size=32, patch_size=8, hidden_size=32)
        config = tiny_config(
            tmp / "llm", tmp / "v2", name=args.preset, preprocess=grid,
            llm={"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                 "lora_target_modules": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                         "down_proj")},
            prompt={"use_attributes": False},  # the answers must come from the image, not from text
            generation={"max_new_tokens": 40, "batch_size": 32})
        model = MedRegionModel.from_config(config)
        prepared = model.prepare(cases)
        trainable = [p for p in model.parameters() if p.requires_grad]
        print(f"preset {args.preset}: {sum(p.numel() for p in trainable):,} trainable of "
              f"{sum(p.numel() for p in model.parameters()):,} parameters; data {t_data:.1f} s")
        opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
        rng = random.Random(args.seed)
        t1 = time.perf_counter()
        model.train()
        for step in range(1, args.steps + 1):
            loss = model(model.build_inputs(prepared, train=True, rng=rng)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            if step == 1 or step % 25 == 0:
                print(f"step {step:4d}  loss {loss.item():.4f}  {time.perf_counter() - t1:6.1f} s", flush=True)
        t_train = time.perf_counter() - t1

        t2 = time.perf_counter()
        reports = model.generate_reports(prepared)
        t_gen = time.perf_counter() - t2
    wrong = 0
    total = 0
    for i, (case, report) in enumerate(zip(prepared, reports)):
        for key in case.keys:
            total += 1
            got = report.get(key, {})
            if got.get("paragraph") != case.paragraphs[key] or got.get("name") != case.name_of(key):
                wrong += 1
                print(f"case {i} {key!r}: got name {got.get('name')!r}, paragraph {got.get('paragraph')!r}; "
                      f"expected {case.paragraphs[key]!r}")
    print(f"exact: {total - wrong}/{total} region paragraphs and names; training {t_train:.1f} s "
          f"({args.steps} steps), generation {t_gen:.1f} s, total {time.perf_counter() - t0:.1f} s")
    return 0 if wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
