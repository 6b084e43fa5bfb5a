"""``build_cohort(out_dir)``: a batch output folder's cases in one table (Parquet and CSV) with a Markdown and
HTML summary, and the cohort's failures (``failures.json``/``.csv``) brought up to date."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from . import batch_state
from .cohort_summary import require_matplotlib, write_summary
from .cohort_table import TABLE_STEM, CohortScan, require_parquet, scan_cohort, spill_folder, write_table

TABLE_FORMATS = ("parquet", "csv")


@dataclass
class CohortResult:
    scan: CohortScan
    files: list[Path] = field(default_factory=list)


def parse_table_formats(text) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in (text.split(",") if isinstance(text, str) else text) if f.strip())
    unknown = [f for f in formats if f not in TABLE_FORMATS]
    if unknown or not formats:
        raise InputError(f"unknown table format(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(TABLE_FORMATS)} separated by commas.")
    return formats


def build_cohort(out_dir, dest=None, formats=TABLE_FORMATS, plots: bool = True, progress=None) -> CohortResult:
    """Collect every finished case of the batch output ``out_dir`` into ``dest`` (default ``out_dir``)."""
    out = Path(out_dir).expanduser()
    if not out.is_dir():
        raise InputError(f"{out} is not a folder; give the --out folder of `medregionct batch`.")
    formats = parse_table_formats(formats)
    if "parquet" in formats:
        require_parquet()  # missing packages fail before any work
    if plots:
        require_matplotlib()
    case_list = batch_state.read_case_list(out)
    if not case_list and not any(batch_state.is_finished(p) for p in out.iterdir()
                                 if p.is_dir() and not p.name.startswith(".")):
        raise InputError(f"{out} holds no case of `medregionct batch` (no finished case folder, no "
                         f"{batch_state.STATE_DIR}/cases.json); give a batch output folder.")
    dest = Path(dest).expanduser() if dest is not None else out
    dest.mkdir(parents=True, exist_ok=True)
    with spill_folder(out) as spill:
        scan = scan_cohort(out, spill, progress=progress)
        files = write_table(scan, dest, formats, stem=TABLE_STEM)
        if progress is not None:
            progress(0.9, "summary")
        files += write_summary(scan, dest, plots=plots)
    batch_state.write_failure_table(out)
    files += [out / batch_state.FAILURES_JSON, out / batch_state.FAILURES_CSV]
    if progress is not None:
        progress(1.0, "done")
    return CohortResult(scan, files)
