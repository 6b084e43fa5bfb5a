"""What a batch output folder knows about its cohort, kept so that any machine sharing the folder can resume.

```
OUT/<case>/                         a finished case: renamed into place whole, with case.json
OUT/failures.json, failures.csv     every case that failed (after its retry) and is not finished since, with why
OUT/batch.json                      the last run's summary (batch-shard-I-of-N.json for a shard run)
OUT/.medregionct-batch/cases.json   every case of the input folder (name -> CT), as the last run found it
OUT/.medregionct-batch/claims/      <case>.claim while a process works on the case (case_claims)
OUT/.medregionct-batch/failed/      <case>.json, one record per failed case, removed when the case finishes
```

Every file is written atomically (``atomic.write_json``), one file per case where machines may race, so
two runs never overwrite each other's records; the cohort-wide files are rebuilt from the per-case ones.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path

from ..atomic import write_json
from .outputs import REPORT_FILES, write_text

STATE_DIR = ".medregionct-batch"
CASE_FILE = "case.json"  # written last into a case's staging folder: the folder is a finished case
FAILURES_JSON = "failures.json"
FAILURES_CSV = "failures.csv"
FAILURE_COLUMNS = ("case", "source", "error", "first_error", "attempts", "host", "run", "failed_at")


def state_dir(out) -> Path:
    return Path(out) / STATE_DIR


def claims_dir(out) -> Path:
    return state_dir(out) / "claims"


def _failed_dir(out) -> Path:
    return state_dir(out) / "failed"


def is_finished(case_dir) -> bool:
    """A case folder is finished when it holds case.json (or, from versions before it, report.json)."""
    case_dir = Path(case_dir)
    return (case_dir / CASE_FILE).is_file() or (case_dir / REPORT_FILES["json"]).is_file()


def write_case_list(out, cases: dict) -> None:
    write_json(state_dir(out) / "cases.json", {name: str(path) for name, path in sorted(cases.items())})


def read_case_list(out) -> dict[str, str]:
    try:
        return json.loads((state_dir(out) / "cases.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def record_failure(out, record: dict) -> None:
    write_json(_failed_dir(out) / f"{record['case']}.json", {k: record.get(k) for k in FAILURE_COLUMNS})


def clear_failure(out, case_name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_failed_dir(out) / f"{case_name}.json")


def read_failures(out) -> list[dict]:
    """The failure records of cases that are not finished (a record left by a run that stopped before it could
    remove it, for a case another run finished, is removed here)."""
    out = Path(out)
    folder = _failed_dir(out)
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # removed or being replaced by another run right now
        if is_finished(out / record.get("case", path.stem)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        records.append(record)
    return records


def write_failure_table(out) -> list[dict]:
    """``failures.json`` and ``failures.csv``: every case of the output folder that failed and is not finished."""
    out = Path(out)
    records = read_failures(out)
    write_json(out / FAILURES_JSON, {"count": len(records), "failures": records})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FAILURE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(out / FAILURES_CSV, buf.getvalue())
    return records


def in_progress(out) -> dict[str, dict]:
    """Case name -> the claim of the process working on it now (or of one that died and was not taken over)."""
    folder = claims_dir(out)
    owners = {}
    for path in sorted(folder.glob("*.claim")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            owners[path.name[: -len(".claim")]] = json.loads(path.read_text(encoding="utf-8"))
    return owners
