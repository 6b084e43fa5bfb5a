"""Region masks -> a segmentation node (one segment per schema region), and a segmentation node -> LabelMap.

Every region segment carries its schema name, colour and SNOMED CT terminology entry (in the string format
Slicer stores in a segment's ``TerminologyEntry`` tag), the region key (tag :data:`REGION_KEY_TAG`) and a jump
point inside the region (tag :data:`TARGET_TAG`, RAS mm), which the report panel uses to centre the views.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import InputError
from ..volume import LabelMap
from ._mrml import matrix_to_numpy, new_node, numpy_to_matrix, require_mrml

REGION_KEY_TAG = "MedRegionCT.RegionKey"
TARGET_TAG = "MedRegionCT.TargetRAS"
_MAX_SEARCH_POINTS = 200_000


def _binary_name(slicer) -> str:
    return slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()


def _oriented_image(slicer, affine: np.ndarray, extent, crop: np.ndarray | None = None):
    """A vtkOrientedImageData on the grid ``affine`` covering ``extent`` (i0, i1, j0, j1, k0, k1)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    image = slicer.vtkOrientedImageData()
    image.SetImageToWorldMatrix(numpy_to_matrix(affine))
    image.SetExtent(*[int(e) for e in extent])
    if crop is not None:
        scalars = numpy_to_vtk(np.ascontiguousarray(crop.transpose(2, 1, 0)).reshape(-1).astype(np.uint8),
                               deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
        image.GetPointData().SetScalars(scalars)
    else:
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        image.GetPointData().GetScalars().Fill(0)
    return image


def _bounds(mask: np.ndarray):
    """Index bounding box as (slices, extent) or None for an empty mask."""
    if not mask.any():
        return None
    lo, hi = [], []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(hit[0]))
        hi.append(int(hit[-1]))
    slices = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    return slices, (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])


def target_point(mask: np.ndarray, affine: np.ndarray, bounds=None) -> np.ndarray | None:
    """A voxel centre inside ``mask`` close to its centroid, in RAS mm (None for an empty mask).

    The centroid itself can lie outside a crescent or a pair of lungs; the nearest mask voxel (searched on
    a coarse subgrid of the mask for big regions) always lies inside, so jumping there shows the region.
    """
    bounds = bounds or _bounds(mask)
    if bounds is None:
        return None
    slices, _ = bounds
    crop = mask[slices]
    offset = np.array([s.start for s in slices], dtype=np.float64)
    count = int(np.count_nonzero(crop))
    step = max(1, int(np.ceil((count / _MAX_SEARCH_POINTS) ** (1.0 / 3.0))))
    idx = np.argwhere(crop[::step, ::step, ::step]).astype(np.float64) * step
    if not len(idx):  # a thin structure the subgrid missed
        idx = np.argwhere(crop).astype(np.float64)
    centroid = np.mean(idx, axis=0) if step > 1 else np.argwhere(crop).mean(axis=0)
    lin = affine[:3, :3]
    dist = np.linalg.norm((idx - centroid) @ lin.T, axis=1)
    best = idx[int(np.argmin(dist))] + offset
    return best @ lin.T + affine[:3, 3]


def segment_tag(segment, tag: str) -> str:
    """A segment tag's value ("" when the segment has no such tag)."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(tag, value) else ""


def _segment_id(key: str) -> str:
    return "region_" + re.sub(r"[^0-9A-Za-z]+", "_", key).strip("_")


def _set_terminology(segment, entry: str) -> None:
    if hasattr(segment, "SetTerminology"):
        segment.SetTerminology(entry)
    else:  # Slicer before 5.8: the tag is the API
        segment.SetTag(segment.GetTerminologyEntryTagName(), entry)


def regions_to_segmentation(regions, grid, node=None, scene=None, name: str = "Regions", reference_node=None):
    """One segment per region (``anatomy.RegionMask`` list, schema order) on ``grid`` (the CT Volume).

    ``node``: a segmentation node to refill (its segments are replaced), else a new one in ``scene``.
    ``reference_node``: the CT volume node, set as the segmentation's reference geometry.
    Empty regions (outside the field of view) get an empty segment, hidden, so segments and report
    paragraphs stay one-to-one. Returns the node.
    """
    slicer = require_mrml()
    node = new_node(slicer, "vtkMRMLSegmentationNode", name, node, scene)
    affine = np.asarray(grid.affine, dtype=np.float64)
    shape = tuple(int(s) for s in grid.shape)
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    binary = _binary_name(slicer)
    if hasattr(segmentation, "SetSourceRepresentationName"):
        segmentation.SetSourceRepresentationName(binary)
    else:
        segmentation.SetMasterRepresentationName(binary)
    if reference_node is not None and reference_node.GetParentTransformNode() is None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    else:  # the grid's affine is already in world coordinates (a volume's parent transform included)
        full = (0, shape[0] - 1, 0, shape[1] - 1, 0, shape[2] - 1)
        geometry = _oriented_image(slicer, affine, full)
        segmentation.SetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
            slicer.vtkSegmentationConverter.SerializeImageGeometry(geometry))
    empty = []
    for region_mask in regions:
        mask = np.asarray(region_mask.mask, dtype=bool)
        if mask.shape != shape:
            raise InputError(f"region '{region_mask.key}' mask has shape {mask.shape}, not the CT grid {shape}; "
                             "build the regions on this CT.")
        region = region_mask.region
        bounds = _bounds(mask)
        if bounds is None:
            image = _oriented_image(slicer, affine, (0, -1, 0, -1, 0, -1))
            empty.append(region_mask.key)
        else:
            slices, extent = bounds
            image = _oriented_image(slicer, affine, extent, mask[slices])
        segment = slicer.vtkSegment()
        segment.SetName(region.name)
        segment.SetColor(*[c / 255.0 for c in region.color])
        _set_terminology(segment, region.terminology.slicer_entry())
        segment.SetTag(REGION_KEY_TAG, region_mask.key)
        point = target_point(mask, affine, bounds)
        if point is not None:
            segment.SetTag(TARGET_TAG, ",".join(f"{v:.3f}" for v in point))
        segment.AddRepresentation(binary, image)
        segmentation.AddSegment(segment, _segment_id(region_mask.key))
    if node.GetScene() is not None:
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        for key in empty:
            display.SetSegmentVisibility(_segment_id(key), False)
    return node


def segment_id_of_region(node, key: str) -> str | None:
    """The ID of the segment that holds region ``key`` (None when the node has none)."""
    segmentation = node.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(i)
        if segment_tag(segmentation.GetSegment(segment_id), REGION_KEY_TAG) == key:
            return segment_id
    return None


def segment_target_ras(node, segment_id: str) -> np.ndarray | None:
    """Where to centre the views on a segment (RAS mm, world): its jump point, else the centre Slicer
    computes; None for an empty segment."""
    segment = node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        return None
    tag = segment_tag(segment, TARGET_TAG)
    if tag:
        point = np.array([float(v) for v in tag.split(",")])
        transform = node.GetParentTransformNode()
        if transform is not None and transform.IsTransformToWorldLinear():
            import vtk

            m = vtk.vtkMatrix4x4()
            transform.GetMatrixTransformToWorld(m)
            point = (matrix_to_numpy(m) @ np.append(point, 1.0))[:3]
        return point
    center = node.GetSegmentCenterRAS(segment_id)
    return None if center is None else np.asarray(center, dtype=np.float64)


def _segments(node):
    """The segments of a segmentation node as ``[(segment_id, segment)]``, checked to be usable."""
    if node is None or not node.IsA("vtkMRMLSegmentationNode"):
        raise InputError("expected a segmentation node; select a segmentation (or let MedRegionCT segment).")
    segmentation = node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        raise InputError(f"segmentation '{node.GetName()}' has no segments; segment the CT first.")
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    return [(sid, segmentation.GetSegment(sid)) for sid in ids]


def _segment_masks(node, grid, order=None):
    """``(segment_id, segment, mask on grid)`` for the segments of ``node`` (a segmentation node; in ``order``,
    a list of segment indices, when given), resampled onto ``grid`` (the CT Volume) in world coordinates. One
    mask at a time; segments sharing one layer are resampled once."""
    slicer = require_mrml()
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    segments = _segments(node)
    segmentation = node.GetSegmentation()
    binary = _binary_name(slicer)
    if not segmentation.ContainsRepresentation(binary) and not segmentation.CreateRepresentation(binary):
        raise InputError(f"segmentation '{node.GetName()}' could not be converted to a binary labelmap; "
                         "convert it in the Segmentations module and run again.")
    affine = np.asarray(grid.affine, dtype=np.float64)
    shape = tuple(int(s) for s in grid.shape)
    reference = _oriented_image(slicer, affine, (0, shape[0] - 1, 0, shape[1] - 1, 0, shape[2] - 1))
    to_world = None
    transform = node.GetParentTransformNode()
    if transform is not None:
        if not transform.IsTransformToWorldLinear():
            raise InputError(f"segmentation '{node.GetName()}' is under a non-linear transform; harden it first.")
        m = vtk.vtkMatrix4x4()
        transform.GetMatrixTransformToWorld(m)
        to_world = matrix_to_numpy(m)
    layers: dict[str, np.ndarray] = {}
    for i in order if order is not None else range(len(segments)):
        segment_id, segment = segments[i]
        layer = segment.GetRepresentation(binary)
        key = layer.__this__  # the C++ address: segments in one shared layer are resampled once
        if key not in layers:
            source = layer
            if to_world is not None:
                source = slicer.vtkOrientedImageData()
                source.DeepCopy(layer)
                m = vtk.vtkMatrix4x4()
                layer.GetImageToWorldMatrix(m)
                source.SetImageToWorldMatrix(numpy_to_matrix(to_world @ matrix_to_numpy(m)))
            moved = slicer.vtkOrientedImageData()
            slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
                source, reference, moved, False, True)
            moved_ext = moved.GetExtent()
            out = np.zeros(shape, dtype=np.int32)
            if moved.GetPointData().GetScalars() is not None and moved_ext[1] >= moved_ext[0]:
                dims = [moved_ext[2 * a + 1] - moved_ext[2 * a] + 1 for a in range(3)]
                vals = vtk_to_numpy(moved.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
                vals = vals.transpose(2, 1, 0)
                src = [slice(max(0, -moved_ext[2 * a]), dims[a] - max(0, moved_ext[2 * a + 1] - (shape[a] - 1)))
                       for a in range(3)]
                dst = [slice(max(0, moved_ext[2 * a]), min(shape[a], moved_ext[2 * a + 1] + 1)) for a in range(3)]
                if all(s.stop > s.start for s in dst):
                    out[tuple(dst)] = vals[tuple(src)]
            layers[key] = out
        yield segment_id, segment, layers[key] == segment.GetLabelValue()


def region_masks_from_segmentation(node, grid) -> dict[str, np.ndarray]:
    """``{region key: mask on grid}`` from a segmentation written by :func:`regions_to_segmentation` (segments
    without a region key are left out). The scene keeps the regions; the module rebuilds them from here when it
    needs them (HTML key images) instead of holding full-grid arrays for the whole session."""
    return {segment_tag(segment, REGION_KEY_TAG): mask for _sid, segment, mask in _segment_masks(node, grid)
            if segment_tag(segment, REGION_KEY_TAG)}


def segmentation_to_labelmap(node, grid, mapping=None) -> LabelMap:
    """A :class:`LabelMap` on ``grid`` (the CT Volume) from a segmentation node: one class per segment, named
    by the segment name mapped to TotalSegmentator names (``mapping`` first, then as written, then normalised);
    where segments overlap, the segment listed first keeps the voxel (counted in
    ``meta["overlap_voxels_kept_by_earlier_class"]``)."""
    from ..anatomy import LabelTable, paint_label
    from ..segment.labels_import import read_name_mapping
    from ..segment.totalsegmentator import _apply_mapping, _finish

    segments = _segments(node)
    mapping = read_name_mapping(mapping)
    table = LabelTable.default()
    names = [_apply_mapping(segment.GetName() or sid, mapping, table) for sid, segment in segments]
    table, added = table.with_names(names)
    order = sorted(range(len(segments)), key=lambda i: (table.index(names[i]) >= 1000, i))
    shape = tuple(int(s) for s in grid.shape)
    array = np.zeros(shape, dtype=np.uint16 if max(table.names) < 65536 else np.uint32)
    found, lost = set(), {}
    for i, (_sid, _segment, mask) in zip(order, _segment_masks(node, grid, order)):
        if mask.any():
            found.add(names[i])
            kept_elsewhere = paint_label(array, mask, table.index(names[i]))
            if kept_elsewhere:
                lost[names[i]] = kept_elsewhere
    meta = {"source": f"slicer segmentation '{node.GetName()}'", "reader": "slicer segmentation node",
            "names_from": "segment names", "not_found": sorted(set(names) - found),
            "unknown_names": [a for a in added if a in found], "overlap_voxels_kept_by_earlier_class": lost}
    return _finish(array, np.asarray(grid.affine, dtype=np.float64), table, meta)
