"""How many contradictions of the planted truth does the grounding check flag in a trained tiny model's reports?

Trains (or reuses) the tiny model of ``train_tiny_synthetic.json`` on synthetic phantoms, writes the reports of
held-out phantoms with it (``analyze(..., reporter="model:...")``: the check runs on every report) and compares
every statement of the five trained regions with the phantom's planted truth (kind, present/absent, side,
size). Printed: statements judged, those that contradict the truth, how many of them the check flagged, the ones
it missed (and why: the measure layer cannot see them, e.g. nodules under its detection limit), and flags on
statements the truth supports.

    python Testing/benchmarks/grounding_tiny_synthetic.py                     # trains first (CPU, minutes)
    python Testing/benchmarks/grounding_tiny_synthetic.py --run runs/tiny_synthetic --cases 12 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REGIONS = ["lung", "pleura", "heart", "mediastinum", "trachea and bronchie"]
NODULES = ("nodule", "mass")
JUDGED = {"nodule", "mass", "pleural_effusion", "pericardial_effusion", "cardiomegaly", "emphysema", "consolidation"}


def truth_problem(statement, truth: dict, tolerance: dict) -> str | None:
    """Why ``statement`` contradicts the phantom's planted truth, or None (also when the truth cannot judge it)."""
    kind = "nodule" if statement.kind in NODULES else statement.kind
    if kind not in JUDGED:
        return None
    planted = [f for f in truth.get("findings", []) if ("nodule" if f["kind"] in NODULES else f["kind"]) == kind]
    if kind == "cardiomegaly":
        ratio = (truth.get("measures") or {}).get("cardiothoracic_ratio")
        if ratio is None:
            return None
        planted = [{"side": None}] if ratio > 0.5 else []
    sides = {f.get("side") for f in planted if f.get("side") in ("left", "right")}
    if statement.state == "negated":
        if statement.side in ("left", "right") and sides and statement.side not in sides:
            return None
        return f"planted {kind} stated absent" if planted else None
    if statement.state != "present":
        return None
    if not planted:
        return f"{kind} stated, none planted"
    if statement.side in ("left", "right") and sides and statement.side not in sides:
        return f"{kind} on the {statement.side}, planted on the {'/'.join(sorted(sides))}"
    stated = statement.size.get("max_diameter_mm")
    values = [f["diameter_mm"] for f in planted if f.get("diameter_mm")]
    if stated is not None and values:
        spec = tolerance["max_diameter_mm"]
        if not any(abs(stated - v) <= max(spec["absolute"], spec["relative"] * v) for v in values):
            return f"{kind} {stated:g} mm, planted {values}"
    stated = statement.size.get("volume_ml")
    values = [f.get("volume_ml") or f.get("requested_volume_ml") for f in planted]
    values = [v for v in values if v]
    if stated is not None and values:
        spec = tolerance["volume_ml"]
        if not any(abs(stated - v) <= max(spec["absolute"], spec["relative"] * v) for v in values):
            return f"{kind} {stated:g} mL, planted {[round(v) for v in values]}"
    return None


def ensure_model(run: Path, train: bool) -> Path:
    from MedRegionCTLib.train import load_train_config
    from MedRegionCTLib.train.trainer import Trainer

    best = run / "checkpoints" / "best"
    if best.is_dir() and not train:
        return best
    config = load_train_config(HERE / "train_tiny_synthetic.json")
    data = config.to_dict()
    data["output_dir"] = str(run)
    from MedRegionCTLib.train.config import TrainConfig

    t = time.perf_counter()
    result = Trainer(TrainConfig.from_dict(data), resume=True, progress=False).run()
    print(f"trained {result['steps']} steps in {time.perf_counter() - t:.0f} s (loss {result['loss_first']:.3f} -> "
          f"{result['loss_last']:.3f})")
    return best if best.is_dir() else Path(result["checkpoint"]) / "model"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/tiny_synthetic", help="training output folder (reused when trained)")
    parser.add_argument("--train", action="store_true", help="train (or resume) even when a model is there")
    parser.add_argument("--cases", type=int, default=12, help="held-out phantoms (the config's eval seed)")
    parser.add_argument("--json", default=None, help="write the figures and every judged statement here")
    args = parser.parse_args(argv)

    from MedRegionCTLib.model.reporter import ModelReporter
    from MedRegionCTLib.pipeline import analyze
    from MedRegionCTLib.report.labeler import extract_statements, grounding_table
    from MedRegionCTLib.train.synthetic import SyntheticPhantomDataset

    model_dir = ensure_model(Path(args.run), args.train)
    reporter = ModelReporter(model_dir, device="cpu")
    data = SyntheticPhantomDataset(n=args.cases, seed=100000, regions=REGIONS)
    tolerance = grounding_table()["tolerance"]
    rows, contradictions_total = [], 0
    t0 = time.perf_counter()
    for i in range(args.cases):
        ph, spec = data.build_phantom(i)
        report = analyze(ph.volume, labelmap=ph.labels, reporter=reporter, grounding="flag").report
        contradictions_total += len(report.contradictions)
        flagged = {(c.region, c.sentence, c.claim.split()[0], c.claim.split()[1]) for c in report.contradictions}
        for region in report.regions:
            if region.key not in REGIONS:
                continue
            for index, sentence in enumerate(region.sentences):
                for st in extract_statements(sentence.text):
                    if ("nodule" if st.kind in NODULES else st.kind) not in JUDGED | {"nodule"}:
                        continue
                    state = "absent" if st.state == "negated" else "present"
                    rows.append({"case": i, "spec": spec, "region": region.key, "sentence": sentence.text,
                                 "claim": st.claim, "truth": truth_problem(st, ph.truth, tolerance),
                                 "flagged": (region.key, index, st.kind, state) in flagged})
    wrong = [r for r in rows if r["truth"]]
    caught = [r for r in wrong if r["flagged"]]
    false_flags = [r for r in rows if r["flagged"] and not r["truth"]]
    figures = {"cases": args.cases, "statements_judged": len(rows), "contradict_truth": len(wrong),
               "flagged_of_those": len(caught), "missed": len(wrong) - len(caught),
               "flagged_but_truth_agrees": len(false_flags), "contradictions_recorded_all_regions":
               contradictions_total, "seconds": round(time.perf_counter() - t0, 1), "model": str(model_dir)}
    print(f"{args.cases} held-out phantoms, {len(rows)} statements about planted kinds in the 5 trained regions:")
    print(f"  contradict the planted truth: {len(wrong)}; flagged by the check: {len(caught)} "
          f"({100 * len(caught) / max(len(wrong), 1):.0f}%); missed: {len(wrong) - len(caught)}")
    print(f"  flagged although the truth agrees: {len(false_flags)}")
    for r in wrong:
        if not r["flagged"]:
            print(f"  missed: case {r['case']} ({r['spec']}) {r['region']}: {r['sentence']!r} -- {r['truth']}")
    for r in false_flags:
        print(f"  false flag: case {r['case']} ({r['spec']}) {r['region']}: {r['sentence']!r}")
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "statements": rows}, indent=1))
    print("figures:", json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
    sys.exit(0)
