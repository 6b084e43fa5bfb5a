"""Read a predictions CSV (Reg2RG layout: ``AccNum, GT_combined_report, Pred_combined_report``)."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

GT_COLUMN = "GT_combined_report"
PRED_COLUMN = "Pred_combined_report"
ID_COLUMNS = ("AccNum", "id", "case", "volume")


@dataclass
class ReportPairs:
    ids: list[str]
    references: list[str]
    predictions: list[str]


def read_pairs(path: str | Path, gt_column: str = GT_COLUMN, pred_column: str = PRED_COLUMN) -> ReportPairs:
    """The (id, ground truth, prediction) rows of a CSV; empty cells become empty strings."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"predictions CSV not found: {path}; give the path of a CSV with columns "
                         f"{gt_column} and {pred_column}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # whole reports can exceed csv's 128 kB default
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in (gt_column, pred_column) if c not in columns]
        if missing:
            raise InputError(f"{path.name} has no column {', '.join(missing)} (columns: {', '.join(columns)}); "
                             "name the right ones with --gt-column/--pred-column")
        id_column = next((c for c in ID_COLUMNS if c in columns), None)
        ids, refs, preds = [], [], []
        for number, row in enumerate(reader, start=1):
            ids.append(row[id_column] if id_column else str(number))
            refs.append(row[gt_column] or "")
            preds.append(row[pred_column] or "")
    if not refs:
        raise InputError(f"{path.name} has a header but no rows; nothing to evaluate")
    return ReportPairs(ids, refs, preds)
