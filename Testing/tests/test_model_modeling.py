"""The multimodal model with tiny configurations: token groups, splicing, gradients, slot shuffling, 7B shape.

The tiny LM, its tokenizer and the 2D encoders are written to folders and loaded through the real loading code.
"""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("monai")

from MedRegionCTLib.errors import InputError  # noqa: E402
from MedRegionCTLib.model import MedRegionModel  # noqa: E402
from MedRegionCTLib.model.prompt import GLOBAL, IGNORE_INDEX, alignment_target  # noqa: E402
from MedRegionCTLib.model.tiny import (  # noqa: E402
    seven_b_config,
    synthetic_case,
    tiny_config,
    write_tiny_folders,
    write_tiny_vision2d,
)

PRESETS = ["hybrid", "reg2rg", "medregion"]


@pytest.fixture(scope="module")
def cases():
    return [synthetic_case(seed) for seed in range(2)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, cases):
    llm, vision = write_tiny_folders(tmp_path_factory.mktemp("tiny"), cases)
    return {"llm": llm, "siglip": vision}


@pytest.fixture(scope="module")
def prepared_models(folders, cases):
    """One model per preset and its prepared cases (built once: the tests only read them)."""
    out = {}
    for name in PRESETS:
        torch.manual_seed(0)
        model = MedRegionModel.from_config(tiny_config(folders["llm"], folders["siglip"], name=name))
        out[name] = (model, model.prepare(cases))
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_token_groups_have_the_configured_shapes(prepared_models, name):
    model, prepared = prepared_models[name]
    cfg, hidden = model.config, model.hidden_size
    visual = model.encode(prepared)
    for case, groups in zip(prepared, visual):
        assert set(groups) == {GLOBAL, *case.keys}
        assert groups[GLOBAL].shape == (cfg.num_global_tokens(), hidden)
        for key in case.keys:
            assert groups[key].shape == (cfg.num_region_tokens(), hidden)
            assert torch.isfinite(groups[key]).all()
        # different regions give different tokens (the masks and crops differ)
        assert not torch.allclose(groups["lung"], groups["heart"])


@pytest.mark.parametrize("name", PRESETS)
def test_group_masks_and_splicing(prepared_models, name):
    model, prepared = prepared_models[name]
    cfg = model.config
    inputs = model.build_inputs(prepared, train=True, rng=random.Random(1))
    masks = inputs.group_masks
    b, length = inputs.input_ids.shape
    rows_per_case = 1 if cfg.prompt.layout == "joint" else 3
    assert b == len(prepared) * rows_per_case
    assert inputs.inputs_embeds.shape == (b, length, model.hidden_size)
    # the groups partition every position
    stacked = torch.stack([masks[k] for k in ("global", "region", "boundary", "pad", "text")]).long()
    assert torch.equal(stacked.sum(0), torch.ones(b, length, dtype=torch.long))
    assert torch.equal(masks["pad"], inputs.attention_mask == 0)
    assert torch.equal(masks["answer"], inputs.labels != IGNORE_INDEX)
    for i, row in enumerate(inputs.rows):
        n_slots = len(row.visual_keys) - 1
        assert int(masks["global"][i].sum()) == cfg.num_global_tokens()
        assert int(masks["region"][i].sum()) == n_slots * cfg.num_region_tokens()
        assert int(masks["boundary"][i].sum()) == 2 + 2 * n_slots
        # the answer comes after every visual token, and only the answer has labels
        answer_pos = masks["answer"][i].nonzero().flatten()
        visual_pos = (masks["global"][i] | masks["region"][i]).nonzero().flatten()
        assert answer_pos.min() > visual_pos.max()
        labelled = inputs.labels[i][masks["answer"][i]].tolist()
        assert labelled[-1] == model.ids.eos
        assert model.tokenizer.decode(labelled[:-1]) == row.answer
        # spliced embeddings are exactly the encoder tokens, global first, then slots in order
        groups = inputs.visual[row.case_index]
        emb = inputs.inputs_embeds[i]
        assert torch.equal(emb[masks["global"][i]], groups[GLOBAL])
        expected = torch.cat([groups[k] for k in row.visual_keys[1:]])
        assert torch.equal(emb[masks["region"][i]], expected)
        # boundary tokens use the trainable slot embeddings
        first_boundary = inputs.input_ids[i][masks["boundary"][i]][0]
        assert first_boundary == model.ids.image_start
        assert torch.equal(emb[masks["boundary"][i]][0], model.special_embed.weight[0])


def _grad_report(model):
    trainable_without, frozen_with = [], []
    for name, p in model.named_parameters():
        has = p.grad is not None and bool(p.grad.abs().sum() > 0)
        if p.requires_grad and not has:
            trainable_without.append(name)
        if not p.requires_grad and p.grad is not None:
            frozen_with.append(name)
    return trainable_without, frozen_with


@pytest.mark.parametrize("name, vision2d_trainable", [("hybrid", False), ("reg2rg", False),
                                                      ("medregion", True)])
def test_gradients_reach_every_trainable_part_and_no_frozen_one(folders, cases, name, vision2d_trainable):
    torch.manual_seed(0)
    config = tiny_config(folders["llm"], folders["siglip"], name=name, vision2d={"freeze": not vision2d_trainable})
    model = MedRegionModel.from_config(config)
    model.train()
    # LoRA's B starts at zero, so A gets an exactly zero gradient on the first step: take one step first
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.loss(cases, rng=random.Random(0)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    model.loss(cases, rng=random.Random(1)).backward()
    missing, leaked = _grad_report(model)
    assert missing == [] and leaked == []
    parts = {k for k, (_, trainable) in model.num_parameters_by_part().items() if trainable}
    expected = {"llm", "special_embed"} | {f"projector.{s}" for s in model.projectors}
    expected |= {"vision3d"} if config.vision3d.enabled else set()
    expected |= {"mask_encoder"} if config.mask.enabled else set()
    expected |= {"vision2d"} if vision2d_trainable else set()
    assert parts == expected
    # under LoRA only the adapter of the language model trains
    llm_trainable = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert llm_trainable and all("lora_" in n for n in llm_trainable)
    if vision2d_trainable:  # SigLIP's pooling head is not used by token pooling: frozen at build time
        frozen_v2 = [n for n, p in model.vision2d.encoder.named_parameters() if not p.requires_grad]
        assert frozen_v2 and all(n.startswith("head.") for n in frozen_v2)


def test_dinov2_encoder_drops_its_prefix_tokens(tmp_path, folders, cases):
    vision = write_tiny_vision2d(tmp_path / "dino", kind="dinov2")
    model = MedRegionModel.from_config(tiny_config(folders["llm"], vision, name="medregion"))
    feats = model.vision2d.encode_slices(torch.rand(3, 32, 32))
    assert feats.shape == (3, 4, 4, 32)  # CLS token removed, 4x4 patch grid kept


def test_slot_shuffling_changes_order_but_keeps_regions_with_their_paragraphs(prepared_models):
    model, prepared = prepared_models["reg2rg"]  # joint layout: every slot's answer in one sequence
    orders = set()
    for seed in range(6):
        inputs = model.build_inputs(prepared, train=True, rng=random.Random(seed))
        for i, row in enumerate(inputs.rows):
            case = prepared[row.case_index]
            orders.add(tuple(row.slot_keys))
            assert sorted(row.slot_keys) == sorted(case.keys)
            expected = " ".join(alignment_target(model.config.prompt.answer, s, case.name_of(k), case.paragraphs[k])
                                for s, k in enumerate(row.slot_keys))
            assert row.answer == expected
            # slot s carries region slot_keys[s]'s tokens
            emb = inputs.inputs_embeds[i][inputs.group_masks["region"][i]]
            per_slot = emb.view(len(row.slot_keys), -1, model.hidden_size)
            for s, key in enumerate(row.slot_keys):
                assert torch.equal(per_slot[s], inputs.visual[row.case_index][key])
    assert len(orders) > 1  # the order did change
    plain = model.build_inputs(prepared, train=False, with_answer=True)
    assert [r.slot_keys for r in plain.rows] == [c.keys for c in prepared]  # no shuffling outside training


def test_mismatched_placeholders_are_refused(prepared_models):
    model, prepared = prepared_models["hybrid"]
    inputs = model.build_inputs(prepared)
    with pytest.raises(InputError, match="placeholder"):
        model.embed(inputs.input_ids, torch.zeros(3, model.hidden_size))


def test_seven_b_shaped_configuration_builds_without_allocating(folders):
    config = seven_b_config(folders["llm"])
    with torch.device("meta"):
        model = MedRegionModel.from_config(config)
    parts = model.num_parameters_by_part()
    llm_total, llm_trainable = parts["llm"]
    assert 6.7e9 < llm_total < 6.8e9  # LLaMA-2-7B (6.74 B) + the LoRA adapter
    assert llm_trainable == 32 * 4 * 2 * 16 * 4096  # r=16 on q, k, v, o of 32 layers
    assert parts["vision2d"][0] > 4e8 and parts["vision2d"][1] == 0  # SigLIP-so400m, frozen
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.config.preprocess.slice_size == 384
    assert model.config.num_global_tokens() == 64 // 4 + 32


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(folders, cases):
    losses, grads = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        config = tiny_config(folders["llm"], folders["siglip"], name="reg2rg",
                             llm={"gradient_checkpointing": checkpointing, "lora_dropout": 0.0})
        model = MedRegionModel.from_config(config)
        model.train()
        loss = model.loss(cases, rng=random.Random(0))
        loss.backward()
        losses.append(loss.item())
        grads.append(model.projectors["vision3d"].weight.grad.clone())
        assert base_model_checkpointing(model) == checkpointing
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def base_model_checkpointing(model) -> bool:
    from MedRegionCTLib.model.llm import base_model

    hf = base_model(model.llm)
    return bool(getattr(hf, "is_activation_checkpointing", getattr(hf, "is_gradient_checkpointing", False)))
