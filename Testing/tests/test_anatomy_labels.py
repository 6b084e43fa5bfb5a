"""Label table: TotalSegmentator names <-> project indices, sides, groups, extension with foreign names."""

import numpy as np
import pytest

from MedRegionCTLib.anatomy import (
    FIRST_EXTRA_INDEX,
    LabelTable,
    class_group,
    class_groups,
    paint_label,
    side_of,
)
from MedRegionCTLib.data import load_json
from MedRegionCTLib.errors import InputError


def test_total_indices_follow_totalsegmentator_order():
    table = LabelTable.default()
    total = load_json("totalsegmentator_classes.json")["tasks"]["total"]["classes"]
    assert len(total) == 117
    for position, name in enumerate(total, start=1):
        assert table.index(name) == position
        assert table.name(position) == name
    # spot checks against TotalSegmentator v2's own class_map['total']
    spots = ("lung_upper_lobe_left", "heart", "costal_cartilages")
    assert [table.index(n) for n in spots] == [10, 51, 117]


def test_other_task_classes_have_block_indices_and_tasks():
    table = LabelTable.default()
    assert table.index("mediastinum") >= 200
    assert table.task_of("mediastinum") == "trunk_cavities"
    assert table.task_of("liver") == "total"
    assert table.name(5000) == "label_5000"
    with pytest.raises(InputError, match="not a known class name"):
        table.index("no_such_organ")


@pytest.mark.parametrize("name, side", [
    ("lung_upper_lobe_left", "left"), ("rib_right_7", "right"), ("kidney_cyst_left", "left"),
    ("heart", "midline"), ("trachea", "midline"), ("vertebrae_T4", "midline"),
    ("heart_ventricle_left", "midline"),  # a heart chamber: left by name, midline organ
    ("breast", "bilateral"), ("costal_cartilages", "bilateral"), ("lung_airways", "bilateral"),
])
def test_side_of_classes(name, side):
    assert side_of(name) == side
    assert LabelTable.side(name) == side


def test_groups_expand_patterns_and_nesting():
    table = LabelTable.default()
    ribs = table.members("ribs")
    assert len(ribs) == 24 and "rib_left_1" in ribs and "rib_right_12" in ribs
    assert table.members("vertebrae_thoracic") == [f"vertebrae_T{n}" for n in range(12, 0, -1)]
    assert set(table.members("lung_lobes")) == {"lung_upper_lobe_left", "lung_lower_lobe_left",
                                                "lung_upper_lobe_right", "lung_middle_lobe_right",
                                                "lung_lower_lobe_right"}
    assert "lung_left" in class_group("lungs") and "lung" in class_group("lungs")
    assert "vertebrae_L6" in class_group("vertebrae")  # patterns also match names outside the table
    assert "ribs" in table.groups_of("rib_left_4") and "bones" in table.groups_of("rib_left_4")
    # every class of every group name refers to a defined group (no dangling nested names)
    assert {"airways", "heart", "great_vessels", "abdominal_organs", "bones"} <= set(class_groups())


def test_with_names_adds_unknown_names_from_1000_and_keeps_known():
    table = LabelTable.default()
    extended, added = table.with_names(["liver", "my_tumour", "my_tumour", "other"])
    assert added == ["my_tumour", "other"]
    assert extended.index("my_tumour") == FIRST_EXTRA_INDEX
    assert extended.index("other") == FIRST_EXTRA_INDEX + 1
    assert extended.index("liver") == 5
    assert "my_tumour" not in table  # the default table is not changed
    same, none_added = table.with_names(["liver"])
    assert same is table and none_added == []


def test_duplicate_names_in_a_table_are_refused():
    with pytest.raises(InputError, match="more than once"):
        LabelTable({1: "liver", 2: "liver"})


def test_relabel_maps_foreign_values_and_drops_unnamed():
    table, _ = LabelTable.default().with_names(["tumour"])
    array = np.array([[[0, 1, 2, 7]]], dtype=np.int16)
    out = table.relabel(array, {1: "liver", 2: "tumour"})
    assert out.tolist() == [[[0, 5, FIRST_EXTRA_INDEX, 0]]]
    with pytest.raises(InputError, match="negative"):
        table.relabel(np.array([[[-1, 1]]]), {1: "liver"})


def test_paint_label_first_kept_unless_overwrite():
    array = np.zeros(5, dtype=np.uint16)
    array[:2] = 7
    mask = np.array([True, True, True, False, False])
    assert paint_label(array, mask, 9) == 2
    assert array.tolist() == [7, 7, 9, 0, 0]
    assert paint_label(array, mask, 4, overwrite=True) == 0
    assert array.tolist() == [4, 4, 4, 0, 0]
