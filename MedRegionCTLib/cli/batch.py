"""`medregionct batch`: the report of every CT in a folder; resumable, failures recorded, never fatal."""

from __future__ import annotations

from .report import add_engine_arguments, engine_from_args
from .segment import add_segmenter_arguments, segmenter_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch", help="report on every CT in a folder (resumable)",
        description="Run `medregionct report` on every CT in INPUT_DIR (NIfTI/NRRD/MetaImage files and DICOM "
                    "series folders), each into DIR/<case>/. Finished cases are skipped when run again; a case "
                    "that fails is recorded in DIR/batch.json and the others go on.")
    p.add_argument("input_dir", metavar="INPUT_DIR", help="folder of CT files and/or DICOM series folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per case)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="cases analysed in parallel (default 1)")
    add_segmenter_arguments(p)
    add_engine_arguments(p)
    p.add_argument("--allow-non-chest", action="store_true",
                   help="report on scans that do not look like chest CTs (no lungs) instead of failing them")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..anatomy import load_schema
    from ..pipeline.batch import run_batch
    from ..pipeline.outputs import parse_formats
    from ..progress import TqdmProgress

    formats = parse_formats(args.formats)
    load_schema(args.schema)  # a bad schema fails before any case
    engine, engine_options = engine_from_args(args)
    seg_options = segmenter_options(args)
    with TqdmProgress("batch", disable=args.no_progress or None) as bar:
        result = run_batch(args.input_dir, args.out, workers=args.workers, segmenter=args.method,
                           schema=args.schema, reporter=engine, formats=formats, lesions=not args.no_lesions,
                           reporter_options=engine_options, segmenter_options=seg_options, progress=bar,
                           allow_non_chest=args.allow_non_chest)
    counts = result.counts()
    print(f"{result.out_dir}: {counts['done']} done, {counts['skipped']} already finished, {counts['failed']} "
          f"failed (details in batch.json)")
    for case in result.failed:
        print(f"  FAILED {case.name}: {case.error}")
    if result.ignored:
        print(f"  not a CT, ignored: {', '.join(result.ignored)}")
    return 1 if result.failed else 0
