"""Model configuration: JSON round trip, presets, token counts, and one-line errors for bad settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from MedRegionCTLib.errors import InputError
from MedRegionCTLib.model.config import CONFIG_NAME, MedRegionModelConfig, preset


@pytest.mark.parametrize("name", ["reg2rg", "medregion", "hybrid"])
def test_presets_round_trip_through_json(tmp_path, name):
    config = preset(name, llm={"path": "/models/llama"}, vision2d={"path": "/models/siglip"})
    path = config.save(tmp_path)
    assert path == tmp_path / CONFIG_NAME
    loaded = MedRegionModelConfig.load(tmp_path)
    assert loaded == config
    assert isinstance(loaded.preprocess.grid, tuple)  # JSON lists come back as tuples
    assert MedRegionModelConfig.from_dict(json.loads(path.read_text())) == config


def test_preset_token_counts_follow_the_published_designs():
    reg2rg = preset("reg2rg")
    # Reg2RG: 32 Perceiver latents for the volume; 32 latents + 1 mask token per region (its 33-token slots)
    assert reg2rg.num_global_tokens() == 32
    assert reg2rg.num_region_tokens() == 33
    assert reg2rg.prompt.layout == "joint" and reg2rg.needed_inputs() == {"image", "crops", "masks"}
    medregion = preset("medregion")
    # MedRegion-CT: one token per slice (64 slices), 4 pooled region tokens + 1 mask token
    assert medregion.num_global_tokens() == 64
    assert medregion.num_region_tokens() == 5
    assert medregion.needed_inputs() == {"slices", "slice_masks", "masks"}
    hybrid = preset("hybrid")
    assert hybrid.num_global_tokens() == 64 // 4 + 32
    assert hybrid.num_region_tokens() == 4 + 32 + 1


def test_replace_changes_only_the_named_fields():
    config = preset("reg2rg")
    changed = config.replace(llm={"lora_r": 64})
    assert changed.llm.lora_r == 64 and config.llm.lora_r == 8
    assert changed.vision3d == config.vision3d


@pytest.mark.parametrize("change, words", [
    ({"vision3d": {"enabled": False}}, "no vision path"),
    ({"vision3d": {"patch_size": (30, 32, 4)}}, "does not divide"),
    ({"prompt": {"layout": "sideways"}}, "prompt.layout"),
    ({"llm": {"train": "some"}}, "llm.train"),
    ({"mask": {"kind": "mlp"}}, "mask.kind"),
])
def test_bad_settings_are_one_line_errors(change, words):
    with pytest.raises(InputError) as err:
        preset("reg2rg", **change)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_unknown_keys_and_sections_are_rejected(tmp_path):
    data = preset("reg2rg").to_dict()
    data["llm"]["lora_rank"] = 8
    with pytest.raises(InputError, match="lora_rank"):
        MedRegionModelConfig.from_dict(data)
    data = preset("reg2rg").to_dict()
    data["decoder"] = {}
    with pytest.raises(InputError, match="decoder"):
        MedRegionModelConfig.from_dict(data)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        MedRegionModelConfig.load(tmp_path)
    with pytest.raises(InputError, match="not found"):
        MedRegionModelConfig.load(tmp_path / "missing")


def test_building_needs_weight_sources():
    with pytest.raises(InputError, match="llm.path"):
        preset("reg2rg").check_buildable()
    with pytest.raises(InputError, match="vision2d.path"):
        preset("medregion", llm={"path": "/x"}).check_buildable()


def test_config_and_preprocess_import_without_torch():
    # the client (no torch) shares these two modules
    code = ("import sys; import MedRegionCTLib.model.config, MedRegionCTLib.model.preprocess, MedRegionCTLib.model; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_repo_root()))


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def test_preprocessing_is_described_per_configuration():
    reg2rg = "\n".join(preset("reg2rg").describe_preprocessing())
    assert "(HU - -400) / 600" in reg2rg and "256x256x64" in reg2rg and "set to -1000 HU" in reg2rg
    assert "slices" not in reg2rg
    medregion = "\n".join(preset("medregion", preprocess={"num_slices": 32}).describe_preprocessing())
    assert "32 axial slices of 224x224" in medregion and "crops" not in medregion
