"""Lazy access to the MRML classes (Slicer's own Python or the slicer-core wheel) and VTK helpers."""

from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import InputError, MissingDependencyError


def mrml_available() -> bool:
    """True when ``import slicer`` would give the MRML classes (Slicer app or slicer-core wheel)."""
    return importlib.util.find_spec("slicer") is not None and importlib.util.find_spec("vtk") is not None


def require_mrml():
    """The ``slicer`` module with the MRML node classes, or a clear error naming what to install."""
    try:
        import slicer
    except ImportError as error:
        raise MissingDependencyError(
            f"the MRML classes are not available ({error}); run this inside 3D Slicer or "
            "`pip install slicer-core` (or MedRegionCTLib[test]).") from None
    if not hasattr(slicer, "vtkMRMLScalarVolumeNode"):
        raise MissingDependencyError("the installed 'slicer' package has no MRML classes; run this inside "
                                     "3D Slicer or `pip install slicer-core`.")
    return slicer


def matrix_to_numpy(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def numpy_to_matrix(array):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def new_node(slicer, class_name: str, name: str, node=None, scene=None):
    """``node`` when given (checked to be a ``class_name``), else a new node added to ``scene`` (or to
    ``slicer.mrmlScene`` inside the application; a node outside any scene otherwise)."""
    if node is not None:
        if not node.IsA(class_name):
            raise InputError(f"{node.GetName()} is a {node.GetClassName()}, expected a {class_name}; pass a "
                             f"{class_name} or None to create one.")
        return node
    scene = scene if scene is not None else getattr(slicer, "mrmlScene", None)
    if scene is not None:
        return scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    node = getattr(slicer, class_name)()
    node.SetName(name)
    return node


def unique_name(node, name: str) -> str:
    scene = node.GetScene() if node is not None else None
    return scene.GenerateUniqueName(name) if scene is not None else name
