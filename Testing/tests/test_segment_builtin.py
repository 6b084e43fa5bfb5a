"""The built-in classical segmenter on the phantom (small and tiny presets) and on small synthetic volumes:
Dice per structure, sides in world space, orientation independence, no invented chest, progress and cancel."""

import numpy as np
import pytest

from MedRegionCTLib.data import totalsegmentator_class_indices
from MedRegionCTLib.errors import CancelledError
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.progress import CancelToken
from MedRegionCTLib.segment import get_segmenter
from MedRegionCTLib.segment.base import Segmenter
from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.volume import Volume

BONE_PREFIXES = ("vertebrae_", "rib_", "sternum")


def group(labels, pred) -> np.ndarray:
    return np.isin(labels.array, [i for i, n in labels.names.items() if pred(n)])


def lobes(labels, side):
    return group(labels, lambda n: n.startswith("lung_") and "lobe" in n and n.endswith(side))


def dice(a, b) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum()) + int(b.sum()))


def centroid_ras(mask, affine) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0) @ affine[:3, :3].T + affine[:3, 3]


@pytest.fixture(scope="module")
def small():
    ph = make_phantom("small", seed=0, findings="default")
    return ph, BuiltinSegmenter().segment(ph.volume)


@pytest.fixture(scope="module")
def tiny():
    return make_phantom("tiny", seed=1, findings="none")


def test_is_a_segmenter_and_registered():
    seg = get_segmenter("builtin")
    assert isinstance(seg, BuiltinSegmenter)
    assert isinstance(seg, Segmenter)
    assert seg.name == "builtin"


@pytest.mark.parametrize("name, pred, minimum", [
    ("body", lambda n: n not in ("body_extremities",) and not n.startswith("humerus"), 0.97),
    ("bones", lambda n: n.startswith(BONE_PREFIXES), 0.85),
    ("airway", lambda n: n in ("trachea", "lung_airways"), 0.85),
    ("heart", lambda n: n == "heart", 0.88),
    ("aorta", lambda n: n == "aorta", 0.75),
    ("esophagus", lambda n: n == "esophagus", 0.7),
])
def test_small_phantom_dice(small, name, pred, minimum):
    ph, lm = small
    assert dice(group(lm, pred), group(ph.labels, pred)) >= minimum


@pytest.mark.parametrize("side", ["left", "right"])
def test_small_phantom_lungs_and_sides(small, side):
    ph, lm = small
    ours, truth = lobes(lm, side), lobes(ph.labels, side)
    assert dice(ours, truth) >= 0.97
    x = centroid_ras(ours, lm.affine)[0]
    assert (x < 0) if side == "left" else (x > 0)  # RAS: the patient's left is at negative x


def test_small_phantom_labels_and_meta(small):
    ph, lm = small
    index = totalsegmentator_class_indices()
    assert lm.shape == ph.volume.shape and np.allclose(lm.affine, ph.volume.affine)
    assert all(index[name] == i for i, name in lm.names.items())
    present = set(lm.present().values())
    for name in ("body_trunc", "trachea", "lung_airways", "heart", "aorta", "esophagus", "mediastinum",
                 "lung_pleural", "sternum", "abdominal_cavity", "vertebrae_T5", "rib_left_5", "rib_right_5"):
        assert name in present
    assert {"lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
            "lung_lower_lobe_right"} <= present
    assert lm.meta["lobes"] in ("fissures", "fissures+zones")  # the phantom draws its oblique fissures
    assert lm.meta["chest_ct"] is True and lm.meta["contrast"] is False
    assert "heart" not in lm.meta["not_found"] and "breast" in lm.meta["not_found"]  # no breasts in this phantom
    assert lm.meta["vertebral_levels"].startswith("carina")


def test_vertebral_levels_rib_numbers_and_lobes_match(small):
    ph, lm = small
    for name in ("vertebrae_T4", "vertebrae_T8", "rib_left_5", "rib_right_6", "lung_upper_lobe_left",
                 "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_lower_lobe_right"):
        assert dice(lm.mask(name), ph.labels.mask(name)) >= 0.6, name


def test_same_segmentation_in_world_space_for_ras_and_lps(tiny):
    lps = tiny.volume
    # the same image stored in RAS order with the axes permuted: flip i and j, swap i and k
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [lps.shape[0] - 1, lps.shape[1] - 1, 0]
    arr = np.flip(lps.array, axis=(0, 1)).transpose(2, 1, 0)
    perm = np.eye(4)[[2, 1, 0, 3]]
    ras = Volume(np.ascontiguousarray(arr), lps.affine @ flip @ perm)
    assert ras.orientation != lps.orientation
    a = BuiltinSegmenter().segment(lps)
    b = BuiltinSegmenter().segment(ras)
    back = np.flip(b.array.transpose(2, 1, 0), axis=(0, 1))
    assert np.allclose(b.affine, ras.affine)
    names_a = {i: a.names[i] for i in np.unique(a.array) if i}
    names_b = {i: b.names[i] for i in np.unique(b.array) if i}
    assert names_a == names_b
    assert float((back == a.array).mean()) > 0.9999


def test_progress_is_reported_and_cancel_stops(tiny):
    seen = []
    BuiltinSegmenter().segment(tiny.volume, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 8
    token = CancelToken()

    def stop_after_two(f, m):
        if f > 0.15:
            token.set()

    with pytest.raises(CancelledError):
        BuiltinSegmenter().segment(tiny.volume, progress=stop_after_two, cancel=token)


def _abdomen_volume(lungs: bool) -> Volume:
    """A 2 mm torso of soft tissue with a spine, bowel gas and (optionally) two lungs."""
    shape = (140, 110, 90)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    cx, cy = 70, 55
    arr = np.full(shape, -1000, np.int16)
    torso = ((x - cx) / 60) ** 2 + ((y - cy) / 42) ** 2 <= 1
    arr[torso] = 40
    arr[torso & (((x - cx) / 58) ** 2 + ((y - cy) / 40) ** 2 > 1)] = -100  # subcutaneous fat
    spine = ((x - cx) ** 2 + (y - cy + 28) ** 2) <= 49
    arr[spine] = 400
    gas = (((x - 45) ** 2 + (y - 60) ** 2 + (z - 30) ** 2) <= 100) | (((x - 95) ** 2 + (y - 50) ** 2) <= 36)
    arr[gas & torso] = -1000
    if lungs:
        for lx in (40, 100):
            lung = ((x - lx) / 22) ** 2 + ((y - cy) / 30) ** 2 + ((z - 60) / 28) ** 2 <= 1
            arr[lung] = -850
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-140, -110, -90]
    return Volume(arr, affine)


def test_volume_without_lungs_is_not_made_into_a_chest():
    lm = BuiltinSegmenter().segment(_abdomen_volume(lungs=False))
    assert lm.meta["chest_ct"] is False
    assert any("no lungs" in note for note in lm.meta["notes"])
    present = set(lm.present().values())
    assert "body_trunc" in present
    for name in ("lung_upper_lobe_left", "lung_lower_lobe_right", "trachea", "heart", "aorta", "mediastinum"):
        assert name not in present
        assert name in lm.meta["not_found"]


def test_volume_with_lungs_finds_both_sides():
    lm = BuiltinSegmenter().segment(_abdomen_volume(lungs=True))
    left, right = lobes(lm, "left"), lobes(lm, "right")
    assert left.any() and right.any()
    assert centroid_ras(left, lm.affine)[0] < centroid_ras(right, lm.affine)[0]
    # synthetic lungs have no airway: it is reported, not invented
    assert "trachea" in lm.meta["not_found"] and not lm.mask("trachea").any()


def test_empty_air_volume_gives_a_clear_note():
    vol = Volume(np.full((40, 40, 20), -1000, np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
    lm = BuiltinSegmenter().segment(vol)
    assert not lm.present()
    assert any("no body" in note for note in lm.meta["notes"])
    assert "body_trunc" in lm.meta["not_found"]


def _arc(shape, centre, radius, a0, a1, thick=1.5):
    xs, ys = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    dx, dy = xs - centre[0], ys - centre[1]
    ang = np.degrees(np.arctan2(dy, dx)) % 360
    return (np.abs(np.hypot(dx, dy) - radius) <= thick) & (ang >= a0) & (ang <= a1)


def test_girdle_touching_a_rib_lends_it_no_pieces_of_cage():
    # a bone piece partly outside the cage is split voxel by voxel; where no rib crosses a direction the scapula
    # is itself the innermost bone, and that part of it, not joined to a rib, stays girdle (lung1016's apex)
    from types import SimpleNamespace

    from MedRegionCTLib.data import load_json
    from MedRegionCTLib.segment.builtin.bones import _outside_the_cage

    params = load_json("builtin_segmenter.json")["bones"]
    shape, c = (100, 100, 5), (50, 50)
    grid = SimpleNamespace(coarse_spacing=np.array([2.0, 2.0, 3.0]))
    xs, ys = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    disc = np.hypot(xs - c[0], ys - c[1]) <= 47
    body = np.repeat(disc[:, :, None], shape[2], axis=2)
    axis = np.tile([50.0, 80.0, 20.0], (shape[2], 1))
    slab = lambda m: np.repeat(m[:, :, None], shape[2], axis=2)  # noqa: E731
    ribs = slab(_arc(shape[:2], c, 30, 90, 270))
    rib_on = slab(_arc(shape[:2], c, 30, 271, 300))              # the rib going on, far from the lung
    strut = slab(_arc(shape[:2], c, 35, 283, 289, thick=5))       # joins it to the scapula
    over = slab(_arc(shape[:2], c, 40, 240, 300))                # the scapula over the rib
    beyond = slab(_arc(shape[:2], c, 40, 300, 345))              # and where no rib is
    piece = rib_on | strut | over | beyond
    girdle, cage_ribs = _outside_the_cage(grid, piece, piece | ribs, body, axis, params, ribs=ribs, k_low=0)
    assert cage_ribs[rib_on & ~strut].mean() > 0.9
    far_end = slab(_arc(shape[:2], c, 40, 315, 345))
    assert girdle[far_end].all() and not cage_ribs[far_end].any()
    assert girdle[over & ~strut].all()



def test_contrast_pool_goes_on_only_between_the_lungs_outer_edges():
    # the vessels of the arm run beside the scapula and the humerus, whose marrow is as dense as enhanced blood
    from MedRegionCTLib.segment.builtin.mediastinum import _between_the_lungs

    lungs = np.zeros((40, 10, 8), bool)
    lungs[10:15, 3:6, 2:5] = True
    lungs[25:32, 3:6, 3:6] = True
    inner = _between_the_lungs(lungs)
    assert inner[10:32, :, 3].all() and not inner[:10, :, 3].any() and not inner[32:, :, 3].any()
    assert inner[25:32, :, 7].all() and not inner[:25, :, 7].any()  # above the apex: the top slice's edges
    assert inner[10:15, :, 0].all() and not inner[15:, :, 0].any()


def test_contrast_pool_passes_a_sliver_of_lung_base_beside_the_aorta():
    # realct/01: the lowest lung slices hold only a sliver of one base; kept to its edges, the pool stopped above
    # it and the aorta below was labelled rib (1,330 voxels of TotalSegmentator's aorta)
    from MedRegionCTLib.segment.builtin.mediastinum import _between_the_lungs

    lungs = np.zeros((40, 10, 12), bool)
    lungs[5:35, 3:6, 3:10] = True     # both lungs
    lungs[5:8, 3:6, 2] = True         # a sliver of the right base below them
    lungs[30:33, 3:6, 10:12] = True   # and a narrow apex above
    assert not _between_the_lungs(lungs)[20, 0, 2]        # edges slice by slice: the aorta's x is cut off
    inner = _between_the_lungs(lungs, window=2)
    assert inner[5:35, :, 0:3].all() and not inner[35:, :, 0:3].any()  # the sliver takes the wider slices' edges
    assert inner[30:33, :, 11].all() and not inner[:30, :, 11].any()   # the apex keeps its own (the arm's vessels)


def test_an_upright_tube_in_front_of_the_column_is_no_bone():
    # a calcified aorta (wall dense, lumen filled in) runs down in front of the vertebral body; a rib beside the
    # body runs round the chest; the humerus, also upright, is far to the side
    from MedRegionCTLib.data import load_json
    from MedRegionCTLib.segment.builtin.bones import _upright_tubes

    params = load_json("builtin_segmenter.json")["bones"]
    shape = (120, 100, 20)   # 2 mm voxels; y runs forward
    xs, ys = np.mgrid[0:shape[0], 0:shape[1]]
    rest = np.zeros(shape, bool)
    aorta2d = (xs - 55) ** 2 + (ys - 50) ** 2 <= 6 ** 2          # 24 mm across, 10 mm left of the axis, in front
    humerus2d = (xs - 110) ** 2 + (ys - 45) ** 2 <= 5 ** 2       # 20 mm across, 100 mm to the side
    for k in range(shape[2]):
        rest[:, :, k] |= aorta2d | humerus2d
        rest[62 + k:70 + k, 30:34, k] = True                       # a rib: beside the body, moving out as it descends
    axis = np.tile(np.array([60.0, 40.0, 25.0]), (shape[2], 1))  # x, front and back of the vertebral body
    tubes = _upright_tubes(rest, axis, (2.0, 2.0, 2.0), params)
    assert tubes[:, :, 5][aorta2d].all()
    assert not tubes[:, :, 5][humerus2d].any() and not tubes[62:80, 30:34, :].any()
