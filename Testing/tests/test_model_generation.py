"""Generation: one paragraph per present region, batching that does not change results, explicit decoding."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("monai")

from MedRegionCTLib.errors import CancelledError  # noqa: E402
from MedRegionCTLib.model import MedRegionModel  # noqa: E402
from MedRegionCTLib.model.config import GenerationSettings  # noqa: E402
from MedRegionCTLib.model.tiny import (  # noqa: E402
    corpus_for,
    synthetic_case,
    tiny_config,
    write_tiny_llm,
    write_tiny_vision2d,
)
from MedRegionCTLib.progress import CancelToken  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    out = [synthetic_case(seed) for seed in (5, 6, 7)]
    # an empty region: no slot and no paragraph for it
    out[1]["regions"]["breast"] = np.zeros(out[1]["volume"].shape, bool)
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory, cases):
    root = tmp_path_factory.mktemp("tiny")
    # a chat-style generation_config.json in the LM folder: sampling, hot temperature, 2 new tokens
    llm = write_tiny_llm(root / "llm", corpus_for(cases),
                         generation_config={"do_sample": True, "temperature": 5.0, "top_k": 3, "max_new_tokens": 2})
    return llm, write_tiny_vision2d(root / "v2")


@pytest.fixture(scope="module")
def model(folders):
    torch.manual_seed(0)
    return MedRegionModel.from_config(tiny_config(*folders, name="hybrid")).eval()


FIXED = GenerationSettings(max_new_tokens=12, min_new_tokens=12, batch_size=16)


def test_one_paragraph_per_present_region(model, cases):
    reports = model.generate_reports(cases, settings=FIXED)
    assert len(reports) == len(cases)
    for case, report in zip(cases, reports):
        present = [k for k, m in case["regions"].items() if m.any()]
        assert sorted(report) == sorted(present)
        assert sorted(v["slot"] for v in report.values()) == list(range(len(present)))
        for value in report.values():
            assert isinstance(value["name"], str) and value["paragraph"].strip()


def test_checkpoint_decoding_settings_are_never_inherited(model, cases):
    # the folder's generation_config.json asks for sampling at temperature 5 and 2 new tokens
    assert not model.llm.generation_config.do_sample
    first = model.generate_reports(cases[:1], settings=FIXED)
    second = model.generate_reports(cases[:1], settings=FIXED)
    assert first == second  # greedy, as configured: no sampling crept in
    out_ids = model.tokenizer(first[0]["lung"]["paragraph"], add_special_tokens=False)["input_ids"]
    assert len(out_ids) > 2  # the folder's max_new_tokens=2 was not used


def test_batching_across_regions_and_cts_does_not_change_the_text(model, cases):
    batched = model.generate_reports(cases, settings=FIXED)
    one_by_one = model.generate_reports(cases, settings=GenerationSettings(**{**FIXED.__dict__, "batch_size": 1}))
    assert batched == one_by_one


def test_joint_layout_returns_every_region(folders, cases):
    torch.manual_seed(0)
    joint = MedRegionModel.from_config(tiny_config(*folders, name="reg2rg")).eval()
    reports = joint.generate_reports(cases[:2], settings=GenerationSettings(max_new_tokens=4))
    assert [sorted(r) for r in reports] == [sorted(k for k, m in c["regions"].items() if m.any()) for c in cases[:2]]


def test_progress_and_cancel(model, cases):
    seen = []
    model.generate_reports(cases[:2], settings=GenerationSettings(max_new_tokens=2, batch_size=4),
                           progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0) and all(0 <= f <= 1 for f in seen)
    token = CancelToken()
    token.set()
    with pytest.raises(CancelledError):
        model.generate_reports(cases[:1], cancel=token)


def test_a_trained_model_writes_its_training_paragraphs(folders, cases):
    """A short overfit of two CTs: every region's name and paragraph come back exactly."""
    torch.manual_seed(0)
    config = tiny_config(*folders, name="hybrid", prompt={"use_attributes": False},
                         llm={"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                              "lora_target_modules": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                      "up_proj", "down_proj")})
    model = MedRegionModel.from_config(config)
    prepared = model.prepare(cases[:2])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(80):
        loss = model(model.build_inputs(prepared, train=True, rng=rng)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    reports = model.generate_reports(prepared, settings=GenerationSettings(max_new_tokens=40))
    for case, report in zip(prepared, reports):
        assert {k: v["paragraph"] for k, v in report.items()} == case.paragraphs
        assert {k: v["name"] for k, v in report.items()} == {k: case.name_of(k) for k in case.keys}
