"""DICOM SR (TID 1500) and DICOM SEG from a real (synthetic) CT DICOM series written to disk with pydicom."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_series_fixture import write_ct_series
from report_fixture import hand_made_report

from MedRegionCTLib.anatomy import build_regions, load_schema
from MedRegionCTLib.errors import InputError
from MedRegionCTLib.measure import measure
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.report.render import read_dicom_headers, write_dicom_seg, write_dicom_sr
from MedRegionCTLib.report.render.dicom_common import series_affine
from MedRegionCTLib.volume import LabelMap, read_volume, reorient, write_nifti

hd = pytest.importorskip("highdicom", reason="DICOM SR/SEG need highdicom (pip install MedRegionCTLib[dicom])")

K = range(30, 50)  # 20 slices through the heart, lungs and the right pleural effusion


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    ph = make_phantom("tiny")
    folder = tmp_path_factory.mktemp("dicom") / "ct"
    paths = write_ct_series(folder, ph.volume, K)
    volume = read_volume(folder)
    labels = LabelMap(np.ascontiguousarray(ph.labels.array[:, :, K.start:K.stop]), volume.affine, ph.labels.names)
    regions = build_regions(labels, "radgenome10", volume)
    m = measure(volume, labels)
    report = hand_made_report(regions, m)
    return folder, paths, volume, labels, regions, m, report


def _items(seq):
    for item in seq:
        yield item
        if "ContentSequence" in item:
            yield from _items(item.ContentSequence)


def test_read_dicom_headers_gives_the_series_in_slice_order(series):
    folder, paths, volume, *_ = series
    headers = read_dicom_headers(folder)
    assert len(headers) == len(paths) == 20
    assert all("PixelData" not in ds for ds in headers)
    z = [float(ds.ImagePositionPatient[2]) for ds in headers]
    assert z == sorted(z)
    assert np.allclose(series_affine(headers), volume.affine, atol=1e-4)
    one = read_dicom_headers(paths[3])  # a single file stands for its series
    assert {ds.SOPInstanceUID for ds in one} == {ds.SOPInstanceUID for ds in headers}


def test_read_dicom_headers_refuses_non_dicom_input(series, tmp_path):
    _, _, volume, *_ = series
    nifti = write_nifti(volume, tmp_path / "ct.nii.gz")
    with pytest.raises(InputError, match="not a DICOM series"):
        read_dicom_headers(nifti)


def test_dicom_writers_need_dicom_sources(series, tmp_path):
    *_, regions, m, report = series
    for sources in (None, [], tmp_path):
        with pytest.raises(InputError, match="DICOM"):
            write_dicom_sr(report, m, sources, tmp_path / "sr.dcm")
        with pytest.raises(InputError, match="DICOM"):
            write_dicom_seg(regions, "radgenome10", sources, tmp_path / "seg.dcm")
    assert not list(tmp_path.glob("*.dcm"))


def test_sr_holds_paragraphs_measurements_and_references(series, tmp_path):
    folder, _, _, _, _, m, report = series
    headers = read_dicom_headers(folder)
    assert write_dicom_sr(report, m, headers, tmp_path / "sr.dcm") == tmp_path / "sr.dcm"
    ds = pydicom.dcmread(tmp_path / "sr.dcm")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.PatientID == "PH0001" and ds.StudyInstanceUID == headers[0].StudyInstanceUID
    assert ds.VerificationFlag == "UNVERIFIED" and ds.CompletionFlag == "COMPLETE"
    referenced = {ref.ReferencedSOPInstanceUID for study in ds.CurrentRequestedProcedureEvidenceSequence
                  for s in study.ReferencedSeriesSequence for ref in s.ReferencedSOPSequence}
    assert referenced == {h.SOPInstanceUID for h in headers}
    items = list(_items(ds.ContentSequence))
    texts = [i.TextValue for i in items if i.ValueType == "TEXT"]
    for region in report.regions:
        assert region.paragraph in texts
        assert f"region:{region.key}" in texts  # tracking identifier of the region's group
    assert report.impression and all(i in texts for i in report.impression)
    nums = [i for i in items if i.ValueType == "NUM"]

    def values(meaning, unit):
        return [float(i.MeasuredValueSequence[0].NumericValue) for i in nums
                if i.ConceptNameCodeSequence[0].CodeMeaning == meaning
                and i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == unit]

    ctr = m.clinical["cardiothoracic_ratio"]["value"]
    if ctr is None:  # the slab cuts the heart near its widest level: not assessed, and no number written
        assert m.clinical["cardiothoracic_ratio"]["not_assessed"]
        assert not values("Cardiothoracic ratio", "{ratio}")
    else:
        assert any(abs(v - ctr) < 1e-6 for v in values("Cardiothoracic ratio", "{ratio}"))
    volumes = values("Volume", "ml")
    assert any(abs(v - m.regions["heart"]["volume_ml"]) < 1e-3 for v in volumes)
    assert any(abs(v - m.clinical["lung_volume_ml"]["right"]) < 1e-3 for v in volumes)
    diameters = values("Diameter", "mm")
    asc = m.clinical["ascending_aorta_diameter_mm"]["value"]
    assert asc is None or any(abs(v - asc) < 1e-6 for v in diameters)
    assert values("Attenuation Coefficient", "[hnsf'U]")
    # every finding has its own group, typed with SNOMED CT, with its sizes
    for f in report.findings:
        assert f"finding:{f.id}" in texts
        assert any(abs(v - f.size["max_diameter_mm"]) < 1e-6 for v in diameters)
    codes = {(i.ConceptCodeSequence[0].CodingSchemeDesignator, i.ConceptCodeSequence[0].CodeValue)
             for i in items if i.ValueType == "CODE"}
    assert ("SCT", "39607008") in codes and ("SCT", "80891009") in codes  # lung, heart as finding types
    assert ("SCT", "60046008") in codes  # the planted right pleural effusion
    sr = hd.sr.srread(tmp_path / "sr.dcm")  # highdicom parses what it wrote
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == len(report.regions) + len(report.findings)


@pytest.mark.parametrize("given", ["regions", "labelmap", "dict_reoriented"])
def test_seg_has_one_segment_per_region_with_codes_and_right_pixels(series, tmp_path, given):
    folder, _, volume, labels, regions, _, _ = series
    headers = read_dicom_headers(folder)
    schema = load_schema("radgenome10")
    if given == "regions":
        masks, affine = regions, None
    elif given == "labelmap":
        masks, affine = labels, None
    else:  # masks on a reoriented copy of the grid: placed by geometry, not by axis order
        ras = reorient(volume, "RAS")
        masks = {r.key: reorient(LabelMap(r.mask.view(np.uint8), volume.affine), "RAS").array.view(bool)
                 for r in regions}
        affine = ras.affine
    assert write_dicom_seg(masks, schema, headers, tmp_path / "seg.dcm", affine=affine) == tmp_path / "seg.dcm"
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    present = [r for r in regions if r.mask.any()]
    assert seg.number_of_segments == len(present) < len(regions)  # breast and thyroid are out of range
    for number, r in enumerate(present, start=1):
        desc = seg.get_segment_description(number)
        assert desc.SegmentLabel == r.region.name
        assert desc.SegmentedPropertyTypeCodeSequence[0].CodeValue == r.region.terminology.code
        assert desc.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    source_uids = [h.SOPInstanceUID for h in headers]
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == set(source_uids)
    assert seg.StudyInstanceUID == headers[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == headers[0].FrameOfReferenceUID
    heart = next(r for r in present if r.key == "heart")
    number = present.index(heart) + 1
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=source_uids, segment_numbers=[number],
                                               skip_overlap_checks=True)
    expected = np.stack([heart.mask[:, :, k].T for k in range(len(headers))])
    assert pixels.shape[:3] == expected.shape and expected.any()
    assert np.array_equal(pixels[..., 0].astype(bool), expected)
