"""`medregionct batch`: the report of every CT in a folder; resumable, failures recorded, never fatal."""

from __future__ import annotations

from .report import add_engine_arguments, engine_from_args
from .segment import add_segmenter_arguments, segmenter_options


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch", help="report on every CT in a folder (resumable)",
        description="Run `medregionct report` on every CT in INPUT_DIR (NIfTI/NRRD/MetaImage files and DICOM "
                    "series folders), each into DIR/<case>/. Finished cases are skipped when run again (from any "
                    "machine that shares DIR); a case that fails is tried once more, then listed with its error in "
                    "DIR/failures.json and .csv, and the others go on. `medregionct cohort DIR` collects the "
                    "results into one table.")
    p.add_argument("input_dir", metavar="INPUT_DIR", help="folder of CT files and/or DICOM series folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per case)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="--engine local: cases analysed in parallel on this machine (default 1)")
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="where cases run: local (this machine, the default) or dask (an existing dask.distributed "
                        "cluster: dask scheduler/workers, dask-jobqueue SLURM/PBS, Kubernetes; needs [dask])")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="--engine dask: the scheduler's address (tcp://host:8786) or scheduler file; default "
                        "$DASK_SCHEDULER_ADDRESS")
    p.add_argument("--shard", metavar="I/N",
                   help="only the cases of shard I of N (0 <= I < N; a fixed split by case name, for SLURM array "
                        "jobs: --shard $SLURM_ARRAY_TASK_ID/N with --array=0-(N-1))")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="tries more for a failed case, at the end of the run (default 1)")
    add_segmenter_arguments(p)
    add_engine_arguments(p)
    p.add_argument("--allow-non-chest", action="store_true",
                   help="report on scans that do not look like chest CTs (no lungs) instead of failing them")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..anatomy import load_schema
    from ..pipeline.batch import run_batch
    from ..pipeline.engines import make_engine
    from ..pipeline.outputs import parse_formats
    from ..pipeline.shards import parse_shard
    from ..progress import TqdmProgress

    formats = parse_formats(args.formats)
    load_schema(args.schema)  # a bad schema fails before any case
    engine = make_engine(args.engine, workers=args.workers, scheduler=args.scheduler)  # bad choices fail first
    shard = parse_shard(args.shard)
    reporter, reporter_options = engine_from_args(args)
    seg_options = segmenter_options(args)
    with TqdmProgress("batch", disable=args.no_progress or None) as bar:
        result = run_batch(args.input_dir, args.out, segmenter=args.method, schema=args.schema,
                           reporter=reporter, formats=formats, lesions=not args.no_lesions,
                           reporter_options=reporter_options, segmenter_options=seg_options, progress=bar,
                           allow_non_chest=args.allow_non_chest, engine=engine, shard=shard, retries=args.retries)
    counts = result.counts()
    where = f" (shard {result.shard}; {result.other_shards} case(s) left to the other shards)" if result.shard else ""
    print(f"{result.out_dir}{where}: {counts['done']} done, {counts['skipped']} skipped (finished or being analysed "
          f"elsewhere), {counts['failed']} failed (details in failures.json)")
    for case in result.failed:
        print(f"  FAILED {case.name} (after {case.attempts} tries): {case.error}")
    if result.ignored:
        print(f"  not a CT, ignored: {', '.join(result.ignored)}")
    if result.cancelled:
        print("  cancelled: finished cases are kept; run the same command again to do the rest")
    return 1 if result.failed or result.cancelled else 0
