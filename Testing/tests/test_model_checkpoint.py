"""Checkpoints: save then load gives identical logits; missing or mismatched files are clear errors."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("monai")

from MedRegionCTLib.errors import InputError, MissingDependencyError  # noqa: E402
from MedRegionCTLib.model import MedRegionModel  # noqa: E402
from MedRegionCTLib.model.checkpoint import ADAPTER_DIR, ENCODERS, LLM_DIR, MANIFEST, VISION2D_CONFIG  # noqa: E402
from MedRegionCTLib.model.config import CONFIG_NAME, MedRegionModelConfig  # noqa: E402
from MedRegionCTLib.model.tiny import synthetic_case, tiny_config, write_tiny_folders  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    return [synthetic_case(seed) for seed in (3, 4)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, cases):
    llm, vision = write_tiny_folders(tmp_path_factory.mktemp("tiny"), cases)
    return llm, vision


def _trained(config, cases, steps=2):
    torch.manual_seed(0)
    model = MedRegionModel.from_config(config)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(steps):  # non-trivial LoRA / encoder / slot weights before saving
        loss = model.loss(cases, rng=random.Random(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _logits(model, prepared):
    with torch.no_grad():
        return model(model.build_inputs(prepared, train=False, with_answer=True)).logits


VARIANTS = {
    # LoRA on a base LM from a folder; frozen 2D encoder re-read from its folder
    "hybrid-lora": lambda llm, v2: tiny_config(llm, v2, name="hybrid"),
    # whole LM trained and saved; trainable 2D encoder saved in the checkpoint
    "medregion-full": lambda llm, v2: tiny_config(llm, v2, name="medregion", llm={"train": "full"},
                                                  vision2d={"freeze": False}),
    # a randomly initialised base LM (no folder) under LoRA: the base is saved too
    "reg2rg-random-base": lambda llm, v2: tiny_config(
        llm, v2, name="reg2rg",
        llm={"path": None, "tokenizer_path": str(llm),
             "hf_config": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                           "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
                           "vocab_size": 512}}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_save_then_load_gives_identical_logits(tmp_path, folders, cases, variant):
    config = VARIANTS[variant](*folders)
    model = _trained(config, cases)
    prepared = model.prepare(cases)
    before = _logits(model, prepared)
    model.save_pretrained(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {CONFIG_NAME, MANIFEST, ENCODERS, "tokenizer"} <= files
    assert (ADAPTER_DIR in files) == (config.llm.train == "lora")
    assert (LLM_DIR in files) == (config.llm.train == "full" or config.llm.path is None)
    assert (VISION2D_CONFIG in files) == (config.vision2d.enabled and not config.vision2d.freeze)
    loaded = MedRegionModel.from_pretrained(tmp_path / "ckpt")
    after = _logits(loaded, prepared)
    assert torch.equal(before, after)
    assert not any(p.requires_grad for p in loaded.parameters())  # loaded for inference by default
    # a loaded model can train on: its trainable set matches the original
    again = MedRegionModel.from_pretrained(tmp_path / "ckpt", trainable=True)
    assert {n for n, p in again.named_parameters() if p.requires_grad} == \
        {n for n, p in model.named_parameters() if p.requires_grad}


def test_missing_and_mismatched_files_are_named(tmp_path, folders, cases):
    llm, v2 = folders
    model = _trained(tiny_config(llm, v2, name="hybrid"), cases, steps=1)
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)

    broken = tmp_path / "no_encoders"
    shutil.copytree(ckpt, broken)
    (broken / ENCODERS).unlink()
    with pytest.raises(InputError, match=ENCODERS):
        MedRegionModel.from_pretrained(broken)

    broken = tmp_path / "no_adapter"
    shutil.copytree(ckpt, broken)
    (broken / ADAPTER_DIR / "adapter_model.safetensors").unlink()
    with pytest.raises(InputError, match="adapter_model.safetensors"):
        MedRegionModel.from_pretrained(broken)

    broken = tmp_path / "other_config"
    shutil.copytree(ckpt, broken)
    changed = MedRegionModelConfig.load(broken).to_dict()
    changed["vision3d"]["num_latents"] = 6
    MedRegionModelConfig.from_dict(changed).save(broken)
    with pytest.raises(InputError, match="does not match") as err:
        MedRegionModel.from_pretrained(broken)
    assert "perceiver.latents" in str(err.value)

    with pytest.raises(InputError, match="does not exist"):
        MedRegionModel.from_pretrained(tmp_path / "nowhere")


def test_base_model_location_can_be_overridden(tmp_path, folders, cases):
    llm, v2 = folders
    moved_llm = tmp_path / "llm_elsewhere"
    shutil.copytree(llm, moved_llm)
    model = _trained(tiny_config(moved_llm, v2, name="reg2rg"), cases, steps=1)
    model.save_pretrained(tmp_path / "ckpt")
    prepared = model.prepare(cases)
    before = _logits(model, prepared)
    saved = json.loads((tmp_path / "ckpt" / "medregion_config.json").read_text())
    assert saved["llm"]["path"] == "../llm_elsewhere"  # relative to the checkpoint, never absolute
    # the checkpoint and its base LM moved together to another place: found again through the relative path
    shutil.copytree(tmp_path / "ckpt", tmp_path / "moved" / "ckpt")
    shutil.copytree(moved_llm, tmp_path / "moved" / "llm_elsewhere")
    assert torch.equal(_logits(MedRegionModel.from_pretrained(tmp_path / "moved" / "ckpt"), prepared), before)
    shutil.rmtree(moved_llm)
    with pytest.raises(MissingDependencyError, match="needs its base language model 'llm_elsewhere'.*--llm-path"):
        MedRegionModel.from_pretrained(tmp_path / "ckpt")
    loaded = MedRegionModel.from_pretrained(tmp_path / "ckpt", llm_path=llm)
    assert torch.equal(_logits(loaded, prepared), before)
    # or by name, from the folder of base models
    os.environ["MEDREGIONCT_MODELS"] = str(tmp_path / "moved")
    try:
        assert torch.equal(_logits(MedRegionModel.from_pretrained(tmp_path / "ckpt"), prepared), before)
    finally:
        del os.environ["MEDREGIONCT_MODELS"]
