"""Measurements -> a table node: one row per structure, region and lesion (``Measurements.to_rows()``).

Column names keep their units (``volume_ml``, ``extent_si_mm``, ``hu_mean_hu``); the unit is also set as the
column's unit label so Slicer's table view shows it. Numeric columns are double columns (empty cells NaN),
everything else is text.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._mrml import new_node, require_mrml

_UNITS = {"_mm": "mm", "_ml": "mL", "_hu": "HU", "_percent": "%", "_mm2": "mm2", "_cm": "cm"}


def unit_of(column: str) -> str:
    for suffix, unit in _UNITS.items():
        if column.endswith(suffix):
            return unit
    return ""


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def rows_to_table(rows: list[dict], node=None, scene=None, name: str = "Measurements"):
    """Fill a table node with ``rows`` (dicts; the union of their keys, first-seen order, are the columns)."""
    slicer = require_mrml()
    import vtk

    node = new_node(slicer, "vtkMRMLTableNode", name, node, scene)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = vtk.vtkTable()
    for column in columns:
        values = [row.get(column) for row in rows]
        numeric = all(v is None or _is_number(v) for v in values) and any(v is not None for v in values)
        if numeric:
            array = vtk.vtkDoubleArray()
            for v in values:
                array.InsertNextValue(math.nan if v is None else float(v))
        else:
            array = vtk.vtkStringArray()
            for v in values:
                array.InsertNextValue("" if v is None else str(v))
        array.SetName(column)
        table.AddColumn(array)
    node.SetAndObserveTable(table)
    for column in columns:
        unit = unit_of(column)
        if unit:
            node.SetColumnUnitLabel(column, unit)
    return node


def measurements_to_table(measurements, node=None, scene=None, name: str = "Measurements"):
    """A table node with one row per structure, region and lesion of ``measurements`` (measure.Measurements)."""
    return rows_to_table(measurements.to_rows(), node=node, scene=scene, name=name)


def table_to_rows(node) -> list[dict]:
    """The rows of a table node as dicts (numbers as float, NaN cells left out, text as str)."""
    table = node.GetTable()
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c in range(table.GetNumberOfColumns()):
            column = table.GetColumn(c)
            if column.IsA("vtkStringArray"):
                row[column.GetName()] = column.GetValue(r)
            else:
                value = float(column.GetValue(r))
                if not math.isnan(value):
                    row[column.GetName()] = value
        rows.append(row)
    return rows
