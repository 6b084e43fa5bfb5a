"""`medregionct cohort`: one table (Parquet and CSV) and one summary for a whole batch output folder."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cohort", help="collect a batch output folder into one table and a summary",
        description="Collect every finished case of OUT_DIR (the --out folder of `medregionct batch`, from one run, "
                    "shards or several machines) into cohort.parquet and cohort.csv: one row per case and structure, "
                    "region, lesion, clinical measure or report finding, units in the column names (or the unit "
                    "column for value; cohort_columns.json lists every column's unit). Writes cohort_summary.md and "
                    "cohort_summary.html (findings by kind and region, distributions of the key measures, the failed "
                    "cases with their errors) and refreshes failures.json/.csv. Needs the [cohort] extra for Parquet "
                    "and the plots.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the --out folder of `medregionct batch`")
    p.add_argument("--dest", metavar="DIR", help="where to write the table and summary (default: OUT_DIR)")
    p.add_argument("--formats", default="parquet,csv", help="table formats, comma-separated: parquet, csv "
                                                            "(default both)")
    p.add_argument("--no-plots", action="store_true", help="summary without the matplotlib plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..pipeline.cohort import build_cohort
    from ..progress import TqdmProgress

    with TqdmProgress("cohort", disable=args.no_progress or None) as bar:
        result = build_cohort(args.out_dir, dest=args.dest, formats=args.formats, plots=not args.no_plots,
                              progress=bar)
    scan = result.scan
    waiting = [p for p in scan.pending if p not in scan.in_progress]
    print(f"{scan.out_dir}: {len(scan.cases)} finished case(s), {scan.rows} rows; {len(scan.failures)} failed, "
          f"{len(scan.in_progress)} being analysed, {len(waiting)} not run yet, {len(scan.unreadable)} unreadable")
    for path in result.files:
        print(f"  {path}")
    return 0
