"""`medregionct demo`: build the phantom chest CT and run the whole pipeline on it (segment, measure, report),
fully offline."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="make the built-in phantom chest CT and run the pipeline on it (offline)",
        description="Make the synthetic chest CT (exact labels, planted findings) and run the whole pipeline on it "
                    "with the built-in segmenter and the measurement reporter: DIR/report.json, report.md, "
                    "report.html, measurements.json/.csv and the segmentation (labels.nii.gz, regions/). Also "
                    "writes the phantom itself: DIR/ct.nii.gz, DIR/truth_labels.nii.gz with DIR/truth_labels.json "
                    "(index -> class name), DIR/truth_findings.nii.gz (finding id per voxel) and DIR/truth.json "
                    "(true organ volumes, planted findings, reference measures).")
    p.add_argument("--out", metavar="DIR", default="medregionct-demo", help="output folder (default: %(default)s)")
    p.add_argument("--preset", choices=["tiny", "small", "standard"], default="standard",
                   help="phantom size: tiny (96^3 at 4 mm, for tests), small (2 mm), standard (512x512x300 at "
                        "0.75x0.75x1.25 mm, a real chest CT's grid); default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same CT (default 0)")
    p.add_argument("--findings", default="default", metavar="SPEC",
                   help="planted findings: 'none', 'default', 'all', or items like "
                        "'nodule:RUL:8:solid,mass:LUL:35,pleural_effusion:right:300,pericardial_effusion:10,"
                        "cardiomegaly:1.25,dilated_aorta:46,emphysema:upper,consolidation:RLL' "
                        "(lobes RUL RML RLL LUL LLL; default: %(default)s)")
    p.add_argument("--contrast", action="store_true", help="contrast-enhanced blood pool (default: non-contrast)")
    p.add_argument("--arms", choices=["up", "down"], default="up",
                   help="arms raised out of the field of view, or down at the sides (default: %(default)s)")
    p.add_argument("--breasts", action="store_true", help="add breasts")
    p.add_argument("--phantom-only", action="store_true", help="write the phantom and its truth only; no report")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# what the demo writes besides the files of `medregionct report`
OUTPUTS = ("ct.nii.gz", "truth_labels.nii.gz", "truth_labels.json", "truth_findings.nii.gz",
           "truth_findings.json", "truth.json")


def run(args) -> int:
    from ..atomic import write_json
    from ..phantom import make_phantom
    from ..pipeline import analyze
    from ..pipeline.output_folder import OutputFolder
    from ..pipeline.outputs import write_all
    from ..progress import TqdmProgress
    from ..volume import write_nifti
    from .report import print_summary

    folder = OutputFolder(args.out, overwrite=args.overwrite, own_names=OUTPUTS, command="demo")
    with folder as staging:
        with TqdmProgress("phantom", disable=args.quiet or None) as bar:
            phantom = make_phantom(args.preset, seed=args.seed, findings=args.findings, contrast=args.contrast,
                                   arms=args.arms, breasts=args.breasts, progress=bar)
        write_nifti(phantom.volume, staging / "ct.nii.gz")
        write_nifti(phantom.labels, staging / "truth_labels.nii.gz")
        write_nifti(phantom.findings_map, staging / "truth_findings.nii.gz")
        if not phantom.findings_map.names:  # no findings: still say so explicitly
            write_json(staging / "truth_findings.json", {})
        write_json(staging / "truth.json", phantom.truth)
        if not args.phantom_only:
            with TqdmProgress("report", disable=args.quiet or None) as bar:
                analysis = analyze(phantom.volume, segmenter="builtin", progress=lambda f, m: bar(0.95 * f, m))
                bar(0.95, "writing")
                write_all(staging, analysis, meta={"ct": str(folder.out / "ct.nii.gz")})
                bar(1.0, "done")
    _print_summary(phantom, folder.out)
    if not args.phantom_only:
        print_summary(analysis.report, folder.out)
    return 0


def _print_summary(phantom, out: Path) -> None:
    truth = phantom.truth
    worst = max(((abs(s["label_map_volume_ml"] - s["volume_ml"]) / s["volume_ml"], name)
                 for name, s in truth["structures"].items() if s["volume_ml"] >= 5.0), default=(0.0, "-"))
    print(f"Phantom CT ({truth['preset']}, seed {truth['seed']}) written to {out}/")
    print(f"  {len(truth['structures'])} labelled structures; label-map volumes within {100 * worst[0]:.2f}% of the "
          f"true volumes for every structure of 5 mL or more (largest gap: {worst[1]})")
    for f in truth["findings"]:
        where = f.get("lobe") or f.get("side") or f.get("region", "")
        size = f" {f['diameter_mm']:g} mm" if "diameter_mm" in f else ""
        vol = f", {f['volume_ml']:.1f} mL" if f.get("volume_ml") else ""
        print(f"  finding {f['id']}: {f['kind']}{size} ({where}){vol}")
