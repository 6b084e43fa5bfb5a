"""The carina is where the air tube parts to the sides, not where the larynx splits front and back (the vocal
folds): realct_pathology/lung1002's carina was placed at the top of the scan."""

import numpy as np

from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.segment.builtin.airways import _split_tree
from MedRegionCTLib.segment.builtin.grid import Grid
from MedRegionCTLib.volume import Volume


def _tree():
    """A coarse air tree on 2 mm voxels (x, y, z; z up): a tube 12 mm across from slice 59 down to 20, split
    front and back on slice 55 (the glottis), parting left and right below slice 20 (the carina)."""
    tree = np.zeros((60, 60, 60), bool)
    xs, ys = np.mgrid[:60, :60]
    for k in range(20, 60):
        tree[:, :, k] = (xs - 30) ** 2 + (ys - 30) ** 2 <= 9
    tree[:, 30, 55] = False  # a fold across the lumen, front to back
    for k in range(5, 20):
        off = 4 + (20 - k) // 2
        tree[:, :, k] = ((xs - 30 - off) ** 2 + (ys - 30) ** 2 <= 4) | ((xs - 30 + off) ** 2 + (ys - 30) ** 2 <= 4)
    return tree


def test_the_carina_is_where_the_tube_parts_to_the_sides():
    tree = _tree()
    grid = Grid(Volume(np.full(tree.shape, -1000, np.int16), np.diag([2.0, 2.0, 2.0, 1.0])), coarse_mm=2.0)
    seed = np.zeros_like(tree)
    seed[:, :, 59] = tree[:, :, 59]
    trachea, left, right, carina = _split_tree(grid, tree, seed, BuiltinSegmenter().params["airways"])
    assert carina is not None and carina[2] == 20
    assert left.any() and right.any() and not (left & right).any()
    assert trachea[:, :, 55].any()  # the split lumen above stays trachea
