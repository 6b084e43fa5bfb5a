"""`medregionct segment`: CT -> TotalSegmentator-named label map -> one mask per region, written to a folder.

Writes, in ``--out DIR``:

- ``labels.nii.gz``: class indices of this project's TotalSegmentator table, on the CT grid;
- ``labels.json``: ``{"labels": {index: class name}, "not_found": [...], ...}``;
- ``regions/<region key>.nii.gz``: one binary mask per region that has voxels (RadGenome keys, e.g.
  ``trachea and bronchie.nii.gz``, so Reg2RG-style loaders find them);
- ``regions.json``: per region its volume, the classes or rules it came from, SNOMED CT code and colour.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "segment", help="segment a CT into TotalSegmentator classes and anatomical regions",
        description="Segment a chest CT (built-in segmenter, TotalSegmentator, or an existing label file), "
                    "then derive one mask per anatomical region (RadGenome-10 or MedRegion-6). Writes "
                    "labels.nii.gz, labels.json, regions/<region>.nii.gz and regions.json into --out.")
    p.add_argument("ct", metavar="CT", help="the CT: NIfTI, NRRD/MetaImage file or DICOM series folder")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    add_segmenter_arguments(p)
    p.add_argument("--no-ct-check", action="store_true",
                   help="load even when the intensities do not look like CT Hounsfield units")
    p.add_argument("--series", metavar="UID_OR_NUMBER",
                   help="which series to read when a DICOM folder holds several (SeriesInstanceUID or series number)")
    p.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in --out (the whole folder: nothing of the earlier run stays)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_segmenter_arguments(p) -> None:
    """--method, --schema and the TotalSegmentator / label-import options (shared with `report` and `batch`)."""
    p.add_argument("--method", default="auto", metavar="METHOD",
                   help="auto (default: TotalSegmentator when it and its weights are installed, else builtin), "
                        "builtin, totalsegmentator, or labels:FILE to import an existing label "
                        "map, Slicer .seg.nrrd or TotalSegmentator output (file or folder)")
    p.add_argument("--schema", default="radgenome10", metavar="SCHEMA",
                   help="region schema: radgenome10 (default), medregion6, or a schema JSON file")
    ts = p.add_argument_group("TotalSegmentator options (--method totalsegmentator, or auto when it is chosen)")
    ts.add_argument("--fast", action="store_true", default=None, help="3 mm model instead of 1.5 mm (faster)")
    ts.add_argument("--device", choices=("cpu", "cuda"), default=None, help="where to run it (default cpu)")
    ts.add_argument("--task", action="append", default=None, metavar="TASK", dest="tasks",
                    help="extra TotalSegmentator task (repeatable): lung_vessels, trunk_cavities, "
                         "pleural_pericard_effusion, lung_nodules, breasts")
    ts.add_argument("--weights", default=None, metavar="DIR",
                    help="TotalSegmentator weights folder (default: TotalSegmentator's own setting)")
    lab = p.add_argument_group("label import options (--method labels:FILE)")
    lab.add_argument("--label-table", default=None, metavar="FILE",
                     help="label table of the label file: JSON, CSV/TSV or Slicer colour table (.ctbl/.txt)")
    lab.add_argument("--map", default=None, metavar="FILE", dest="mapping",
                     help="JSON object renaming the file's label names to TotalSegmentator names")


def segmenter_options(args) -> dict:
    from ..errors import InputError

    method = args.method.strip().lower()
    ts_given = {k: v for k, v in (("fast", args.fast), ("device", args.device), ("tasks", args.tasks),
                                  ("weights_dir", args.weights)) if v is not None}
    label_given = {k: v for k, v in (("table", args.label_table), ("mapping", args.mapping)) if v is not None}
    if method in ("auto", "totalsegmentator", "totalseg", "ts"):
        if label_given:
            raise InputError("--label-table/--map apply to --method labels:FILE only; drop them.")
        return ts_given
    if method.startswith("labels:"):
        if ts_given:
            raise InputError("--fast/--device/--task/--weights apply to --method totalsegmentator only; "
                             "drop them.")
        return label_given
    if ts_given or label_given:
        raise InputError(f"--method {args.method} takes no TotalSegmentator or label-import options; "
                         "drop them.")
    return {}


def run(args) -> int:
    from ..anatomy import build_regions, load_schema
    from ..pipeline import prepare_volume
    from ..pipeline.output_folder import OutputFolder
    from ..pipeline.outputs import write_segmentation
    from ..progress import TqdmProgress
    from ..segment import get_segmenter
    from ..volume import read_volume
    from .report import label_inputs

    schema = load_schema(args.schema)  # fail on a bad schema before any long work
    segmenter = get_segmenter(args.method, **segmenter_options(args))
    folder = OutputFolder(args.out, overwrite=args.overwrite, inputs=[Path(args.ct), *label_inputs(args)],
                          command="segment")
    report = TqdmProgress(desc="segment", disable=args.no_progress or None)

    try:
        with folder as staging:
            report(0.0, "reading the CT")
            volume = prepare_volume(read_volume(args.ct, check_ct=not args.no_ct_check, series=args.series))
            report(0.1, f"segmenting ({segmenter.name})")
            # The segmenter's own progress fills 10-80 % of the bar.
            labelmap = segmenter.segment(volume, progress=lambda f, m: report(0.1 + 0.7 * f, m))
            report(0.8, "building region masks")
            regions = build_regions(labelmap, schema, volume)
            report(0.9, "writing")
            method = segmenter.name if args.method.strip().lower() == "auto" else args.method
            summary = write_segmentation(staging, labelmap, regions, schema, method)
            report(1.0, "done")
    finally:
        report.close()
    out = folder.out
    summary["out"] = str(out)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{out}: {len(labelmap.names)} classes in labels.nii.gz, schema {schema.name}")
    print(f"  segmentation: {segmenter.name} ({segmenter.selection['reason']})")
    if not summary["labels"]["chest_ct"]:
        print(f"  not a chest CT: {summary['labels']['chest_ct_reason']}")
    for note in summary["labels"]["limitations"]:
        print(f"  limitation: {note}")
    not_found = summary["labels"]["not_found"]
    if not_found:
        more = f" ... ({len(not_found) - 12} more in labels.json)" if len(not_found) > 12 else ""
        print(f"  not found: {', '.join(not_found[:12])}{more}")
    if summary["labels"]["unknown_names"]:
        print(f"  names outside the TotalSegmentator table: {', '.join(summary['labels']['unknown_names'])}")
    width = max(len(k) for k in summary["regions"])
    for key, info in summary["regions"].items():
        if info["file"] is None:
            flag = "  (expected in a chest CT)" if info["expected_in_chest_ct"] else ""
            print(f"  {key:<{width}}  -- empty{flag}")
        else:
            print(f"  {key:<{width}}  {info['volume_ml']:9.1f} mL  from {'; '.join(info['sources'])}")
    sys.stdout.flush()
    return 0
