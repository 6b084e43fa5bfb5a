"""Prompt and slot layout: alignment targets, shuffling, labels on the answer only, parsing answers back."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from MedRegionCTLib.errors import InputError  # noqa: E402
from MedRegionCTLib.model.config import PromptConfig  # noqa: E402
from MedRegionCTLib.model.preprocess import PreparedCase  # noqa: E402
from MedRegionCTLib.model.prompt import (  # noqa: E402
    BOUNDARY_TOKENS,
    GLOBAL,
    IGNORE_INDEX,
    PLACEHOLDER_TOKENS,
    PromptBuilder,
    add_special_tokens,
    alignment_target,
    slot_order,
)
from MedRegionCTLib.model.tiny import train_tokenizer  # noqa: E402

PARAGRAPHS = {"lung": "A 6 mm nodule is seen in the left lung.", "heart": "Heart size is normal.",
              "trachea": "The trachea is patent.", "pleura": "No pleural effusion."}
NAMES = {"trachea": "trachea and bronchie"}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    texts = [alignment_target(PromptConfig().answer, i, NAMES.get(k, k), p) for i in range(4)
             for k, p in PARAGRAPHS.items()] + [PromptConfig().instruction, PromptConfig().global_intro]
    folder = tmp_path_factory.mktemp("tok")
    train_tokenizer(texts * 3, 400).save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _case(attributes=None):
    keys = list(PARAGRAPHS)
    return PreparedCase(keys=keys, arrays={}, names=dict(NAMES), paragraphs=dict(PARAGRAPHS),
                        attributes=attributes or {})


def _builder(tokenizer, **prompt):
    ids = add_special_tokens(tokenizer)
    return PromptBuilder(PromptConfig(**prompt), tokenizer, ids, n_global=5, n_region=3, max_length=2048), ids


def test_special_tokens_are_added_once(tokenizer):
    ids = add_special_tokens(tokenizer)
    n = len(tokenizer)
    again = add_special_tokens(tokenizer)
    assert again == ids and len(tokenizer) == n
    assert tokenizer.convert_ids_to_tokens(list(ids.boundary + ids.placeholders)) == \
        list(BOUNDARY_TOKENS + PLACEHOLDER_TOKENS)
    # a slot token in text is one token, not split into pieces
    assert tokenizer("<region>", add_special_tokens=False)["input_ids"] == [ids.region_start]


def test_alignment_target_is_reg2rg_text():
    assert alignment_target("The region {i} is {name}: {paragraph}", 3, "lung", " Clear lungs. ") == \
        "The region 3 is lung: Clear lungs."


def test_slot_order_is_a_permutation():
    keys = list("abcdefgh")
    rng = random.Random(0)
    orders = {tuple(slot_order(keys, True, rng)) for _ in range(20)}
    assert all(sorted(o) == keys for o in orders) and len(orders) > 1
    assert slot_order(keys, False, rng) == keys


@pytest.mark.parametrize("layout, context", [("per_region", "own"), ("per_region", "all"), ("joint", "own")])
def test_rows_pair_each_slot_with_its_paragraph_and_label_only_the_answer(tokenizer, layout, context):
    builder, ids = _builder(tokenizer, layout=layout, region_context=context)
    case = _case(attributes={"lung": "A nodule with a diameter of 6.0 mm is identified in the left lung."})
    for seed in range(4):
        rows = builder.rows(case, 0, train=True, rng=random.Random(seed))
        assert len(rows) == (1 if layout == "joint" else 4)
        for row in rows:
            seq = np.array(row.input_ids)
            labels = np.array(row.labels)
            assert (labels[: row.prompt_length] == IGNORE_INDEX).all()
            assert (labels[row.prompt_length:] == seq[row.prompt_length:]).all()
            assert seq[-1] == ids.eos and tokenizer.decode(seq[row.prompt_length:-1].tolist()) == row.answer
            for slot in row.target_slots:
                key = row.slot_keys[slot]
                assert f"The region {slot} is {NAMES.get(key, key)}: {PARAGRAPHS[key]}" in row.answer
            shown = row.visual_keys[1:]
            assert row.visual_keys[0] == GLOBAL
            assert shown == (row.slot_keys if (layout == "joint" or context == "all")
                             else [row.slot_keys[row.target_slots[0]]])
            assert (seq == ids.image_patch).sum() == 5 and (seq == ids.region_patch).sum() == 3 * len(shown)
            prompt_text = tokenizer.decode(seq[: row.prompt_length].tolist())
            # the attribute sentence follows the lung's slot whenever that slot is shown
            assert ("identified in the left lung" in prompt_text) == ("lung" in shown)


def test_parse_recovers_names_and_paragraphs(tokenizer):
    builder, _ = _builder(tokenizer, layout="joint")
    row = builder.rows(_case(), 0, train=True, rng=random.Random(2))[0]
    parsed = builder.parse(row.answer, row)
    assert {k: v["paragraph"] for k, v in parsed.items()} == PARAGRAPHS
    assert {k: v["name"] for k, v in parsed.items()} == {k: NAMES.get(k, k) for k in PARAGRAPHS}
    assert sorted(v["slot"] for v in parsed.values()) == [0, 1, 2, 3]
    # a per-region answer without the expected prefix keeps the whole text as the paragraph
    builder, _ = _builder(tokenizer)
    row = builder.rows(_case(), 0)[1]
    assert builder.parse("Something else.", row) == {row.slot_keys[1]: {"name": "", "paragraph": "Something else.",
                                                                        "slot": 1}}


def test_bad_templates_and_long_prompts_are_refused(tokenizer):
    ids = add_special_tokens(tokenizer)
    with pytest.raises(InputError, match="paragraph"):
        PromptBuilder(PromptConfig(answer="{paragraph} (region {i})"), tokenizer, ids, 1, 1, 100)
    builder = PromptBuilder(PromptConfig(), tokenizer, ids, n_global=500, n_region=3, max_length=256)
    with pytest.raises(InputError, match="max_length"):
        builder.rows(_case(), 0)
    case = _case()
    case.paragraphs.pop("heart")
    with pytest.raises(InputError, match="heart"):
        _builder(tokenizer)[0].rows(case, 0, train=True)
