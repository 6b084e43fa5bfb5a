"""One table for a whole batch output folder: one row per case and structure, region, lesion, clinical measure or
report finding, values exactly as each case's ``measurements.json`` and ``report.json`` hold them.

Rows (column ``record``): ``case`` (the run: source, seconds, segmenter, scope), ``structure`` and ``region``
(shape and density attributes), ``lesion``, ``clinical`` (``value`` with its ``unit``; per side for lung volumes,
per landmark for vessel calibres) and ``finding`` (the report's structured findings, with their region).
Units are in the column names (``volume_ml``, ``max_diameter_mm``, ``hu_mean``) as in ``measurements.csv``, or in
the ``unit`` column for ``value``; ``cohort_columns.json`` and the Parquet schema's field metadata name each
column's unit.

The folder is read case by case and the rows spilled to disk in chunks, so a cohort of 100,000 CTs (about 100 rows
each) is collected in bounded memory; a second pass writes the Parquet and CSV files with one schema.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pickle
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write, write_json
from ..data import load_json
from ..errors import MissingDependencyError
from . import batch_state
from .batch_state import CASE_FILE, is_finished

LEAD_COLUMNS = ("case", "record", "name", "region", "side", "kind", "value", "unit")
TABLE_STEM = "cohort"
CHUNK_CASES = 500
_SKIP = frozenset({"bbox_index", "sentence", "classes", "sources", "evidence"})
_AXES = {"extent_mm": ("rl", "ap", "si")}
# the same for every case (the literature source, the method's wording): in measurements.json and
# data/clinical_thresholds.json, not repeated on 100,000 rows
_CLINICAL_CONSTANTS = frozenset({"source", "method"})


@dataclass
class CohortScan:
    """What one pass over an output folder found (everything but the rows, which are spilled to ``chunks``)."""

    out_dir: Path
    cases: list[str] = field(default_factory=list)  # finished cases, in table order
    failures: list[dict] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # in the input folder, neither finished nor failed
    in_progress: dict = field(default_factory=dict)  # case -> claim (host, pid) of a process working on it
    unreadable: list[dict] = field(default_factory=list)  # finished folders whose files could not be read
    column_types: dict = field(default_factory=lambda: defaultdict(set))
    measures: dict = field(default_factory=lambda: defaultdict(list))  # key measure -> [(case, split, value)]
    findings: Counter = field(default_factory=Counter)  # (kind, region) -> findings
    cases_with: dict = field(default_factory=lambda: defaultdict(set))  # kind -> cases with one or more
    region_status: Counter = field(default_factory=Counter)  # (region, status) -> cases
    rows: int = 0
    chunks: list[Path] = field(default_factory=list)


def _flat(attributes: dict, prefix: str = "", skip=_SKIP) -> dict:
    """Scalar columns from one JSON object: vectors in patient axes split per axis, strings lists joined."""
    row = {}
    for key, value in attributes.items():
        name = f"{prefix}{key}"
        if key in skip:
            continue
        if isinstance(value, dict):
            row.update(_flat(value, f"{name}_", skip))
        elif isinstance(value, list | tuple):
            if len(value) == 3 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value) and (
                    "_ras" in key or key in _AXES):
                base = name.replace("_ras", "").removesuffix("_mm")
                unit = "" if "normal" in key else "_mm"
                for axis, v in zip(_AXES.get(key, "ras"), value, strict=True):
                    row[f"{base}_{axis}{unit}"] = v
            elif all(isinstance(v, str) for v in value):
                row[name] = "; ".join(value) if value else None
            else:
                row[name] = json.dumps(value)
        else:
            row[name] = value
    return row


def _clinical_rows(key: str, entry: dict) -> list[dict]:
    if not isinstance(entry, dict):
        return [{"value": entry}]
    skip = _SKIP | _CLINICAL_CONSTANTS
    if "landmarks" in entry and isinstance(entry["landmarks"], dict):
        rows = []
        for landmark, attrs in entry["landmarks"].items():
            row = {"landmark": landmark, **_flat(attrs, skip=skip)}
            row["value"], row["unit"] = attrs.get("diameter_mm"), "mm"
            rows.append(row)
        return rows
    sides = [s for s in ("right", "left") if isinstance(entry.get(s), int | float)]
    if "value" not in entry and sides:
        rest = _flat({k: v for k, v in entry.items() if k not in ("right", "left", "unit")}, skip=skip)
        return [{**rest, "side": s, "value": entry[s], "unit": entry.get("unit")} for s in sides]
    return [_flat(entry, skip=skip)]


def case_rows(case_dir) -> list[dict]:
    """The rows of one finished case folder (raises OSError/ValueError when its files cannot be read)."""
    case_dir = Path(case_dir)
    case = case_dir.name
    measurements = json.loads((case_dir / "measurements.json").read_text(encoding="utf-8"))
    report_path = case_dir / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    run = json.loads((case_dir / CASE_FILE).read_text(encoding="utf-8")) if (case_dir / CASE_FILE).is_file() else {}
    provenance = report.get("provenance", {})
    scope = provenance.get("scope") or {}
    rows = [{"record": "case", "name": case, "source": run.get("source") or measurements.get("meta", {}).get("ct"),
             "seconds": run.get("seconds"), "attempt": run.get("attempt"), "host": run.get("host"),
             "finished": run.get("finished"), "findings": run.get("findings"),
             "segmenter": provenance.get("segmenter"), "reporter": provenance.get("reporter"),
             "schema": provenance.get("schema"), "chest_ct": scope.get("chest_ct"),
             "limitations": "; ".join(scope.get("limitations") or []) or None,
             **_flat({k: v for k, v in measurements.get("meta", {}).items()
                      if k in ("shape", "spacing_mm", "orientation")})}]
    for name, attrs in measurements.get("structures", {}).items():
        rows.append(_row("structure", name, _flat(attrs)))
    status = {r["key"]: r for r in report.get("regions", [])}
    for name, attrs in measurements.get("regions", {}).items():
        rows.append(_row("region", name, _flat(attrs), region=name,
                         report_status=status.pop(name, {}).get("status")))
    for name, region in status.items():  # regions the report covers that have no mask
        rows.append(_row("region", name, {}, region=name, report_status=region.get("status")))
    for lesion in measurements.get("lesions", []):
        rows.append(_row("lesion", f"{lesion.get('kind')}_{lesion.get('id')}", _flat(lesion)))
    for key, entry in measurements.get("clinical", {}).items():
        rows += [_row("clinical", key, row) for row in _clinical_rows(key, entry)]
    for region in report.get("regions", []):
        for finding in region.get("findings", []):
            values = {**_flat(finding.get("values") or {}), **_flat(finding.get("size") or {})}
            rows.append(_row("finding", finding.get("kind"), values, region=region.get("key"),
                             kind=finding.get("kind"), finding_id=finding.get("id"),
                             ctrate_label=finding.get("label"), location=finding.get("location"),
                             side=finding.get("side"), confidence=finding.get("confidence"),
                             provenance="; ".join(finding.get("provenance") or []) or None,
                             evidence="; ".join((finding.get("evidence") or {}).get("measurements") or []) or None))
    for row in rows:
        row["case"] = case
    return rows


def _row(record: str, name, values: dict, **fixed) -> dict:
    """A row: the record type and name (never overwritten by a measured attribute), then the values."""
    return {**values, **fixed, "record": record, "name": name}


def _note(scan: CohortScan, case: str, rows: list[dict], measures: list[dict]) -> None:
    types = scan.column_types
    for row in rows:
        for column, value in row.items():
            types[column].add(type(value))
        record = row["record"]
        if record == "finding":
            scan.findings[(row.get("kind"), row.get("region"))] += 1
            scan.cases_with[row.get("kind")].add(case)
        elif record == "region" and row.get("report_status"):
            scan.region_status[(row["name"], row["report_status"])] += 1
        for m in measures:
            if record == m["record"] and row.get("name") == m["name"]:
                value = row.get(m["column"])
                split = row.get(m["split_by"]) if m.get("split_by") else None
                number = isinstance(value, int | float) and not isinstance(value, bool)
                scan.measures[m["key"]].append((case, split, value if number else None))


def scan_cohort(out_dir, spill_dir, chunk_cases: int = CHUNK_CASES, progress=None) -> CohortScan:
    """Read every finished case of ``out_dir``; rows go to pickled chunks in ``spill_dir``."""
    out = Path(out_dir)
    scan = CohortScan(out_dir=out)
    measures = load_json("cohort.json")["key_measures"]
    folders = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and is_finished(p))
    chunk: list[dict] = []

    def spill() -> None:
        if chunk:
            path = Path(spill_dir) / f"chunk-{len(scan.chunks):06d}.pickle"
            with open(path, "wb") as fh:
                pickle.dump(chunk, fh, protocol=pickle.HIGHEST_PROTOCOL)
            scan.chunks.append(path)
            chunk.clear()

    for i, folder in enumerate(folders):
        try:
            rows = case_rows(folder)
        except (OSError, ValueError) as error:
            scan.unreadable.append({"case": folder.name, "error": f"{type(error).__name__}: {error}"})
            continue
        scan.cases.append(folder.name)
        _note(scan, folder.name, rows, measures)
        scan.rows += len(rows)
        chunk.extend(rows)
        if (len(scan.cases) % chunk_cases) == 0:
            spill()
        if progress is not None:
            progress((i + 1) / max(len(folders), 1) * 0.8, f"read {folder.name}")
    spill()
    finished = set(scan.cases) | {u["case"] for u in scan.unreadable}
    scan.failures = batch_state.read_failures(out)
    failed = {f["case"] for f in scan.failures}
    scan.in_progress = {k: v for k, v in batch_state.in_progress(out).items() if k not in finished}
    scan.pending = sorted(n for n in batch_state.read_case_list(out) if n not in finished and n not in failed)
    return scan


def _column_order(scan: CohortScan) -> list[str]:
    return list(LEAD_COLUMNS) + sorted(
        c for c in scan.column_types if c not in LEAD_COLUMNS)


def column_type(kinds: set) -> str:
    """One type per column from the Python types of its values: bool, int, float (ints and floats together) or
    text (strings, or anything mixed)."""
    kinds = set(kinds) - {type(None)}
    if not kinds:
        return "text"
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        return "int"
    if kinds <= {int, float}:
        return "float"
    return "text"


def column_unit(column: str) -> str | None:
    rules = load_json("cohort.json")["units"]
    if column in rules["by_name"]:
        return rules["by_name"][column]
    for suffix, unit in rules["by_suffix"]:
        if column.endswith(suffix):
            return unit
    for prefix, unit in rules["by_prefix"]:
        if column.startswith(prefix):
            return unit
    for infix, unit in rules["by_infix"]:
        if infix in column:
            return unit
    return None


def _text(value):
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _chunks(scan: CohortScan, recast: dict):
    """The spilled rows, chunk by chunk, with the values of mixed columns turned to text."""
    for path in scan.chunks:
        with open(path, "rb") as fh:
            rows = pickle.load(fh)
        for row in rows:
            for column in recast.keys() & row.keys():
                row[column] = _text(row[column])
        yield rows


def write_table(scan: CohortScan, folder, formats=("parquet", "csv"), stem: str = TABLE_STEM) -> list[Path]:
    """``<stem>.parquet`` and/or ``<stem>.csv`` (one schema, units in the Parquet field metadata) and
    ``<stem>_columns.json`` (each column's type and unit); each file written atomically.

    With pyarrow both are written from the same Arrow tables in one pass (the CSV's numbers in full, round-trip
    precision); without it, the CSV alone by the csv module."""
    folder = Path(folder)
    columns = _column_order(scan)
    types = {c: column_type(scan.column_types.get(c, set())) for c in columns}
    units = {c: None if types[c] == "text" and column_unit(c) == "per_row" else column_unit(c) for c in columns}
    recast = {c: True for c in columns if types[c] == "text" and scan.column_types.get(c, set()) - {type(None), str}}
    written = []
    try:
        pa, pq = _pyarrow()
    except MissingDependencyError:
        if "parquet" in formats:
            raise
        pa = None
    if pa is not None:
        import pyarrow.csv as pcsv

        arrow = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "text": pa.string()}
        schema = pa.schema([pa.field(c, arrow[types[c]], metadata={"unit": units[c]} if units[c] else None)
                            for c in columns], metadata={"written_by": "MedRegionCT cohort"})
        targets = {f: folder / f"{stem}.{f}" for f in ("parquet", "csv") if f in formats}
        temps = {f: Path(tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)[1])
                 for f, path in targets.items()}
        try:
            writers = []
            if "parquet" in temps:
                writers.append(pq.ParquetWriter(temps["parquet"], schema))
            if "csv" in temps:
                writers.append(pcsv.CSVWriter(temps["csv"], schema))
            for rows in _chunks(scan, recast):
                table = pa.Table.from_pylist(rows, schema=schema)
                for writer in writers:
                    writer.write_table(table)
            for writer in writers:
                writer.close()
            for f, tmp in temps.items():
                written.append(atomic_write(targets[f], lambda dest, tmp=tmp: os.replace(tmp, dest)))
        finally:
            for tmp in temps.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    elif "csv" in formats:
        def _write_csv(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(columns)
                for rows in _chunks(scan, recast):
                    writer.writerows([row.get(c) for c in columns] for row in rows)

        written.append(atomic_write(folder / f"{stem}.csv", _write_csv))
    written.append(write_json(folder / f"{stem}_columns.json", {
        "rows": scan.rows, "cases": len(scan.cases),
        "columns": [{"name": c, "type": types[c], "unit": units[c]} for c in columns],
        "per_row_unit": "the unit column holds the unit of value (and of threshold) in each row"}))
    return written


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("writing the cohort table as Parquet needs pyarrow: pip install "
                                     "'MedRegionCTLib[cohort]', or pass --formats csv.") from None
    return pa, pq


def require_parquet() -> None:
    _pyarrow()


def spill_folder(out_dir) -> tempfile.TemporaryDirectory:
    """A temporary folder for the row chunks, beside the output (room for the rows) or in the system's temp."""
    parent = Path(out_dir) / batch_state.STATE_DIR
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix=f"cohort-{os.getpid()}-", dir=parent)
    except OSError:
        return tempfile.TemporaryDirectory(prefix="medregionct-cohort-")
