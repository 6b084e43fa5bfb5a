"""Region schemas (RadGenome-10, MedRegion-6) and label map -> region masks, with geometric fallbacks."""

import json

import numpy as np
import pytest

from MedRegionCTLib.anatomy import (
    LabelTable,
    build_regions,
    classes_to_regions,
    load_schema,
    patient_axes,
    region_masks,
)
from MedRegionCTLib.errors import InputError
from MedRegionCTLib.volume import LabelMap, Volume

IDX = LabelTable.default().index
LOBES = [IDX(n) for n in ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
                          "lung_lower_lobe_right")]
RADGENOME_KEYS = ["abdomen", "bone", "breast", "esophagus", "heart", "lung", "mediastinum", "pleura",
                  "thyroid", "trachea and bronchie"]


def _affine(spacing, codes="RAS", origin=(-96.0, -90.0, -80.0)):
    """A diagonal affine whose axes point along ``codes`` (e.g. LPS flips i and j)."""
    sign = {"R": 1, "L": -1, "A": 1, "P": -1, "S": 1, "I": -1}
    aff = np.diag([sign[c] * s for c, s in zip(codes, spacing, strict=True)] + [1.0])
    aff[:3, 3] = origin
    return aff


def synthetic_chest(shape=(64, 60, 40), spacing=(3.0, 3.0, 4.0), codes="RAS", with_mediastinum_class=False):
    """A box chest in world millimetres: two lungs (lobes), heart, aorta, spine, sternum, trachea, liver.

    Returns (Volume, LabelMap) on the same grid. Shapes are defined in RAS mm, so any axis code gives the
    same anatomy.
    """
    origin = []
    for n, s, c in zip(shape, spacing, codes, strict=True):
        half = (n - 1) * s / 2
        origin.append(-half if c in "RAS" else half)
    affine = _affine(spacing, codes, origin)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    x, y, z = np.moveaxis(ijk @ affine[:3, :3].T + affine[:3, 3], -1, 0)  # RAS mm (+x = patient right)
    table = LabelTable.default()
    labels = np.zeros(shape, dtype=np.uint16)
    hu = np.full(shape, -1000, dtype=np.int16)
    body = (x / 90) ** 2 + (y / 80) ** 2 <= 1
    hu[body] = 30

    def put(mask, name, value):
        labels[mask] = table.index(name)
        hu[mask] = value

    lung_r = ((x - 45) / 30) ** 2 + (y / 50) ** 2 + (z / 60) ** 2 <= 1
    lung_l = ((x + 45) / 30) ** 2 + (y / 50) ** 2 + (z / 60) ** 2 <= 1
    put(lung_r & (z >= 0), "lung_upper_lobe_right", -850)
    put(lung_r & (z < 0), "lung_lower_lobe_right", -850)
    put(lung_l & (z >= 0), "lung_upper_lobe_left", -850)
    put(lung_l & (z < 0), "lung_lower_lobe_left", -850)
    if with_mediastinum_class:
        put((np.abs(x) < 12) & (np.abs(y) < 30) & (np.abs(z) < 50), "mediastinum", 10)
    put(((x + 5) / 14) ** 2 + ((y - 15) / 14) ** 2 + ((z + 25) / 18) ** 2 <= 1, "heart", 40)
    put(((x + 8) ** 2 + (y + 20) ** 2 <= 36) & (np.abs(z) < 55), "aorta", 45)
    put((x ** 2 + (y + 5) ** 2 <= 25) & (z > 0), "trachea", -950)
    put((x ** 2 + (y + 45) ** 2 <= 100) & (np.abs(z) < 75), "vertebrae_T6", 300)
    put((np.abs(x) < 10) & (np.abs(y - 52) < 3) & (np.abs(z) < 60), "sternum", 350)
    put((z < -62) & (x > 0) & body, "liver", 60)
    volume = Volume(hu, affine)
    return volume, LabelMap(labels, affine, table.subset(np.unique(labels)))


def test_shipped_schemas_load_with_exact_keys_codes_and_colours():
    rg = load_schema("radgenome10")
    assert sorted(rg.keys) == RADGENOME_KEYS  # RadGenome's own keys, 'trachea and bronchie' included
    mr = load_schema("MedRegion-6")
    assert mr.keys == ["lung_parenchyma", "large_airways", "mediastinum", "heart_great_vessels",
                       "abdominal_organs", "musculoskeletal"]
    codes = {r.key: r.terminology.code for r in rg.regions}
    assert codes == {"lung": "39607008", "heart": "80891009", "thyroid": "69748006", "esophagus": "32849002",
                     "mediastinum": "72410000", "pleura": "3120008", "breast": "76752008",
                     "abdomen": "113345001", "bone": "272673000", "trachea and bronchie": "110726009"}
    for schema in (rg, mr):
        for region in schema.regions:
            assert region.terminology.scheme == "SCT"
            assert len(region.color) == 3 and all(0 <= c <= 255 for c in region.color)
            entry = region.terminology.slicer_entry()
            assert f"SCT^{region.terminology.code}^{region.terminology.meaning}" in entry
            assert entry.count("~") == 6  # Slicer's 7-field TerminologyEntry string
        assert len({r.color for r in schema.regions}) == len(schema.regions)
    assert rg["breast"].expected_in_chest_ct is False and rg["lung"].expected_in_chest_ct is True


def test_classes_map_to_the_regions_the_reports_use():
    rg = classes_to_regions("radgenome10", [
        "lung_lower_lobe_left", "aorta", "heart", "pericardial_effusion", "pleural_effusion", "trachea",
        "lung_airways", "liver", "rib_left_3", "thyroid_gland", "breast", "esophagus", "spinal_cord"])
    assert rg == {"lung_lower_lobe_left": ["lung"], "aorta": ["mediastinum"], "heart": ["heart"],
                  "pericardial_effusion": ["heart"], "pleural_effusion": ["pleura"],
                  "trachea": ["trachea and bronchie"], "lung_airways": ["trachea and bronchie"],
                  "liver": ["abdomen"], "rib_left_3": ["bone"], "thyroid_gland": ["thyroid"],
                  "breast": ["breast"], "esophagus": ["esophagus"], "spinal_cord": []}
    mr = classes_to_regions("medregion6", ["aorta", "lung_airways", "esophagus", "autochthon_left"])
    assert mr == {"aorta": ["heart_great_vessels"], "lung_airways": ["large_airways"],
                  "esophagus": ["mediastinum"], "autochthon_left": ["musculoskeletal"]}


def test_region_masks_from_classes():
    volume, labels = synthetic_chest()
    masks = region_masks(labels, "radgenome10", volume)
    assert list(masks) == load_schema("radgenome10").keys
    lobes = np.isin(labels.array, LOBES)
    assert np.array_equal(masks["lung"], lobes)
    assert np.array_equal(masks["heart"], labels.array == IDX("heart"))
    assert np.array_equal(masks["trachea and bronchie"], labels.array == IDX("trachea"))
    assert np.array_equal(masks["bone"], np.isin(labels.array, [IDX("vertebrae_T6"), IDX("sternum")]))
    assert np.array_equal(masks["abdomen"], labels.array == IDX("liver"))
    assert not masks["breast"].any() and not masks["thyroid"].any() and not masks["esophagus"].any()


def test_mediastinum_rule_between_lungs_when_no_mediastinum_class():
    volume, labels = synthetic_chest()
    regions = {r.key: r for r in build_regions(labels, "radgenome10", volume)}
    med = regions["mediastinum"]
    assert any(s.startswith("rule between_lungs") for s in med.sources)
    assert "aorta" in med.classes
    x, y, z = _world(labels)
    rule_part = med.mask & (labels.array == 0)
    assert rule_part.sum() > 100
    # medial to both lungs, in front of the spine's anterior edge (y = -35), behind the sternum (y = 49)
    assert np.abs(x[rule_part]).max() < 45
    assert y[rule_part].min() > -35 and y[rule_part].max() < 49
    # heart, trachea, spine, sternum and lungs are never part of it
    for index in [IDX(n) for n in ("heart", "trachea", "vertebrae_T6", "sternum")] + LOBES:
        assert not (med.mask & (labels.array == index)).any()
    # only slices where both lungs are present
    lung_z = np.unique(z[np.isin(labels.array, LOBES)])
    assert z[rule_part].min() >= lung_z.min() and z[rule_part].max() <= lung_z.max()


def test_mediastinum_class_wins_over_the_rule():
    volume, labels = synthetic_chest(with_mediastinum_class=True)
    med = {r.key: r for r in build_regions(labels, "radgenome10", volume)}["mediastinum"]
    index = LabelTable.default().index("mediastinum")
    assert med.sources[0] == "classes mediastinum"
    assert np.array_equal(med.mask, (labels.array == index) | (labels.array == IDX("aorta")))


def test_pleura_shell_thickness_is_in_millimetres():
    volume, labels = synthetic_chest(spacing=(2.0, 2.0, 5.0), shape=(90, 80, 32))
    pleura = {r.key: r for r in build_regions(labels, "radgenome10", volume)}["pleura"]
    assert pleura.sources == ["rule shell_around(thickness_mm=4, min_hu=-900)"]
    lungs = np.isin(labels.array, LOBES)
    assert not (pleura.mask & lungs).any()
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(~lungs, sampling=(2.0, 2.0, 5.0))
    assert distance[pleura.mask].max() <= 4.0
    # 4 mm holds two 2 mm voxels in-plane but no 5 mm slice: the shell reaches 2 voxels sideways, 0 up/down
    assert np.isclose(distance[pleura.mask].max(), 4.0)
    x, y, z = _world(labels)
    lung_top = z[lungs].max()
    assert z[pleura.mask].max() <= lung_top


def test_regions_do_not_depend_on_axis_order():
    vol_ras, lab_ras = synthetic_chest(codes="RAS")
    vol_lps, lab_lps = synthetic_chest(codes="LPS")
    assert patient_axes(lab_lps.affine).lr == (0, -1)
    ras = region_masks(lab_ras, "medregion6", vol_ras)
    lps = region_masks(lab_lps, "medregion6", vol_lps)
    for key in ras:
        # LPS grid = RAS grid flipped along i and j
        assert np.array_equal(ras[key], lps[key][::-1, ::-1, :]), key
        assert ras[key].sum() == lps[key].sum()
    assert ras["mediastinum"].any() and ras["heart_great_vessels"].any()


def test_volume_on_another_grid_is_refused():
    volume, labels = synthetic_chest()
    other = Volume(volume.array[:-1], volume.affine)
    with pytest.raises(InputError, match="different grids"):
        region_masks(labels, "radgenome10", other)


def test_custom_schema_file_and_its_errors(tmp_path):
    good = {"name": "two", "regions": [
        {"key": "lungs", "include": [{"groups": ["lungs"]}], "color": [1, 2, 3],
         "terminology": {"code": "39607008", "meaning": "Lung"}},
        {"key": "rim", "include": [{"rule": "shell_around", "params": {"around": {"groups": ["lungs"]},
                                                                         "thickness_mm": 6}}],
         "color": [4, 5, 6], "terminology": {"code": "3120008", "meaning": "Pleura"}}]}
    path = tmp_path / "two.json"
    path.write_text(json.dumps(good))
    volume, labels = synthetic_chest()
    masks = region_masks(labels, str(path))
    assert masks["lungs"].sum() == np.isin(labels.array, LOBES).sum()
    assert masks["rim"].any() and not (masks["rim"] & masks["lungs"]).any()

    bad_rule = json.loads(json.dumps(good))
    bad_rule["regions"][1]["include"][0]["rule"] = "nope"
    path.write_text(json.dumps(bad_rule))
    with pytest.raises(InputError, match="unknown rule 'nope'"):
        load_schema(path)
    bad_group = json.loads(json.dumps(good))
    bad_group["regions"][0]["include"][0]["groups"] = ["lungz"]
    path.write_text(json.dumps(bad_group))
    with pytest.raises(InputError, match="unknown class group 'lungz'"):
        load_schema(path)
    del good["regions"][0]["color"]
    path.write_text(json.dumps(good))
    with pytest.raises(InputError, match="lacks the field 'color'"):
        load_schema(path)
    with pytest.raises(InputError, match="unknown region schema"):
        load_schema("radgenome11")


def _world(labels):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in labels.shape], indexing="ij"), axis=-1).astype(float)
    return np.moveaxis(ijk @ labels.affine[:3, :3].T + labels.affine[:3, 3], -1, 0)


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 1.25), (1.0, 3.0, 1.0), (2.0, 2.0, 5.0)])
def test_shell_equals_the_exact_3d_distance_definition(spacing):
    from scipy import ndimage

    from MedRegionCTLib.anatomy.rules import RuleInput, shell_around

    rng = np.random.default_rng(1)
    around = ndimage.binary_dilation(rng.random((40, 36, 30)) > 0.996, iterations=2)
    affine = np.diag([*spacing, 1.0])
    inp = RuleInput(around.shape, patient_axes(affine), {"around": around}, None)
    shell = shell_around(inp, thickness_mm=4.0)
    exact = (ndimage.distance_transform_edt(~around, sampling=spacing) <= 4.0) & ~around
    assert shell.any() and np.array_equal(shell, exact)
