"""`medregionct measure`: CT (+ optional label map) -> measurements.json and measurements.csv.

Without ``--labels`` the CT is segmented with the built-in segmenter first; with ``--labels FILE`` the given
label map (TotalSegmentator indices, a TotalSegmentator output folder, or any label file with a label table
beside it or given by ``--label-table``) is measured instead.
"""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "measure", help="measure every structure, region and lesion candidate of a CT",
        description="Measure a chest CT: volume, HU statistics, extents, centroid, maximum 3D diameter, axial "
                    "axes and position of every structure and region; derived clinical measures with their "
                    "thresholds; lung nodule/mass and pleural effusion candidates. Writes measurements.json and "
                    "measurements.csv into --out.")
    p.add_argument("ct", metavar="CT", help="the CT: NIfTI, NRRD/MetaImage file or DICOM series folder")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="measure this label map instead of segmenting (TotalSegmentator indices, a "
                        "TotalSegmentator output folder, or a label file with its label table)")
    p.add_argument("--label-table", default=None, metavar="FILE",
                   help="label table of --labels: JSON, CSV/TSV or Slicer colour table")
    p.add_argument("--schema", default="radgenome10", metavar="SCHEMA",
                   help="region schema: radgenome10 (default), medregion6, or a schema JSON file")
    p.add_argument("--no-lesions", action="store_true", help="skip the lesion candidate search")
    p.add_argument("--no-ct-check", action="store_true",
                   help="load even when the intensities do not look like CT Hounsfield units")
    p.add_argument("--series", metavar="UID_OR_NUMBER",
                   help="which series to read when a DICOM folder holds several (SeriesInstanceUID or series number)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in --out (the whole folder: nothing of the earlier run stays)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..anatomy import load_schema
    from ..errors import InputError, MissingDependencyError
    from ..measure import measure
    from ..pipeline import prepare_volume
    from ..pipeline.output_folder import OutputFolder
    from ..pipeline.outputs import write_measurements
    from ..pipeline.scope import scan_scope
    from ..progress import TqdmProgress
    from ..segment import get_segmenter
    from ..volume import read_volume

    schema = load_schema(args.schema)
    if args.labels:
        options = {"table": args.label_table} if args.label_table else {}
        segmenter = get_segmenter(f"labels:{args.labels}", **options)
    else:
        if args.label_table:
            raise InputError("--label-table applies to --labels only; drop it or give --labels FILE.")
        try:
            segmenter = get_segmenter("builtin")
        except MissingDependencyError as error:
            raise MissingDependencyError(f"cannot segment without --labels: {error}") from None
    inputs = [Path(args.ct)] + [Path(p) for p in (args.labels, args.label_table) if p]
    folder = OutputFolder(args.out, overwrite=args.overwrite, inputs=inputs, command="measure")
    report = TqdmProgress(desc="measure", disable=args.no_progress or None)

    try:
        with folder as staging:
            report(0.0, "reading the CT")
            volume = prepare_volume(read_volume(args.ct, check_ct=not args.no_ct_check, series=args.series))
            report(0.05, f"labels ({segmenter.name})")
            labelmap = segmenter.segment(volume, progress=lambda f, m: report(0.05 + 0.45 * f, m))
            result = measure(volume, labelmap, schema=schema, progress=lambda f, m: report(0.5 + 0.5 * f, m),
                             lesions=not args.no_lesions)
            scope = scan_scope(labelmap, volume)
            write_measurements(staging, result, {"ct": str(args.ct),
                                                 "labels": str(args.labels) if args.labels else "builtin segmenter",
                                                 "scope": scope})
    finally:
        report.close()
    out = folder.out
    print(f"{out}: {len(result.structures)} structures, {len(result.regions)} regions, "
          f"{len(result.lesions)} lesion candidates")
    for sentences in result.sentences.values():
        for s in sentences:
            print(f"  {s}")
    return 0
