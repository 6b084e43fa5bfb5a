"""MRML conversion with the real MRML classes (slicer-core wheel, installed by the test extra): volume geometry
round trips for LPS, RAS and oblique grids, region segments with their terminology, the measurement table and
the report text nodes."""

import subprocess
import sys

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs the MRML classes: pip install -e '.[test]' (slicer-core)")
vtk = pytest.importorskip("vtk")

from slicer_module_loader import load_module  # noqa: E402

from MedRegionCTLib import slicer_mrml as sm  # noqa: E402
from MedRegionCTLib.anatomy import LabelTable, build_regions, load_schema  # noqa: E402
from MedRegionCTLib.errors import InputError  # noqa: E402
from MedRegionCTLib.report import Report  # noqa: E402
from MedRegionCTLib.report.document import Evidence, Finding, Provenance, RegionReport, Sentence  # noqa: E402
from MedRegionCTLib.volume import LabelMap, Volume  # noqa: E402


def _rotation(axis, degrees):
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    a, b = [i for i in range(3) if i != axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def _affine(direction, spacing, origin):
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(direction) @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


GRIDS = {
    "LPS": _affine(np.diag([-1.0, -1.0, 1.0]), (0.7, 0.8, 2.5), (120.0, 95.0, -310.0)),
    "RAS": _affine(np.eye(3), (1.5, 1.2, 3.0), (-150.0, -140.0, 20.0)),
    "oblique": _affine(_rotation(0, 17.0) @ _rotation(2, -23.0) @ np.diag([-1.0, 1.0, 1.0]), (0.6, 0.9, 1.25),
                       (33.3, -71.0, 5.5)),
}


def _matrix(m):
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _volume(grid, shape=(7, 6, 5)):
    rng = np.random.default_rng(len(grid))
    return Volume(rng.integers(-1024, 2000, shape).astype(np.int16), GRIDS[grid])


@pytest.fixture()
def scene():
    return slicer.vtkMRMLScene()


def test_import_is_lazy():
    code = "import sys, MedRegionCTLib.slicer_mrml; assert 'slicer' not in sys.modules and 'vtk' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("grid", list(GRIDS))
def test_volume_round_trip(scene, grid):
    volume = _volume(grid)
    node = sm.volume_to_node(volume, scene=scene, name="ct")
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetScene() is scene
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    np.testing.assert_allclose(_matrix(m), volume.affine, atol=1e-9)
    np.testing.assert_allclose(node.GetSpacing(), volume.spacing, atol=1e-9)
    np.testing.assert_allclose(node.GetOrigin(), volume.origin, atol=1e-9)
    image = node.GetImageData()
    assert image.GetDimensions() == volume.shape
    rng = np.random.default_rng(1)
    for ijk in rng.integers(0, volume.shape, (20, 3)):
        # the voxel Slicer shows at IJK holds the library's array[i, j, k] ...
        assert image.GetScalarComponentAsDouble(*[int(v) for v in ijk], 0) == volume.array[tuple(ijk)]
        # ... and sits at the same RAS position
        np.testing.assert_allclose(m.MultiplyPoint((*[float(v) for v in ijk], 1.0))[:3],
                                   volume.index_to_world(ijk), atol=1e-9)
    back = sm.node_to_volume(node)
    assert back.array.dtype == np.int16 and back.array.flags.c_contiguous
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-9)
    assert back.orientation == volume.orientation
    back.array[0, 0, 0] += 1  # a copy, not a view into VTK's memory
    assert image.GetScalarComponentAsDouble(0, 0, 0, 0) == volume.array[0, 0, 0]


@pytest.mark.parametrize("grid", list(GRIDS))
def test_volume_node_built_the_slicer_way(scene, grid):
    """A node set up through spacing/origin/directions and a K,J,I array reads back with index_to_world equal to
    the node's own IJK->RAS mapping."""
    aff = GRIDS[grid]
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    directions = aff[:3, :3] / spacing
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    node.SetSpacing(*spacing)
    node.SetOrigin(*aff[:3, 3])
    dm = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            dm.SetElement(r, c, directions[r, c])
    node.SetIJKToRASDirectionMatrix(dm)
    kji = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # K=4, J=5, I=6
    from vtk.util.numpy_support import numpy_to_vtk

    image = vtk.vtkImageData()
    image.SetDimensions(6, 5, 4)
    image.GetPointData().SetScalars(numpy_to_vtk(kji.ravel(), deep=True))
    node.SetAndObserveImageData(image)
    volume = sm.node_to_volume(node)
    assert volume.shape == (6, 5, 4)
    np.testing.assert_array_equal(volume.array, kji.transpose(2, 1, 0))
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 3, 1)]:
        m = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(m)
        ras = m.MultiplyPoint((*ijk, 1.0))[:3]
        np.testing.assert_allclose(volume.index_to_world(ijk), ras, atol=1e-9)
        assert volume.array[ijk] == kji[ijk[2], ijk[1], ijk[0]]


def test_parent_transform_is_applied(scene):
    volume = _volume("RAS")
    node = sm.volume_to_node(volume, scene=scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    t = np.eye(4)
    t[:3, :3] = _rotation(1, 30.0)
    t[:3, 3] = (5.0, -7.0, 11.0)
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, t[r, c])
    transform.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(transform.GetID())
    back = sm.node_to_volume(node)
    np.testing.assert_allclose(back.affine, t @ volume.affine, atol=1e-9)
    world = [0.0, 0.0, 0.0]
    node.TransformPointToWorld(volume.index_to_world((3, 2, 1)), world)
    np.testing.assert_allclose(back.index_to_world((3, 2, 1)), world, atol=1e-9)


def test_bad_volume_nodes(scene):
    with pytest.raises(InputError, match="no image data"):
        sm.node_to_volume(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"))
    with pytest.raises(InputError, match="scalar volume node"):
        sm.node_to_volume(scene.AddNewNodeByClass("vtkMRMLModelNode"))
    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode")
    image = vtk.vtkImageData()
    image.SetDimensions(3, 3, 3)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    vector.SetAndObserveImageData(image)
    with pytest.raises(InputError, match="3 components"):
        sm.node_to_volume(vector)


def test_labelmap_node(scene):
    labels = np.zeros((8, 7, 6), dtype=np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[5:7, 2:5, 2:4] = 2
    node = sm.volume_to_node(LabelMap(labels, GRIDS["oblique"]), scene=scene, name="labels")
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    lm = sm.labelmap_node_to_labelmap(node, names={1: "Heart", 2: "lung upper lobe left"})
    table = LabelTable.default()
    assert lm.names == {table.index("heart"): "heart", table.index("lung_upper_lobe_left"): "lung_upper_lobe_left"}
    np.testing.assert_array_equal(lm.mask("heart"), labels == 1)
    np.testing.assert_allclose(lm.affine, GRIDS["oblique"], atol=1e-9)


# --- regions -> segmentation ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def case():
    from MedRegionCTLib.measure import measure
    from MedRegionCTLib.phantom import make_phantom

    ph = make_phantom("tiny", seed=5, findings="default")
    regions = build_regions(ph.labels, "radgenome10", ph.volume)
    return ph, regions, measure(ph.volume, ph.labels, "radgenome10")


def _segment_voxels(segmentation, segment_id, volume):
    """The segment's voxels on the CT grid, read from its oriented image through its own image-to-world."""
    seg = segmentation.GetSegmentation()
    segment = seg.GetSegment(segment_id)
    image = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    m = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    np.testing.assert_allclose(_matrix(m), volume.affine, atol=1e-6)
    ext = image.GetExtent()
    out = np.zeros(volume.shape, dtype=bool)
    if ext[1] < ext[0]:
        return out
    from vtk.util.numpy_support import vtk_to_numpy

    dims = [ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1]
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(2, 1, 0)
    out[ext[0]:ext[1] + 1, ext[2]:ext[3] + 1, ext[4]:ext[5] + 1] = values == segment.GetLabelValue()
    return out


def test_regions_to_segmentation(case, scene):
    ph, regions, _ = case
    schema = load_schema("radgenome10")
    ct = sm.volume_to_node(ph.volume, scene=scene)
    node = sm.regions_to_segmentation(regions, ph.volume, scene=scene, reference_node=ct, name="Regions")
    seg = node.GetSegmentation()
    assert seg.GetNumberOfSegments() == len(schema.regions) == len(regions)
    logic = slicer.vtkSlicerTerminologiesModuleLogic
    display = node.GetDisplayNode()
    for i, rm in enumerate(regions):
        segment_id = seg.GetNthSegmentID(i)
        assert segment_id == sm.segment_id_of_region(node, rm.key)
        segment = seg.GetSegment(segment_id)
        region = schema[rm.key]
        assert segment.GetName() == region.name
        np.testing.assert_allclose(segment.GetColor(), np.array(region.color) / 255.0, atol=1e-6)
        entry = segment.GetTerminology()
        assert entry == region.terminology.slicer_entry()
        parsed = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(entry, parsed)
        assert parsed.GetTypeObject().GetCodeValue() == region.terminology.code
        assert parsed.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
        assert parsed.GetTypeObject().GetCodeMeaning() == region.terminology.meaning
        assert parsed.GetCategoryObject().GetCodeValue() == "123037004"
        assert logic.SerializeTerminologyEntry(parsed) == entry
        np.testing.assert_array_equal(_segment_voxels(node, segment_id, ph.volume), rm.mask)
        target = sm.segment_target_ras(node, segment_id)
        if rm.mask.any():
            assert display.GetSegmentVisibility(segment_id)
            ijk = tuple(int(v) for v in np.rint(ph.volume.world_to_index(target)))
            assert rm.mask[ijk], f"{rm.key}: jump point {target} is outside the region"
        else:
            assert target is None and not display.GetSegmentVisibility(segment_id)
    assert any(not rm.mask.any() for rm in regions)  # the tiny phantom has no breast: one empty segment
    # refilling the same node replaces its segments
    sm.regions_to_segmentation(regions[:3], ph.volume, node=node)
    assert seg.GetNumberOfSegments() == 3


def test_segmentation_to_labelmap(case, scene):
    """An existing segmentation (segments named as a user or the TotalSegmentator extension names them), on a
    coarser grid than the CT, comes back as TotalSegmentator classes on the CT grid."""
    ph, _, _ = case
    table = LabelTable.default()
    heart, lobe = ph.labels.mask("heart"), ph.labels.mask("lung_upper_lobe_left")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    from vtk.util.numpy_support import numpy_to_vtk

    for name, mask in (("Heart", heart), ("lung upper lobe left", lobe), ("my tumour", heart & False)):
        image = slicer.vtkOrientedImageData()
        m = vtk.vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                m.SetElement(r, c, ph.volume.affine[r, c])
        image.SetImageToWorldMatrix(m)
        image.SetExtent(0, mask.shape[0] - 1, 0, mask.shape[1] - 1, 0, mask.shape[2] - 1)
        image.GetPointData().SetScalars(numpy_to_vtk(mask.transpose(2, 1, 0).astype(np.uint8).ravel(), deep=True))
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.AddRepresentation(binary, image)
        node.GetSegmentation().AddSegment(segment)
    lm = sm.segmentation_to_labelmap(node, ph.volume)
    assert lm.same_grid(ph.volume)
    np.testing.assert_array_equal(lm.mask("heart"), heart)
    np.testing.assert_array_equal(lm.mask("lung_upper_lobe_left"), lobe)
    assert lm.index_of("heart") == table.index("heart")
    assert lm.meta["not_found"] == ["my tumour"]
    # the same segmentation under a linear transform lands shifted by whole voxels on the CT grid
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    step = ph.volume.affine[:3, 2]  # one voxel along k
    for r in range(3):
        shift.SetElement(r, 3, 2 * step[r])
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = sm.segmentation_to_labelmap(node, ph.volume)
    np.testing.assert_array_equal(moved.mask("heart")[:, :, 2:], heart[:, :, :-2])
    with pytest.raises(InputError, match="no segments"):
        sm.segmentation_to_labelmap(scene.AddNewNodeByClass("vtkMRMLSegmentationNode"), ph.volume)


def test_region_segmentation_round_trip(case, scene):
    """Region segments read back as classes named by region (unknown TotalSegmentator names from 1000); where
    regions overlap the first keeps the voxel and the loss is counted."""
    ph, regions, _ = case
    node = sm.regions_to_segmentation(regions, ph.volume, scene=scene)
    node.GetSegmentation().CollapseBinaryLabelmaps(False)  # shared layers, as Slicer stores them
    lm = sm.segmentation_to_labelmap(node, ph.volume, mapping={r.region.name: f"region {r.key}" for r in regions})
    union = np.zeros(ph.volume.shape, dtype=bool)
    for rm in regions:
        union |= rm.mask
    assert np.array_equal(lm.array > 0, union)
    kept = lm.meta["overlap_voxels_kept_by_earlier_class"]
    painted = sum(int(rm.mask.sum()) for rm in regions) - sum(kept.values())
    assert painted == int(union.sum())


# --- measurements -> table ----------------------------------------------------------------------------------
def test_measurements_table(case, scene):
    _, _, measurements = case
    rows = measurements.to_rows()
    node = sm.measurements_to_table(measurements, scene=scene)
    table = node.GetTable()
    assert table.GetNumberOfRows() == len(rows) == (len(measurements.structures) + len(measurements.regions)
                                                    + len(measurements.lesions))
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert columns[:2] == ["kind", "name"]
    assert set(columns) == {k for row in rows for k in row}
    assert {table.GetValueByName(r, "kind").ToString() for r in range(len(rows))} >= {"structure", "region"}
    heart_row = next(i for i, row in enumerate(rows) if row["kind"] == "structure" and row["name"] == "heart")
    assert table.GetValueByName(heart_row, "volume_ml").ToDouble() == pytest.approx(
        measurements.structures["heart"]["volume_ml"], abs=1e-3)
    assert node.GetColumnUnitLabel("volume_ml") == "mL"
    assert node.GetColumnUnitLabel("extent_si_mm") == "mm"
    assert table.GetColumnByName("volume_ml").IsA("vtkDoubleArray")
    assert table.GetColumnByName("name").IsA("vtkStringArray")
    back = sm.table_to_rows(node)
    for row, got in zip(rows, back, strict=True):
        for key, value in row.items():
            if value is None:
                assert key not in got or got[key] == ""
            elif isinstance(value, bool | str):
                assert got[key] == str(value)
            else:
                assert got[key] == pytest.approx(value)
    lesion_names = {f"{les['kind']}_{les['id']}" for les in measurements.lesions}
    assert lesion_names and lesion_names <= {row["name"] for row in back}  # the default phantom has findings


# --- report -> text nodes -----------------------------------------------------------------------------------
def _report():
    lung = RegionReport(
        key="lung", name="Lung",
        sentences=[Sentence("A nodule with a diameter of 18.0 mm is identified in the right upper lobe.",
                            Evidence(["lesion:1"], ["lesions/1"]), [1])],
        findings=[Finding(1, "nodule", "Lung nodule", "right upper lobe", "right", {"max_diameter_mm": 18.0},
                          evidence=Evidence(["lesion:1"], ["lesions/1"]))],
        measurements={"volume_ml": 4800.0})
    heart = RegionReport(key="heart", name="Heart", sentences=[Sentence("Heart size is normal.")])
    return Report([lung, heart], Provenance(segmenter="builtin", reporter="measurement", schema="radgenome10"),
                  impression=[lung.sentences[0].text])


def test_report_text_nodes(scene):
    report = _report()
    text_node, json_node = sm.report_to_text_node(report, scene=scene, name="Report")
    text = text_node.GetText()
    assert text.startswith("Lung: A nodule with a diameter of 18.0 mm")
    assert "Heart: Heart size is normal." in text and "Impression:" in text
    assert text_node.GetNodeReference(sm.REPORT_JSON_ROLE) is json_node
    assert sm.report_from_text_node(text_node).to_json() == report.to_json()
    assert sm.report_from_text_node(json_node).to_json() == report.to_json()
    # refilling keeps the same two nodes
    report.regions[1].sentences[0].text = "Cardiomegaly."
    again, again_json = sm.report_to_text_node(report, node=text_node)
    assert again is text_node and again_json is json_node
    assert sm.report_from_text_node(text_node).region("heart").paragraph == "Cardiomegaly."
    plain = scene.AddNewNodeByClass("vtkMRMLTextNode")
    with pytest.raises(InputError, match="no MedRegionCT report JSON"):
        sm.report_from_text_node(plain)


# --- the module's Logic on real MRML, without the Slicer application ----------------------------------------
def test_module_logic_process_headless(case, monkeypatch):
    ph, regions, measurements = case
    module = load_module(monkeypatch)
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    volume_node = sm.volume_to_node(ph.volume, scene=scene, name="Phantom CT")
    logic = module.MedRegionCTLogic()
    steps = []
    # an existing segmentation as the source: the phantom's exact labels, imported the way a user's would be
    label_node = sm.volume_to_node(ph.labels, scene=scene, name="labels")
    seg_source = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode")
    colors.SetTypeToUser()
    colors.SetNumberOfColors(int(ph.labels.array.max()) + 1)
    for index, name in ph.labels.names.items():
        colors.SetColor(index, name, 0.5, 0.5, 0.5, 1.0)
    label_node.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, seg_source)
    result = logic.process(volume_node, segmentationSource="segmentation", segmentationNode=seg_source,
                           progress=lambda f, m: steps.append(f))
    assert steps[-1] == pytest.approx(1.0) and steps == sorted(steps)
    assert result.analysis.labelmap.same_grid(ph.volume)
    for name in ("heart", "aorta", "lung_upper_lobe_left"):
        np.testing.assert_array_equal(result.analysis.labelmap.mask(name), ph.labels.mask(name))
    schema = load_schema("radgenome10")
    seg = result.segmentationNode.GetSegmentation()
    assert seg.GetNumberOfSegments() == len(schema.regions)
    assert result.segmentationNode.GetScene() is scene and result.tableNode.GetScene() is scene
    assert result.tableNode.GetNumberOfRows() == len(result.analysis.measurements.to_rows())
    for region in schema.regions:
        assert f"{region.name}:" in result.reportNode.GetText()
    assert sm.report_from_text_node(result.reportNode).to_json() == result.report.to_json()
    assert result.report.provenance.segmenter == "existing segmentation"
    assert result.report.provenance.scope["segmentation"] == {
        "engine": "existing segmentation", "requested": "segmentation",
        "reason": "a segmentation from the scene, chosen by the user"}
    # 'auto' without the TotalSegmentator extension: the built-in segmenter, and the reason says why
    choice = logic.chooseSegmentation("auto")
    assert choice.source == "builtin" and "the TotalSegmentator extension is not installed" in choice.reason
    # consent is enforced before anything runs
    with pytest.raises(InputError, match="consent"):
        logic.process(volume_node, engine="server", serverUrl="https://gpu.example.org:8750")
    # a second run refills the given output nodes instead of adding new ones
    n_nodes = scene.GetNumberOfNodes()
    again = logic.writeResults(result.analysis, volume_node, result.segmentationNode, result.tableNode,
                               result.reportNode)
    assert again.segmentationNode is result.segmentationNode and scene.GetNumberOfNodes() == n_nodes


def test_module_uses_existing_slicer_api():
    """Every slicer.util function the module calls exists (slicer-core ships Slicer's own slicer/util.py), and so
    do the MRML methods the report panel and the logic rely on."""
    import re
    from pathlib import Path

    import slicer.util

    module_dir = Path(__file__).resolve().parents[2] / "MedRegionCT"
    text = "\n".join(f.read_text(encoding="utf-8") for f in [module_dir / "MedRegionCT.py",
                                                              *(module_dir / "MedRegionCTGui").glob("*.py")])
    used = set(re.findall(r"slicer\.util\.(\w+)", text))
    assert {"pip_install", "loadUI", "childWidgetVariables", "tryWithErrorDisplay", "confirmOkCancelDisplay",
            "mainWindow", "selectModule", "reloadScriptedModule"} <= used
    assert not [name for name in used if not hasattr(slicer.util, name)]
    assert hasattr(slicer.vtkSlicerMarkupsLogic, "JumpSlicesToLocation")
    assert hasattr(slicer.vtkMRMLSegmentationDisplayNode, "SetSegmentVisibility")
    assert hasattr(slicer.vtkMRMLSegmentationNode, "SetReferenceImageGeometryParameterFromVolumeNode")
    assert hasattr(slicer.vtkSlicerSegmentationsModuleLogic, "ImportLabelmapToSegmentationNode")


def test_rows_to_table_column_types(scene):
    rows = [{"kind": "lesion", "count": np.int64(3), "solid": True, "volume_ml": None},
            {"kind": "region", "count": 2.5, "volume_ml": np.float32(1.25), "extra_mm": 4}]
    node = sm.rows_to_table(rows, scene=scene, name="t")
    table = node.GetTable()
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == [
        "kind", "count", "solid", "volume_ml", "extra_mm"]
    assert table.GetColumnByName("count").IsA("vtkDoubleArray")
    assert table.GetColumnByName("solid").IsA("vtkStringArray")
    assert sm.table_to_rows(node) == [{"kind": "lesion", "count": 3.0, "solid": "True"},
                                      {"kind": "region", "count": 2.5, "solid": "", "volume_ml": 1.25,
                                       "extra_mm": 4.0}]
    assert node.GetColumnUnitLabel("extra_mm") == "mm" and node.GetColumnUnitLabel("count") == ""


@pytest.mark.parametrize("schema_name", ["radgenome10", "medregion6"])
def test_schema_terminology_parses_in_slicer(schema_name):
    logic = slicer.vtkSlicerTerminologiesModuleLogic
    for region in load_schema(schema_name).regions:
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(region.terminology.slicer_entry(), entry), region.key
        assert entry.GetTypeObject().GetCodeValue() == region.terminology.code
        assert entry.GetTypeObject().GetCodeMeaning() == region.terminology.meaning


def test_segments_follow_a_transformed_volume(scene):
    """A CT under a linear transform: the analysis grid is in world coordinates, so the region segments (not
    under the transform) overlay the CT where Slicer shows it."""
    from MedRegionCTLib.anatomy import RegionMask

    volume = _volume("oblique", shape=(12, 10, 8))
    node = sm.volume_to_node(volume, scene=scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 3, 12.5)
    m.SetElement(2, 3, -4.0)
    transform.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(transform.GetID())
    world = sm.node_to_volume(node)
    mask = np.zeros(world.shape, dtype=bool)
    mask[3:7, 2:6, 1:4] = True
    regions = [RegionMask(load_schema("radgenome10")["heart"], mask)]
    seg = sm.regions_to_segmentation(regions, world, scene=scene, reference_node=node)
    assert seg.GetParentTransformNode() is None
    image = seg.GetSegmentation().GetSegment("region_heart").GetRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    to_world = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(to_world)
    np.testing.assert_allclose(_matrix(to_world), world.affine, atol=1e-9)
    target = sm.segment_target_ras(seg, "region_heart")
    local = (np.linalg.inv(_matrix(m)) @ np.append(target, 1.0))[:3]  # where the CT node itself has it
    ijk = volume.world_to_index(local)
    np.testing.assert_allclose(ijk, np.rint(ijk), atol=1e-2)  # a voxel centre of the CT (tag kept to 1 µm)
    assert mask[tuple(int(v) for v in np.rint(ijk))]
