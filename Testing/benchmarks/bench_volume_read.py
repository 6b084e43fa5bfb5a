"""Speed and memory of `read_volume` for NIfTI, NRRD and DICOM (prints figures; asserts nothing).

Writes a synthetic 512 x 512 x 300 int16 CT (150 MiB of voxels) as .nii.gz, .nrrd (raw and gzip) and a DICOM
series in a temporary folder, then reads each in a fresh Python process and prints the wall time and the peak
resident memory above the process's baseline after imports (resource.getrusage ru_maxrss), next to the array
size, so "extra memory / array" shows how many copies a reader holds at its peak. Reference lines show what
the plain library calls cost (nibabel get_fdata, SimpleITK GetArrayFromImage).

The files are written by a child process too: on Linux a process started by a big parent inherits the
parent's ru_maxrss, so the parent stays small for the readers' figures to mean anything.

    .venv/bin/python Testing/benchmarks/bench_volume_read.py [--slices 300] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np, nibabel, SimpleITK as sitk, pydicom
from MedRegionCTLib.volume import read_volume

def peak_bytes():
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024

kind, path = sys.argv[1], sys.argv[2]
base = peak_bytes()
start = time.perf_counter()
if kind == "ref-nibabel-get_fdata":
    array = nibabel.load(path).get_fdata()
elif kind == "ref-sitk-GetArrayFromImage":
    array = sitk.GetArrayFromImage(sitk.ReadImage(path))
else:
    array = read_volume(path).array
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "extra_bytes": peak_bytes() - base, "dtype": str(array.dtype),
                  "shape": list(array.shape), "checksum": float(np.sum(array, dtype=np.float64))}))
"""


def synthetic_ct(shape, seed=0):
    """Air outside an elliptical body with soft tissue, two lungs and a spine, plus noise (int16 HU)."""
    import numpy as np

    ni, nj, nk = shape
    rng = np.random.default_rng(seed)
    x = (np.arange(ni) - ni / 2)[:, None] / (ni / 2)
    y = (np.arange(nj) - nj / 2)[None, :] / (nj / 2)
    plane = np.full((ni, nj), -1000, dtype=np.int16)
    body = (x / 0.85) ** 2 + (y / 0.6) ** 2 < 1
    plane[body] = 40
    plane[((x - 0.4) / 0.3) ** 2 + (y / 0.4) ** 2 < 1] = -850
    plane[((x + 0.4) / 0.3) ** 2 + (y / 0.4) ** 2 < 1] = -850
    plane[(x / 0.08) ** 2 + ((y - 0.45) / 0.08) ** 2 < 1] = 700
    volume = np.empty(shape, dtype=np.int16, order="F")
    for k in range(nk):
        volume[:, :, k] = plane + rng.integers(-20, 21, size=(ni, nj), dtype=np.int16)
    return volume


def write_all(folder: Path, volume) -> dict[str, Path]:
    import nibabel as nib
    import numpy as np
    import SimpleITK as sitk
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    affine = np.diag([-0.7, -0.7, 1.0, 1.0])
    paths = {"nifti .nii.gz": folder / "ct.nii.gz", "nifti .nii": folder / "ct.nii"}
    nib.save(nib.Nifti1Image(volume, affine), paths["nifti .nii.gz"])
    nib.save(nib.Nifti1Image(volume, affine), paths["nifti .nii"])
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    image.SetSpacing((0.7, 0.7, 1.0))
    paths["nrrd raw"] = folder / "ct.nrrd"
    sitk.WriteImage(image, str(paths["nrrd raw"]))
    paths["nrrd gzip"] = folder / "ct_gz.nrrd"
    sitk.WriteImage(image, str(paths["nrrd gzip"]), useCompression=True)
    del image
    paths["dicom series"] = folder / "dicom"
    paths["dicom series"].mkdir()
    series, study = generate_uid(), generate_uid()
    ni, nj, nk = volume.shape
    for k in range(nk):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.SeriesNumber = "CT", series, study, 1
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.Rows, ds.Columns = nj, ni
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (volume[:, :, k].T.astype(np.int32) + 1024).astype(np.uint16).tobytes()
        ds.save_as(paths["dicom series"] / f"{k:04d}", enforce_file_format=True)
    return paths


def run_child(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_files(folder: Path, slices: int) -> None:
    """Child process: write the test files and print their paths, the array size and its checksum."""
    import numpy as np

    volume = synthetic_ct((512, 512, slices))
    start = time.perf_counter()
    paths = write_all(folder, volume)
    print(json.dumps({"paths": {k: str(v) for k, v in paths.items()}, "array_bytes": volume.nbytes,
                      "checksum": float(np.sum(volume, dtype=np.float64)),
                      "seconds": time.perf_counter() - start}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--keep", type=Path, help="write the test files here and keep them")
    parser.add_argument("--write-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_only:
        write_files(args.write_only, args.slices)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "--slices", str(args.slices), "--write-only", str(folder)]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        written = json.loads(out.stdout.strip().splitlines()[-1])
        paths = {k: Path(v) for k, v in written["paths"].items()}
        array_bytes, expected = written["array_bytes"], written["checksum"]
        print(f"wrote 512 x 512 x {args.slices} int16 CT as NIfTI, NRRD and {args.slices} DICOM files in "
              f"{written['seconds']:.1f} s; array size {array_bytes / 2**20:.0f} MiB")
        print(f"{'format':34s} {'time s':>7s} {'peak extra MiB':>15s} {'extra/array':>12s}  dtype   ok")
        runs = [(name, "read_volume", p) for name, p in paths.items()]
        runs += [("ref: nibabel get_fdata (.nii.gz)", "ref-nibabel-get_fdata", paths["nifti .nii.gz"]),
                 ("ref: sitk GetArrayFromImage (nrrd)", "ref-sitk-GetArrayFromImage", paths["nrrd raw"])]
        for name, kind, path in runs:
            r = run_child(kind, path)
            same = "yes" if abs(r["checksum"] - expected) < 0.5 else "no"
            print(f"{name:34s} {r['seconds']:7.2f} {r['extra_bytes'] / 2**20:15.0f} "
                  f"{r['extra_bytes'] / array_bytes:12.2f}  {r['dtype']:7s} {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
