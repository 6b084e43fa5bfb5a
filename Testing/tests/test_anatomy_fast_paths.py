"""The fast paths of ``build_regions`` give what the plain computations give (exact equality): region terms
evaluated inside the boxes of their classes, rules run on the box ``RULE_BOXES`` gives them, the shell's
distance test as a packed dilation, the mediastinum rule on per-slice windows, class masks class by class or
by one table look-up."""

import numpy as np
import pytest
from scipy import ndimage
from test_anatomy_regions import synthetic_chest  # noqa: E402  (Testing/tests is on sys.path under pytest)

from MedRegionCTLib.anatomy import build_regions, load_schema, patient_axes
from MedRegionCTLib.anatomy import regions as regions_module
from MedRegionCTLib.anatomy.labels import class_group
from MedRegionCTLib.anatomy.rules import (
    RULES,
    RuleInput,
    _convex_hull_2d,
    _within_distance,
    between_lungs,
)
from MedRegionCTLib.errors import InputError
from MedRegionCTLib.measure import measure
from MedRegionCTLib.volume import LabelMap, Volume


def _term_mask(labelmap, term) -> np.ndarray:
    """A schema term on the whole grid, the plain way (np.isin over the whole label map)."""
    if "first_of" in term:
        for sub in term["first_of"]:
            mask = _term_mask(labelmap, sub)
            if mask.any():
                return mask
        return np.zeros(labelmap.shape, dtype=bool)
    if "rule" in term:
        func, mask_params, _ = RULES[term["rule"]]
        params = term.get("params", {})
        masks = {k: _term_mask(labelmap, v) for k, v in params.items() if k in mask_params}
        numbers = {k: float(v) for k, v in params.items() if k not in mask_params}
        return func(RuleInput(labelmap.shape, patient_axes(labelmap.affine), masks, _term_mask.hu), **numbers)
    names, groups = set(term.get("classes", ())), [class_group(g) for g in term.get("groups", ())]
    codes = [i for i, n in labelmap.names.items() if n in names or any(n in g for g in groups)]
    return np.isin(labelmap.array, codes)


def _plain_regions(labelmap, schema, volume):
    _term_mask.hu = None if volume is None else volume.array
    out = {}
    for region in load_schema(schema).regions:
        mask = np.zeros(labelmap.shape, dtype=bool)
        for term in region.include:
            mask |= _term_mask(labelmap, term)
        for term in region.exclude:
            mask &= ~_term_mask(labelmap, term)
        out[region.key] = mask
    return out


def _permuted(volume, labels, order, flip):
    """The same chest with its index axes reordered and one flipped (the affine follows)."""
    aff = volume.affine.copy()
    aff[:, :3] = aff[:, list(order)]
    hu, lab = np.transpose(volume.array, order), np.transpose(labels.array, order)
    aff[:3, 3] += aff[:3, flip] * (lab.shape[flip] - 1)
    aff[:3, flip] *= -1
    hu, lab = np.ascontiguousarray(np.flip(hu, flip)), np.ascontiguousarray(np.flip(lab, flip))
    return Volume(hu, aff), LabelMap(lab, aff, labels.names)


@pytest.mark.parametrize("schema", ["radgenome10", "medregion6"])
@pytest.mark.parametrize("layout", ["RAS", "permuted"])
def test_boxed_regions_equal_the_plain_whole_grid_computation(schema, layout):
    volume, labels = synthetic_chest(shape=(60, 56, 44), spacing=(3.0, 3.0, 4.0), codes="LPS")
    if layout == "permuted":
        volume, labels = _permuted(volume, labels, (2, 0, 1), 1)
    plain = _plain_regions(labels, schema, volume)
    built = build_regions(labels, schema, volume)
    assert [r.key for r in built] == list(plain)
    assert built[[r.key for r in built].index("mediastinum")].mask.any()
    for r in built:
        assert np.array_equal(r.mask, plain[r.key]), r.key
        assert r.crop() == regions_module._bbox(r.mask, (0, 0, 0))
        assert r.empty == (not plain[r.key].any())


def test_class_by_class_and_table_look_up_agree(monkeypatch):
    volume, labels = synthetic_chest()
    monkeypatch.setattr(regions_module, "_PER_CLASS_FACTOR", 0.0)
    by_table = build_regions(labels, "radgenome10", volume)
    monkeypatch.setattr(regions_module, "_PER_CLASS_FACTOR", 1e9)
    by_class = build_regions(labels, "radgenome10", volume)
    for a, b in zip(by_table, by_class, strict=True):
        assert np.array_equal(a.mask, b.mask) and a.sources == b.sources


@pytest.mark.parametrize("spacing", [(0.75, 0.75, 1.25), (1.25, 0.5, 0.5), (0.7, 2.0, 0.7), (2.0, 2.0, 2.5)])
@pytest.mark.parametrize("distance", [2.0, 4.0, 9.0])
def test_packed_dilation_equals_the_3d_distance_transform(spacing, distance):
    rng = np.random.default_rng(int(distance * 10))
    mask = ndimage.binary_dilation(rng.random((23, 19, 37)) > 0.995, iterations=1)
    mask[0, 0, -1] = mask[-1, -1, 0] = True  # at the grid's corners, past a byte boundary of the packed axis
    exact = ndimage.distance_transform_edt(~mask, sampling=spacing) <= distance
    assert np.array_equal(_within_distance(mask, spacing, distance), exact)
    view = np.moveaxis(mask, 0, 2)  # not contiguous
    exact = ndimage.distance_transform_edt(~view, sampling=np.array(spacing)[[1, 2, 0]]) <= distance
    assert np.array_equal(_within_distance(view, tuple(np.array(spacing)[[1, 2, 0]]), distance), exact)


def _between_lungs_plain(inp, min_hu=None, bone_hu=None):
    """The rule slice by slice on whole slices (hull of the whole slice, centroids by np.argwhere)."""
    from MedRegionCTLib.anatomy.rules import _spine_from_hu

    si, lr, (ap, sign) = inp.axes.si[0], inp.axes.lr[0], inp.axes.ap
    plane = [a for a in range(3) if a != si]
    lr_in, ap_in = plane.index(lr), plane.index(ap)
    forward = np.arange(inp.shape[ap]) * sign
    lr_coords = np.arange(inp.shape[lr])

    def stack(a):
        return None if a is None else np.moveaxis(a, si, 0)

    left, right = stack(inp.masks["left"]), stack(inp.masks["right"])
    post, ant = stack(inp.masks.get("posterior_limit")), stack(inp.masks.get("anterior_limit"))
    hu = stack(inp.hu) if inp.hu is not None and bone_hu is not None else None
    out = np.zeros(left.shape, dtype=bool)
    for k in range(left.shape[0]):
        l2, r2 = left[k], right[k]
        if not l2.any() or not r2.any():
            continue
        union = l2 | r2
        hull = _convex_hull_2d(union)
        cand = hull & ~union
        lo, hi = sorted((np.argwhere(l2)[:, lr_in].mean(), np.argwhere(r2)[:, lr_in].mean()))
        cand &= np.expand_dims((lr_coords > lo) & (lr_coords < hi), axis=1 - lr_in)
        p2 = post[k] if post is not None else None
        if (p2 is None or not p2.any()) and hu is not None:
            p2 = _spine_from_hu(hu[k], hull, union, ap_in, forward, bone_hu)
        if p2 is not None and p2.any():
            cand &= np.expand_dims(forward > forward[np.argwhere(p2)[:, ap_in]].max(), axis=1 - ap_in)
        if ant is not None and ant[k].any():
            cand &= np.expand_dims(forward < forward[np.argwhere(ant[k])[:, ap_in]].min(), axis=1 - ap_in)
        out[k] = cand
    out = np.moveaxis(out, 0, si)
    if inp.masks.get("minus") is not None:
        out &= ~inp.masks["minus"]
    if min_hu is not None and inp.hu is not None:
        out &= inp.hu >= min_hu
    return out


@pytest.mark.parametrize("layout", ["RAS", "permuted"])
@pytest.mark.parametrize("spine", ["labelled", "from intensities"])
def test_mediastinum_windows_equal_whole_slices(layout, spine):
    volume, labels = synthetic_chest(shape=(60, 56, 44), spacing=(3.0, 3.0, 4.0))
    if layout == "permuted":
        volume, labels = _permuted(volume, labels, (1, 2, 0), 0)
    axes = patient_axes(labels.affine)

    def classes(group):
        return np.isin(labels.array, [i for i, n in labels.names.items() if n in class_group(group)])

    masks = {"left": classes("lung_left"), "right": classes("lung_right"),
             "anterior_limit": labels.array == labels.index_of("sternum"),
             "posterior_limit": classes("vertebrae") if spine == "labelled" else np.zeros(labels.shape, bool),
             "minus": classes("heart")}
    inp = RuleInput(labels.shape, axes, masks, volume.array)
    fast = between_lungs(inp, min_hu=-900, bone_hu=200)
    assert fast.any()
    assert np.array_equal(fast, _between_lungs_plain(inp, min_hu=-900, bone_hu=200))


def test_hull_of_a_window_is_the_hull_of_the_whole_slice():
    from MedRegionCTLib.anatomy.rules import _fill_hull, _hull_rows

    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = np.zeros((40, 50), dtype=bool)
        for _ in range(int(rng.integers(1, 4))):
            r, c = rng.integers(5, 35), rng.integers(5, 45)
            mask[r - rng.integers(0, 5):r + rng.integers(1, 5), c - rng.integers(0, 5):c + rng.integers(1, 5)] = True
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        window = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        origin = (int(rows[0]), int(cols[0]))
        whole = _convex_hull_2d(mask)
        part = _fill_hull(_hull_rows(window, origin), window.shape, origin) | window
        assert np.array_equal(part, whole[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
        assert not whole[:rows[0]].any() and not whole[:, :cols[0]].any()


def test_measure_takes_built_regions_and_says_whether_lesions_were_searched():
    volume, labels = synthetic_chest()
    built = build_regions(labels, "radgenome10", volume)
    given = measure(volume, labels, built_regions=built, lesions=False)
    own = measure(volume, labels, lesions=False)
    assert given.regions == own.regions and given.regions
    assert given.meta["lesion_search"] is False
    assert measure(volume, labels, regions=False).meta["lesion_search"] is True
    elsewhere = build_regions(LabelMap(np.zeros((4, 4, 4), np.uint8), volume.affine, {}), "radgenome10")
    with pytest.raises(InputError, match="built_regions"):
        measure(volume, labels, built_regions=elsewhere)
