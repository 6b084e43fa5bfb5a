"""Where no spinal canal is in view (a crop round the heart), a dense thick piece outside the blood pool that
holds the pool's density is bone only when its edge is cortex, denser than its inside
(segment.builtin.bones.find_bone)."""

import json

import numpy as np

from MedRegionCTLib.data import load_json
from MedRegionCTLib.segment.builtin.bones import find_bone
from MedRegionCTLib.segment.builtin.grid import Grid
from MedRegionCTLib.volume import Volume


def test_thick_dense_piece_is_bone_only_with_a_cortex_all_round():
    rng = np.random.default_rng(0)
    shape = (100, 100, 40)
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    ct = rng.normal(40.0, 15.0, shape)  # soft tissue, 2 mm voxels
    parts = {}

    def disc(ci, cj, r):
        return np.hypot(i - ci, j - cj) <= r

    # a vertebral body: marrow 260 HU inside a 2 mm cortex of 900 HU
    body = disc(25, 25, 8)
    ct[body] = rng.normal(260.0, 20.0, shape)[body]
    ct[body & ~disc(25, 25, 7)] = 900.0
    parts["vertebral body"] = body
    # a heart chamber full of iodine: 480 HU, a few dense streaks of the bolus inside
    chamber = np.hypot(np.hypot(i - 70, j - 30), 1.5 * (k - 20)) <= 12
    ct[chamber] = rng.normal(480.0, 25.0, shape)[chamber]
    ct[chamber & (rng.random(shape) < 0.01)] = 950.0
    parts["chamber"] = chamber
    # an aorta with a calcified wall: lumen 450 HU, calcium in spots round it
    aorta = disc(70, 75, 7)
    ct[aorta] = rng.normal(450.0, 25.0, shape)[aorta]
    angle = np.arctan2(j - 75, i - 70)
    ct[aorta & ~disc(70, 75, 6) & (np.cos(6 * angle) > 0.95)] = 1000.0
    parts["calcified aorta"] = aorta
    # thick compact bone (a scapula's neck on a coarse grid): as dense inside as at its edge, but far denser
    # than the blood
    compact = np.hypot(np.hypot(i - 30, j - 50), k - 30) <= 7
    ct[compact] = 750.0
    parts["compact bone"] = compact
    # a rib: thin, no inside
    rib = disc(30, 75, 2)
    ct[rib] = 700.0
    parts["rib"] = rib
    # the blood pool found elsewhere (contrast): what find_bone is told to leave out
    pool = disc(50, 50, 5)
    ct[pool] = 400.0
    grid = Grid(Volume(np.round(ct).astype(np.int16), np.diag([2.0, 2.0, 2.0, 1.0])))
    assert grid.factors == (1, 1, 1)
    params = load_json("builtin_segmenter.json")["bones"]
    bone = find_bone(grid, np.ones(shape, bool), pool, params, canal=np.full((shape[2], 2), np.nan))
    share = {name: float(bone[m].mean()) for name, m in parts.items()}
    assert min(share["vertebral body"], share["rib"], share["compact bone"]) > 0.9, json.dumps(share)
    assert share["chamber"] < 0.05 and share["calcified aorta"] < 0.05, json.dumps(share)
