"""Volume nodes <-> :class:`Volume` / :class:`LabelMap`.

Slicer keeps a volume's voxels in a ``vtkImageData`` whose x index runs fastest, so the NumPy view of the
scalars is ``[k, j, i]``; the library's arrays are ``[i, j, k]``. The node's IJK-to-RAS matrix *is* the
library's affine (both map voxel indices to RAS millimetres), so no axis flips are ever needed: LPS-ordered,
RAS-ordered and oblique volumes all convert by copying the matrix and transposing the array.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..volume import LabelMap, Volume
from ._mrml import matrix_to_numpy, new_node, numpy_to_matrix, require_mrml


def node_ijk_to_ras(node) -> np.ndarray:
    """The 4x4 matrix from the node's array indices (``[i, j, k]`` after transposing) to world RAS mm.

    Includes an image extent that does not start at 0 and a linear parent transform (a non-linear one must be
    hardened first)."""
    require_mrml()
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    affine = matrix_to_numpy(m)
    image = node.GetImageData()
    if image is not None:
        ext = image.GetExtent()
        shift = np.eye(4)
        shift[:3, 3] = (ext[0], ext[2], ext[4])
        affine = affine @ shift
    transform = node.GetParentTransformNode()
    if transform is not None:
        if not transform.IsTransformToWorldLinear():
            raise InputError(f"volume '{node.GetName()}' is under a non-linear transform; harden the transform "
                             "(Data module: right-click > Harden transform) and run again.")
        to_world = vtk.vtkMatrix4x4()
        transform.GetMatrixTransformToWorld(to_world)
        affine = matrix_to_numpy(to_world) @ affine
    return affine


def _node_array(node, what: str) -> np.ndarray:
    from vtk.util.numpy_support import vtk_to_numpy

    image = node.GetImageData() if node is not None else None
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"{what} has no image data; load a volume into it first.")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(f"{what} has {scalars.GetNumberOfComponents()} components per voxel (a colour or vector "
                         "image); give a single-component CT volume.")
    ext = image.GetExtent()
    dims = (ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1)
    kji = vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0])
    return np.ascontiguousarray(kji.transpose(2, 1, 0))  # a copy: never a view into VTK's memory


def node_to_volume(node, check_ct: bool = False) -> Volume:
    """A :class:`Volume` (copied voxels, affine = IJK-to-RAS incl. parent transform) from a scalar volume node.

    ``check_ct``: raise :class:`~MedRegionCTLib.errors.NotCTError` when the values are not Hounsfield units.
    """
    require_mrml()
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        kind = "nothing" if node is None else node.GetClassName()
        raise InputError(f"expected a scalar volume node, got {kind}; select a CT volume.")
    name = node.GetName()
    array = _node_array(node, f"volume '{name}'")
    if check_ct:
        from ..volume.intensity import check_ct_values

        check_ct_values(array, f"volume '{name}'")
    return Volume(array, node_ijk_to_ras(node), {"source": "slicer volume node", "node_name": name})


def labelmap_node_to_labelmap(node, names: dict | None = None) -> LabelMap:
    """A :class:`LabelMap` from a label map volume node; class names from ``names`` or the node's colour
    table (mapped to TotalSegmentator names where they match)."""
    require_mrml()
    if node is None or not node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError("expected a label map volume node; convert the volume to a label map first.")
    array = _node_array(node, f"label map '{node.GetName()}'")
    if not np.issubdtype(array.dtype, np.integer):
        array = np.rint(array).astype(np.int32)
    if names is None:
        names = {}
        display = node.GetDisplayNode()
        colors = display.GetColorNode() if display is not None else None
        if colors is not None:
            for value in np.unique(array):
                if value > 0:
                    name = colors.GetColorName(int(value))
                    if name and name != "(none)":
                        names[int(value)] = name
    from ..anatomy import LabelTable
    from ..segment.totalsegmentator import name_labels

    raw = LabelMap(array, node_ijk_to_ras(node), {})
    return name_labels(raw, dict(names), None, LabelTable.default(), source="slicer label map node",
                       names_from="label table given" if names else "")


def volume_to_node(volume: Volume | LabelMap, node=None, scene=None, name: str = "CT"):
    """Put ``volume`` into a scalar volume node (a label map node for a :class:`LabelMap`); returns the node.

    ``node``: an existing node to fill, else a new one in ``scene`` (``slicer.mrmlScene`` in the app).
    """
    slicer = require_mrml()
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    is_label = isinstance(volume, LabelMap)
    cls = "vtkMRMLLabelMapVolumeNode" if is_label else "vtkMRMLScalarVolumeNode"
    node = new_node(slicer, cls, name, node, scene)
    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    kji = np.ascontiguousarray(array.transpose(2, 1, 0))
    image = vtk.vtkImageData()
    image.SetDimensions(*volume.shape)
    scalars = numpy_to_vtk(kji.reshape(-1), deep=True)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    node.SetIJKToRASMatrix(numpy_to_matrix(volume.affine))
    node.SetAndObserveImageData(image)
    if node.GetScene() is not None and node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node
