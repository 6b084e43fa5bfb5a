"""`medregionct info`: geometry and intensity summary of a CT file or DICOM folder."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print shape, spacing, orientation, HU range and axis directions of a CT",
                       description="Print shape, spacing, orientation code, HU range and the patient direction "
                                   "of each axis of a CT file (NIfTI, NRRD) or DICOM series folder.")
    p.add_argument("path", metavar="FILE_OR_DIR", help="NIfTI (.nii/.nii.gz), NRRD (.nrrd/.nhdr) or a DICOM folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--series", metavar="UID_OR_NUMBER",
                   help="which series to read when a DICOM folder holds several (SeriesInstanceUID or series number)")
    p.add_argument("--no-ct-check", action="store_true",
                   help="load even when the intensities do not look like CT Hounsfield units")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..volume import read_volume

    volume = read_volume(args.path, check_ct=not args.no_ct_check, series=args.series)
    info = {"path": str(args.path), **volume.describe(),
            "format": volume.meta.get("format", "")}
    if args.json:
        print(json.dumps(info))
        return 0
    lo, hi = info["value_range"]
    print(f"{info['path']}")
    print(f"  format       {info['format']}")
    print(f"  shape        {' x '.join(str(n) for n in info['shape'])}  ({info['dtype']})")
    print(f"  spacing      {' x '.join(f'{s:g}' for s in info['spacing_mm'])} mm")
    print(f"  orientation  {info['orientation']}{'  (oblique)' if info['oblique'] else ''}")
    print(f"  origin       ({', '.join(f'{v:g}' for v in info['origin_mm'])}) mm RAS")
    print(f"  extent       {' x '.join(f'{v:g}' for v in info['extent_mm'])} mm")
    print(f"  HU range     {lo:g} .. {hi:g}")
    for axis, words in zip("ijk", info["axis_directions"]):
        print(f"  axis {axis}       {words}")
    return 0
