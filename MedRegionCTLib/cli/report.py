"""`medregionct report`: CT in, region-by-region report out (segment -> measure -> report).

Writes into ``--out DIR``: report.json, report.md, report.html, measurements.json, measurements.csv and the
segmentation files of `medregionct segment` (labels.nii.gz, labels.json, regions/<region>.nii.gz,
regions.json); with ``--formats ...,dicom`` and a DICOM series as input also report_sr.dcm and regions_seg.dcm.
"""

from __future__ import annotations

import os
from pathlib import Path

from .segment import add_segmenter_arguments, segmenter_options


def add_engine_arguments(p) -> None:
    """--reporter, --server, --api-key-file, --formats, --no-lesions (shared with `batch`)."""
    p.add_argument("--reporter", default="measurement", metavar="ENGINE",
                   help="report engine: measurement (default; offline, no weights), model:CHECKPOINT_DIR (a local "
                        "model; needs the [model] extra), llm:LLM_DIR (any local instruction-tuned LLM with a chat "
                        "template writes from the measurements, zero-shot) or llm:http://HOST:PORT/v1 (the same "
                        "prompts to an OpenAI-compatible chat-completions endpoint: vLLM, TGI, Ollama, llama.cpp)")
    p.add_argument("--llm-path", default=None, metavar="DIR",
                   help="model: the base language model folder on this machine (overrides the one the checkpoint "
                        "names); llm: the LLM folder or endpoint (overrides the one after 'llm:')")
    p.add_argument("--llm-model", default=None, metavar="NAME",
                   help="llm:http://... endpoints: the served model's name (default: the first the endpoint lists); "
                        "its API key, if any, from $MEDREGIONCT_LLM_API_KEY")
    p.add_argument("--server", default=None, metavar="URL",
                   help="send the case to a MedRegionCT report server instead (image on the model's grid, "
                        "region masks and measurements; no patient identifiers)")
    p.add_argument("--api-key-file", default=None, metavar="FILE",
                   help="file holding the server's API key (default: $MEDREGIONCT_API_KEY)")
    p.add_argument("--formats", default="json,md,html", metavar="LIST",
                   help="report formats, comma-separated: json, md, html, dicom (SR + SEG; DICOM input only); "
                        "default: %(default)s")
    p.add_argument("--no-lesions", action="store_true", help="skip the lesion candidate search")


def engine_from_args(args) -> tuple[str, dict]:
    from ..errors import InputError

    if args.server:
        if args.reporter != "measurement":
            raise InputError("--server and --reporter are exclusive: the server runs its own model; drop one.")
        options = {}
        if args.api_key_file:
            try:
                options["api_key"] = Path(args.api_key_file).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise InputError(f"--api-key-file {args.api_key_file}: cannot read it ({exc.strerror}).") from None
        elif os.environ.get("MEDREGIONCT_API_KEY"):
            options["api_key"] = os.environ["MEDREGIONCT_API_KEY"]
        return f"server:{args.server}", options
    reporter = args.reporter.strip()
    options: dict = {}
    ts = args.method.strip().lower() in ("totalsegmentator", "totalseg", "ts")
    if reporter.startswith(("model:", "llm:")):
        if args.device:  # --device places the report engine too (and TotalSegmentator when that segments)
            options["device"] = args.device
            if not ts:
                args.device = None
        if args.llm_path:
            options["llm_path"] = args.llm_path
    elif args.llm_path or (args.device and not ts):
        raise InputError("--device applies to --method totalsegmentator and the model:/llm: reporters, --llm-path "
                         "to the model:/llm: reporters; drop them or choose such an engine.")
    if reporter.startswith("llm:"):
        if args.llm_model:
            options["model"] = args.llm_model
        if os.environ.get("MEDREGIONCT_LLM_API_KEY"):
            options["api_key"] = os.environ["MEDREGIONCT_LLM_API_KEY"]
    return reporter, options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="write the region-by-region report of a chest CT",
        description="Segment a chest CT, measure every region and write one paragraph per region. Writes "
                    "report.json, report.md, report.html, measurements.json/.csv and the segmentation files "
                    "(labels.nii.gz, labels.json, regions/, regions.json) into --out.")
    p.add_argument("ct", metavar="CT", help="the CT: NIfTI, NRRD/MetaImage file or DICOM series folder")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    add_segmenter_arguments(p)
    add_engine_arguments(p)
    p.add_argument("--grounding", default="flag", choices=["flag", "replace"],
                   help="statements the measurements contradict: flag (keep them, marked, listed in the report; "
                        "default) or replace (put the measured statement in their place)")
    p.add_argument("--no-ct-check", action="store_true",
                   help="load even when the intensities do not look like CT Hounsfield units")
    p.add_argument("--series", metavar="UID_OR_NUMBER",
                   help="which series to read when a DICOM folder holds several (SeriesInstanceUID or series number)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results already in --out (the whole folder: nothing of the earlier run stays)")
    p.add_argument("--allow-non-chest", action="store_true",
                   help="report on a scan that does not look like a chest CT (no lungs) instead of stopping; "
                        "its report then holds no lung or pleura statements")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def print_summary(report, out: Path) -> None:
    print(f"{out}: report of {len(report.regions)} regions ({report.provenance.segmenter} segmentation, "
          f"{report.provenance.reporter} reporter, {report.provenance.timings_s.get('total', 0):.1f} s)")
    if report.contradictions:
        print(f"  {len(report.contradictions)} statement(s) contradicted by the measurements "
              f"({report.contradictions[0].action}; listed in the report)")
    width = max((len(r.name) for r in report.regions), default=0)
    for r in report.regions:
        print(f"  {r.name:<{width}}  {r.paragraph}")


def run(args) -> int:
    from ..anatomy import load_schema
    from ..errors import InputError
    from ..pipeline import analyze
    from ..pipeline.output_folder import OutputFolder
    from ..pipeline.outputs import parse_formats, write_all
    from ..progress import TqdmProgress
    from ..volume import read_volume
    from ..volume.grid_checks import shear

    formats = parse_formats(args.formats)
    schema = load_schema(args.schema)
    ct = Path(args.ct).expanduser()
    if "dicom" in formats and not ct.is_dir():
        raise InputError("--formats dicom needs a DICOM series folder as the CT; drop 'dicom' for this input.")
    engine, engine_options = engine_from_args(args)
    seg_options = segmenter_options(args)
    folder = OutputFolder(args.out, overwrite=args.overwrite, inputs=[ct, *label_inputs(args)], command="report")
    with TqdmProgress("report", disable=args.no_progress or None) as bar, folder as staging:
        bar(0.0, "reading the CT")
        volume = read_volume(ct, check_ct=not args.no_ct_check, series=args.series)
        if "dicom" in formats and shear(volume.affine, volume.shape).needs_resampling:
            raise InputError("this DICOM series is gantry-tilted (sheared): it is analysed on a grid along the "
                             "patient axes, where no DICOM SEG of the series' own slices can be made; drop "
                             "'dicom' from --formats.")
        analysis = analyze(volume, segmenter=args.method, schema=schema, reporter=engine,
                           lesions=not args.no_lesions, progress=lambda f, m: bar(0.05 + 0.9 * f, m),
                           segmenter_options=seg_options, reporter_options=engine_options,
                           grounding=args.grounding, allow_non_chest=args.allow_non_chest)
        bar(0.95, "writing")
        write_all(staging, analysis, formats=formats, dicom_source=ct if ct.is_dir() else None,
                  meta={"ct": str(ct)})
        bar(1.0, "done")
    print_summary(analysis.report, folder.out)
    return 0


def label_inputs(args) -> list[Path]:
    """The label files a --method labels:FILE / --label-table / --map run reads (never inside --out)."""
    paths = []
    if args.method.strip().lower().startswith("labels:"):
        paths.append(Path(args.method.split(":", 1)[1]))
    for name in ("label_table", "mapping"):
        if getattr(args, name, None):
            paths.append(Path(getattr(args, name)))
    return paths
