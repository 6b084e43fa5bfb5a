"""The bad-input catalogue: every odd input `medregionct report` may meet, one row each, run through the command
line as a user would. A row expects either a clear one-line error (the library's exception type, exit status 1,
no traceback, nothing written and nothing already there changed), or a report that states the limitation in its
header (``provenance.scope["limitations"]``) and keeps to it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_series_fixture import write_ct_series

from MedRegionCTLib.cli.main import build_parser, main
from MedRegionCTLib.errors import (
    GeometryError,
    InputError,
    NotChestCTError,
    NotCTError,
    OutputError,
    VolumeReadError,
)
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.report.document import NEGATIVE_SENTENCE, NOT_ASSESSED
from MedRegionCTLib.volume import Volume, write_nifti

OPTIONS = ["--method", "builtin", "--no-progress", "--no-lesions", "--formats", "json,md"]


@pytest.fixture(scope="module")
def phantom():
    return make_phantom("tiny", seed=3, findings="none")


def part(ph, k0: int, k1: int) -> Volume:
    """Slices k0..k1-1 of the phantom CT (k runs inferior -> superior)."""
    affine = ph.volume.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ [0, 0, k0] + affine[:3, 3]
    return Volume(ph.volume.array[:, :, k0:k1].copy(), affine)


def nifti_with_pixdim(path: Path, array: np.ndarray, spacing) -> Path:
    """A NIfTI whose geometry is its qform and pixdim (nibabel would read a zero pixdim as 1 mm)."""
    header = nib.Nifti1Image(array, np.eye(4)).header.copy()
    header["pixdim"][1:4] = spacing
    header["sform_code"], header["qform_code"] = 0, 1
    path.write_bytes(header.binaryblock + b"\0" * 4 + np.asarray(array, "<i2").tobytes(order="F"))
    return path


def dicom_series(folder: Path, ph, k0=40, k1=45) -> list[Path]:
    return write_ct_series(folder, part(ph, 0, ph.volume.shape[2]), range(k0, k1))


# --- what each row writes: the CT argument (and sometimes a prepared --out) ---------------------------------------
def missing(tmp, ph):
    return tmp / "nope.nii.gz"


def png(tmp, ph):
    (tmp / "slice.png").write_bytes(b"\x89PNG\r\n")
    return tmp / "slice.png"


def no_dicom(tmp, ph):
    (tmp / "folder").mkdir()
    (tmp / "folder" / "notes.txt").write_text("hello")
    return tmp / "folder"


def truncated(tmp, ph):
    write_nifti(ph.volume, tmp / "ct.nii.gz")
    data = (tmp / "ct.nii.gz").read_bytes()
    (tmp / "ct.nii.gz").write_bytes(data[: len(data) // 2])
    return tmp / "ct.nii.gz"


def junk_header(tmp, ph):
    (tmp / "junk.nii").write_bytes(b"not a nifti file at all" * 20)
    return tmp / "junk.nii"


def shaped(shape):
    def build(tmp, ph):
        nib.save(nib.Nifti1Image(np.full(shape, -1000, np.int16), np.eye(4)), tmp / "odd.nii.gz")
        return tmp / "odd.nii.gz"
    return build


def mr_like(tmp, ph):
    mr = np.random.default_rng(5).integers(0, 900, size=(20, 20, 12)).astype(np.int16)
    nib.save(nib.Nifti1Image(mr, np.eye(4)), tmp / "mr.nii.gz")
    return tmp / "mr.nii.gz"


def two_series(tmp, ph):
    dicom_series(tmp / "dcm", ph)
    uid = pydicom.uid.generate_uid()
    for path in dicom_series(tmp / "other", ph, 40, 43):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SeriesNumber = uid, 9
        ds.save_as(tmp / "dcm" / f"b_{path.name}")
    return tmp / "dcm"


def duplicate_slice(tmp, ph):
    files = dicom_series(tmp / "dcm", ph)
    ds = pydicom.dcmread(files[1])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp / "dcm" / "copy.dcm")
    return tmp / "dcm"


def gap(tmp, ph):
    files = dicom_series(tmp / "dcm", ph, 40, 48)
    sorted(files, key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))[4].unlink()
    return tmp / "dcm"


def zero_pixel_spacing(tmp, ph):
    for path in dicom_series(tmp / "dcm", ph):
        ds = pydicom.dcmread(path)
        ds.PixelSpacing = [0.0, 0.0]
        ds.save_as(path)
    return tmp / "dcm"


def tilted_dicom(tmp, ph):
    """A gantry-tilted series: each slice 0.85 mm further along y than a straight stack would put it."""
    files = dicom_series(tmp / "dcm", ph, 30, 70)
    for path in files:
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.85 * (z - float(ph.volume.affine[2, 3])) / 4.0, z]
        ds.save_as(path)
    return tmp / "dcm"


def pixdim(spacing):
    def build(tmp, ph):
        return nifti_with_pixdim(tmp / "ct.nii", ph.volume.array, spacing)
    return build


def nrrd_zero(tmp, ph):
    header = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 96 90 94\n"
              "space directions: (4,0,0) (0,4,0) (0,0,0)\nkinds: domain domain domain\nendian: little\n"
              "encoding: raw\nspace origin: (0,0,0)\n\n")
    (tmp / "ct.nrrd").write_bytes(header.encode() + np.asarray(ph.volume.array, "<i2").tobytes(order="F"))
    return tmp / "ct.nrrd"


def sheared(tmp, ph):
    affine = ph.volume.affine.copy()
    affine[1, 2] = 4.0 * np.tan(np.radians(12))  # each slice 0.85 mm further anterior: a sheared grid
    write_nifti(Volume(ph.volume.array, affine), tmp / "sheared.nii.gz")
    return tmp / "sheared.nii.gz"


def abdomen(tmp, ph):
    write_nifti(part(ph, 0, 11), tmp / "abdomen.nii.gz")  # the 44 mm below the lung bases
    return tmp / "abdomen.nii.gz"


def head(tmp, ph):
    """A head-sized CT: brain inside a skull, air sinuses, 30 slices of 5 mm."""
    i, j, k = np.meshgrid(np.arange(100), np.arange(110), np.arange(30), indexing="ij")
    r = np.sqrt(((i - 50) * 2.0 / 75) ** 2 + ((j - 55) * 2.0 / 90) ** 2 + ((k - 15) * 5.0 / 80) ** 2)
    ct = np.full(r.shape, -1000, np.int16)
    ct[r < 1.0] = 1200  # skull
    ct[r < 0.92] = 35  # brain
    ct[((i - 50) ** 2 + (j - 95) ** 2 < 16) & (k > 10) & (k < 16)] = -990  # a sinus
    write_nifti(Volume(ct, np.diag([-2.0, -2.0, 5.0, 1.0])), tmp / "head.nii.gz")
    return tmp / "head.nii.gz"


def limb(tmp, ph):
    """A thigh-like CT: muscle and fat around a femur, 40 slices of 3 mm."""
    i, j, _ = np.meshgrid(np.arange(80), np.arange(80), np.arange(40), indexing="ij")
    r = np.hypot(i - 40, j - 40)
    ct = np.full(r.shape, -1000, np.int16)
    ct[r < 35] = -90  # subcutaneous fat
    ct[r < 30] = 50  # muscle
    ct[r < 8] = 900  # femur
    write_nifti(Volume(ct, np.diag([-2.0, -2.0, 3.0, 1.0])), tmp / "limb.nii.gz")
    return tmp / "limb.nii.gz"


def slab(tmp, ph):
    write_nifti(part(ph, 45, 47), tmp / "slab.nii.gz")  # two 4 mm slices through the lungs
    return tmp / "slab.nii.gz"


def good_ct(tmp, ph):
    write_nifti(part(ph, 30, 70), tmp / "ct.nii.gz")
    return tmp / "ct.nii.gz"


def out_with(content: Callable[[Path], None]):
    def prepare(out: Path):
        out.mkdir(parents=True)
        content(out)
    return prepare


@dataclass
class Row:
    id: str
    ct: Callable  # (tmp, phantom) -> CT path
    error: type | None  # the library exception, or None: a report with a stated limitation
    words: str  # regular expression the one-line error, or one of the report's limitations, must match
    extra: tuple = ()  # more command-line arguments
    out: str = "out"  # --out, relative to the row's folder
    prepare: Callable | None = None  # fills --out before the run (what must survive it)
    check: Callable | None = None  # (report.json dict, out folder) -> None, for limitation rows


def lung_and_pleura_not_assessed(report, out):
    regions = {r["key"]: r for r in report["regions"]}
    for key in ("lung", "pleura"):
        assert regions[key]["status"] == NOT_ASSESSED and regions[key]["findings"] == []
        assert regions[key]["paragraph"].startswith("Not assessed: the scan does not look like a chest CT")
    labels = json.loads((out / "labels.json").read_text())
    assert labels["chest_ct"] is False and labels["notes"]


def only_the_slab(report, out):
    for region in report["regions"]:
        assert all(s["kind"] != NEGATIVE_SENTENCE for s in region["sentences"]), region
    lung = {r["key"]: r for r in report["regions"]}["lung"]
    assert "appears on 2 of 2 slice(s)" in lung["paragraph"]
    labels = json.loads((out / "labels.json").read_text())
    assert {"lung_left", "lung_right"} <= set(labels["labels"].values()) and labels["coverage"]["thin_slab"]


def resampling_stated(report, out):
    assert report["provenance"]["scope"]["geometry"]["orthogonalized"]["shear_deg"] == pytest.approx(12, abs=0.01)


ROWS = [
    # reading the CT
    Row("missing path", missing, VolumeReadError, "does not exist"),
    Row("unsupported file type", png, VolumeReadError, r"unsupported file type '\.png'"),
    Row("folder without DICOM", no_dicom, VolumeReadError, "no DICOM images"),
    Row("truncated NIfTI", truncated, VolumeReadError, "truncated or corrupt"),
    Row("not a NIfTI inside", junk_header, VolumeReadError, "not a readable NIfTI"),
    Row("2D image", shaped((16, 16)), VolumeReadError, "2D image"),
    Row("single slice", shaped((16, 16, 1)), VolumeReadError, "single slice"),
    Row("4D series", shaped((8, 8, 8, 3)), VolumeReadError, "4D image"),
    Row("MR-like intensities", mr_like, NotCTError, "--no-ct-check"),
    Row("two DICOM series in one folder", two_series, VolumeReadError, "2 DICOM series"),
    Row("duplicate DICOM slice", duplicate_slice, VolumeReadError, "duplicate slice position"),
    Row("missing DICOM slice", gap, VolumeReadError, "has a gap"),
    # geometry
    Row("zero spacing (NIfTI pixdim)", pixdim((4.0, 4.0, 0.0)), GeometryError, "4 x 4 x 0 mm: .* above 0"),
    Row("negative spacing (NIfTI pixdim)", pixdim((4.0, 4.0, -4.0)), GeometryError, "must be above 0"),
    Row("1000 mm spacing", pixdim((4.0, 4.0, 1000.0)), GeometryError, "more than the 20 mm"),
    Row("zero spacing (NRRD)", nrrd_zero, GeometryError, "4 x 4 x 0 mm"),
    Row("zero DICOM PixelSpacing", zero_pixel_spacing, GeometryError, "0 x 0 x 4 mm"),
    Row("sheared grid", sheared, None, "sheared by 12.0 degrees", check=resampling_stated),
    # what the scan shows
    Row("not a chest CT", abdomen, NotChestCTError, "does not look like a chest CT .*--allow-non-chest"),
    Row("head CT", head, NotChestCTError, r"does not look like a chest CT \(no lungs"),
    Row("limb CT", limb, NotChestCTError, r"does not look like a chest CT \(no lungs"),
    Row("not a chest CT, allowed", abdomen, None, "^Not a chest CT: no lungs", ("--allow-non-chest",),
        check=lung_and_pleura_not_assessed),
    Row("thin slab", slab, None, r"^Thin slab: 2 axial slice\(s\) covering 8\.0 mm", check=only_the_slab),
    # arguments
    Row("unknown method", good_ct, InputError, "magic", ("--method", "magic")),
    Row("unknown schema", good_ct, InputError, "nine", ("--schema", "nine")),
    Row("unknown format", good_ct, InputError, "pdf", ("--formats", "json,pdf")),
    Row("DICOM output of a NIfTI", good_ct, InputError, "needs a DICOM series", ("--formats", "dicom")),
    Row("DICOM output of a tilted series", tilted_dicom, InputError, "gantry-tilted", ("--formats", "json,dicom")),
    Row("missing label file", good_ct, InputError, "labels.nii.gz", ("--method", "labels:labels.nii.gz")),
    # the output folder
    Row("output is a file", good_ct, OutputError, "is a file", out="taken",
        prepare=lambda out: out.write_text("mine")),
    Row("output folder cannot be created", good_ct, OutputError, "cannot create", out="taken/out",
        prepare=lambda out: out.parent.write_text("mine")),
    Row("earlier results without --overwrite", good_ct, OutputError, "pass --overwrite",
        prepare=out_with(lambda out: (out / "report.json").write_text("{}"))),
    Row("output folder holds other files", good_ct, OutputError, r"did not write \(notes\.txt\)", ("--overwrite",),
        prepare=out_with(lambda out: (out / "notes.txt").write_text("mine"))),
    Row("CT inside the output folder", lambda tmp, ph: good_ct(tmp / "out", ph), OutputError, "lies inside --out",
        ("--overwrite",)),
]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row, phantom, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ct = row.ct(tmp_path, phantom)
    out = tmp_path / row.out
    if row.prepare is not None:
        row.prepare(out)
    before = files(tmp_path)
    argv = ["report", str(ct), "--out", str(out), *OPTIONS, *row.extra]
    if row.error is not None:
        args = build_parser().parse_args(argv)
        with pytest.raises(row.error, match=row.words):
            args.func(args)  # the command's own code raises the library's exception type
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert err.startswith("medregionct report: error: ")
        assert files(tmp_path) == before  # nothing half-written, nothing there before changed or removed
        assert not [p for p in tmp_path.rglob(".*partial*")]
        return
    assert main(argv) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    limitations = report["provenance"]["scope"]["limitations"]
    assert any(re.search(row.words, text) for text in limitations), limitations
    header = (out / "report.md").read_text().split("## Impression")[0]
    assert all(f"> **Scope:** {text}" in header for text in limitations)  # shown where a reader starts
    row.check(report, out)
