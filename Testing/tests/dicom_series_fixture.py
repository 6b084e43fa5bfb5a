"""A small synthetic CT DICOM series on disk (real files written with pydicom), for the DICOM SR/SEG tests."""

from __future__ import annotations

import numpy as np


def write_ct_series(folder, volume, k_range, seed: int = 7):
    """Write slices ``k_range`` of ``volume`` (int16 HU) as CT Image Storage files; returns the file paths."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    aff = np.asarray(volume.affine)
    spacing = volume.spacing
    to_lps = np.diag([-1.0, -1.0, 1.0])
    row_dir = to_lps @ aff[:3, 0] / spacing[0]  # i: along a row (increasing column)
    col_dir = to_lps @ aff[:3, 1] / spacing[1]  # j: down a column (increasing row)
    paths = []
    for n, k in enumerate(k_range):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Tiny", "PH0001", "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "120000", "A1", ""
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 3, n + 1
        ds.Modality, ds.Manufacturer = "CT", "Synthetic"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in to_lps @ (aff[:3, :3] @ [0, 0, k] + aff[:3, 3])]
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([row_dir, col_dir])]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.PositionReferenceIndicator = ""
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[0])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.KVP = 120
        ds.PixelData = np.ascontiguousarray(volume.array[:, :, k].T.astype(np.int16)).tobytes()
        path = folder / f"slice_{rng.integers(1e9):09d}.dcm"  # names in random order: sorting is by position
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
