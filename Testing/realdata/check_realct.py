"""Check `medregionct info` against the real CT sets' INVENTORY.json (prints a table; exit 1 on a mismatch).

    .venv/bin/python Testing/realdata/check_realct.py [/path/to/shared/data]     (or MEDREGIONCT_REALDATA)

Every CT of ``realct/`` is read through the command line (`medregionct info --json`): all NIfTI CTs, the
NRRD CTs and the DICOM folders. Shape, spacing, orientation, origin and HU range are compared with the
inventory. NRRD and DICOM entries are compared with their DERIVED NIfTI counterpart in world terms (both grids
brought to RAS axis order), because the inventory lists them in LPS/DICOM terms and the converter may have
chosen another axis order (04's NIfTI is LAS, the DICOM itself is LPS); without a counterpart (08, 11) the
DICOM fields (rows, columns, pixel spacing, z range, HU range) are used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nibabel.orientations import axcodes2ornt

DICOM_FOLDERS = ("04_", "05_", "08_", "10_", "11_")
TOL_MM = 0.02  # the inventory and `info` round origins to 0.01 mm and spacings to 0.0001 mm


@dataclass
class Case:
    path: str                    # relative to realct/
    kind: str                    # nifti | nrrd | dicom
    expected: dict               # inventory entry used as reference
    reference: str               # which entry that is
    notes: list[str] = field(default_factory=list)


def realct_root(arg: str | None = None) -> Path:
    base = arg or os.environ.get("MEDREGIONCT_REALDATA")
    if not base:
        raise SystemExit("give the shared data folder as argument or set MEDREGIONCT_REALDATA")
    root = Path(base) / "realct"
    if not (root / "INVENTORY.json").is_file():
        raise SystemExit(f"{root}/INVENTORY.json not found; point at the folder that holds realct/")
    return root


def inventory(root: Path) -> list[dict]:
    return json.loads((root / "INVENTORY.json").read_text())


def _is_ct(entry: dict) -> bool:
    return "value_range" in entry or "HU_range" in entry


def cases(root: Path) -> list[Case]:
    """Every CT in realct with the inventory entry it should match."""
    entries = [e for e in inventory(root) if _is_ct(e)]
    derived = {e["path"].split("/")[0]: e for e in entries
               if e["fmt"] == "nifti" and "DERIVED" in e["path"] and Path(e["path"]).name.startswith("ct")}
    out = []
    for e in entries:
        top = e["path"].split("/")[0]
        if e["fmt"] == "nifti":
            out.append(Case(e["path"], "nifti", e, "inventory"))
        elif e["fmt"] == "nrrd":
            out.append(Case(e["path"], "nrrd", derived[top], derived[top]["path"]))
        elif e["fmt"] == "dicom" and top.startswith(DICOM_FOLDERS):
            path = e["path"].rstrip("/")
            if top in derived:
                out.append(Case(path, "dicom", derived[top], derived[top]["path"]))
            else:
                out.append(Case(path, "dicom", e, "dicom fields"))
    return out


def run_info(path: Path) -> dict:
    """`medregionct info --json PATH` as a dict (raises RuntimeError with the CLI's message on failure)."""
    exe = shutil.which("medregionct", path=str(Path(sys.executable).parent)) or shutil.which("medregionct")
    command = [exe] if exe else [sys.executable, "-m", "MedRegionCTLib.cli.main"]
    done = subprocess.run([*command, "info", "--json", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(done.stdout)


def ras_grid(shape, spacing, orientation, origin) -> dict:
    """Shape, spacing and lowest voxel-centre position along R, A, S of an axis-aligned grid."""
    ornt = axcodes2ornt(tuple(orientation))
    out = {"shape": [0, 0, 0], "spacing": [0.0, 0.0, 0.0], "low": [0.0, 0.0, 0.0]}
    for axis, (world, sign) in enumerate(ornt):
        w = int(world)
        out["shape"][w] = int(shape[axis])
        out["spacing"][w] = float(spacing[axis])
        end = origin[w] + sign * spacing[axis] * (shape[axis] - 1)
        out["low"][w] = float(min(origin[w], end))
    return out


def compare(case: Case, info: dict) -> list[str]:
    """Differences between the CLI's description and the reference (empty list: all match)."""
    exp, problems = case.expected, []
    got_grid = ras_grid(info["shape"], info["spacing_mm"], info["orientation"], info["origin_mm"])
    if case.reference == "dicom fields":
        n = exp["n_files"]
        z_step = (exp["z_range"][1] - exp["z_range"][0]) / (n - 1)
        want_shape = [exp["cols"], exp["rows"], n]
        want_spacing = [exp["pixel_spacing"][1], exp["pixel_spacing"][0], z_step]
        if info["shape"] != want_shape:
            problems.append(f"shape {info['shape']} != {want_shape}")
        if not np.allclose(info["spacing_mm"], want_spacing, atol=1e-3):
            problems.append(f"spacing {info['spacing_mm']} != {want_spacing}")
        z_low = got_grid["low"][2]
        z_high = z_low + got_grid["spacing"][2] * (got_grid["shape"][2] - 1)
        if not np.allclose([z_low, z_high], exp["z_range"], atol=TOL_MM):
            problems.append(f"z range {[round(z_low, 3), round(z_high, 3)]} != {exp['z_range']}")
        if info["value_range"] != list(exp["HU_range"]):
            problems.append(f"HU range {info['value_range']} != {exp['HU_range']}")
        return problems
    want_grid = ras_grid(exp["shape"], exp["spacing_mm"], exp["orientation"], exp["origin_mm"])
    if case.kind == "nifti":
        if info["shape"] != exp["shape"]:
            problems.append(f"shape {info['shape']} != {exp['shape']}")
        if info["orientation"] != exp["orientation"]:
            problems.append(f"orientation {info['orientation']} != {exp['orientation']}")
        if not np.allclose(info["spacing_mm"], exp["spacing_mm"], atol=1e-3):
            problems.append(f"spacing {info['spacing_mm']} != {exp['spacing_mm']}")
        if not np.allclose(info["origin_mm"], exp["origin_mm"], atol=TOL_MM):
            problems.append(f"origin {info['origin_mm']} != {exp['origin_mm']}")
    else:
        if got_grid["shape"] != want_grid["shape"]:
            problems.append(f"RAS-ordered shape {got_grid['shape']} != {want_grid['shape']}")
        if not np.allclose(got_grid["spacing"], want_grid["spacing"], atol=1e-3):
            problems.append(f"RAS-ordered spacing {got_grid['spacing']} != {want_grid['spacing']}")
        # The far corner of a flipped axis carries the 4-decimal rounding of the spacing n - 1 times.
        tol = TOL_MM + 1e-4 * (np.asarray(want_grid["shape"]) - 1)
        if np.any(np.abs(np.subtract(got_grid["low"], want_grid["low"])) > tol):
            problems.append(f"grid corner (RAS) {np.round(got_grid['low'], 2).tolist()} != "
                            f"{np.round(want_grid['low'], 2).tolist()}")
        if info["orientation"] != exp["orientation"] and not problems:
            case.notes.append(f"same world grid; axis order {info['orientation']} here, "
                              f"{exp['orientation']} in the NIfTI")
    if info["value_range"] != list(exp["value_range"]):
        problems.append(f"HU range {info['value_range']} != {exp['value_range']}")
    return problems


def main(argv: list[str]) -> int:
    root = realct_root(argv[0] if argv else None)
    rows, bad = [], 0
    for case in cases(root):
        try:
            info = run_info(root / case.path)
            problems = compare(case, info)
            got = f"{'x'.join(map(str, info['shape']))} {info['orientation']} " \
                  f"{'/'.join(f'{s:g}' for s in info['spacing_mm'])}"
        except RuntimeError as error:
            problems, got = [f"info failed: {error}"], "-"
        status = "OK" if not problems else "MISMATCH"
        bad += bool(problems)
        rows.append((case.path, case.kind, got, case.reference.split("/")[-1], status,
                     "; ".join(problems + case.notes)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    header = ("file", "format", "shape orient spacing", "compared with", "result")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True))
        print(line + (f"  {row[5]}" if row[5] else ""))
    print(f"{len(rows) - bad} OK, {bad} MISMATCH")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
