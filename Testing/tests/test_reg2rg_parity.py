"""Reg2RG checkpoint import, checked against Reg2RG's own code (``../shared/reference/reg2rg``, Apache-2.0).

Reg2RG's modules (``MyEmbedding``: RadFM 3D ViT, Perceiver, mask ViT, projections; a LLaMA under peft LoRA; the
``Reg2RG`` container) are built with random weights at reduced sizes, their state dict is saved as the published
checkpoint is and converted by ``medregionct import-reg2rg``; the imported model must give the same visual tokens,
region tokens and logits for Reg2RG's prompt (within 1e-4). Reg2RG's test-set preprocessing
(``RadGenomeDataset_Test.mask_nii_img_to_tensor`` with its MONAI transforms) is compared with the imported
model's on NIfTI files written here. Needs the reference code: MEDREGIONCT_REALDATA=.../shared/data (its sibling
``reference/reg2rg``) or MEDREGIONCT_REFERENCE=.../shared/reference.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.realdata

torch = pytest.importorskip("torch")
pytest.importorskip("einops_exts", reason="Reg2RG's Perceiver needs einops-exts (the test extra installs it)")


def _reference() -> Path:
    if os.environ.get("MEDREGIONCT_REFERENCE"):
        root = Path(os.environ["MEDREGIONCT_REFERENCE"]) / "reg2rg"
    elif os.environ.get("MEDREGIONCT_REALDATA"):
        root = Path(os.environ["MEDREGIONCT_REALDATA"]).resolve().parent / "reference" / "reg2rg"
    else:
        pytest.skip("MEDREGIONCT_REALDATA / MEDREGIONCT_REFERENCE not set: Reg2RG's code is not at hand",
                    allow_module_level=True)
    if not (root / "src" / "Model" / "Reg2RG.py").is_file():
        pytest.skip(f"{root} holds no Reg2RG code", allow_module_level=True)
    return root


REFERENCE = _reference()


def _stand_in(name: str, *subs: str) -> None:
    """Reg2RG's modules import torchvision (for a 2D image encoder it never builds here) and pandas (to read the
    report CSV, not used by the functions called here); neither is part of this project's install, so when one is
    missing an empty module stands in for the import. No code of theirs runs."""
    import importlib.machinery

    import transformers  # noqa: F401 - its own availability checks run before any stand-in exists

    try:
        __import__(name)
    except ImportError:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = module
        _STAND_INS.append(name)
        for sub in subs:
            setattr(module, sub, types.ModuleType(f"{name}.{sub}"))
            sys.modules[f"{name}.{sub}"] = getattr(module, sub)
            _STAND_INS.append(f"{name}.{sub}")


_STAND_INS: list[str] = []


_stand_in("torchvision", "transforms")
_stand_in("pandas")
sys.path.insert(0, str(REFERENCE / "src"))
from Dataset.radgenome_dataset_test import RadGenomeDataset_Test  # noqa: E402
from Model.my_embedding_layer import MyEmbedding  # noqa: E402
from Model.Reg2RG import Reg2RG  # noqa: E402

for _name in _STAND_INS:  # Reg2RG's modules hold them now; the rest of the test process must not see a fake package
    sys.modules.pop(_name, None)  # (pyarrow, for one, takes any importable `pandas` for the real one)

from MedRegionCTLib.model import MedRegionModel  # noqa: E402
from MedRegionCTLib.model.reg2rg import import_reg2rg  # noqa: E402
from MedRegionCTLib.model.tiny import synthetic_case, train_tokenizer  # noqa: E402

GRID = (64, 64, 16)  # reduced input size: 2 x 2 x 4 patches of 32 x 32 x 4 (the ViT is built for 512^3)
VIS_DIM = 48
HIDDEN = 64
REGIONS = ["heart", "lung", "trachea and bronchie"]  # in Reg2RG's order (its REGIONS list, alphabetical)
TOL = 1e-4


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """Reg2RG built from its own modules, random weights, reduced sizes; saved as the published checkpoint is."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("reg2rg")
    torch.manual_seed(0)
    texts = ["The global information is provided as the context: ", "The region 0 is ", "heart lung trachea",
             "Given the provided global and regional information from this CT scan, please generate a report."] * 3
    tokenizer = train_tokenizer(texts, vocab_size=300)
    llama_dir = root / "llama"
    tokenizer.save_pretrained(str(llama_dir))
    vocab = len(tokenizer)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=2048, tie_word_embeddings=False,
                                      pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                      eos_token_id=tokenizer.eos_token_id))
    lm.save_pretrained(str(llama_dir))
    # Reg2RG.__init__ hard-codes LLaMA-7B sizes and a sentencepiece tokenizer: the same parts are assembled here
    # from its own classes and settings
    model = Reg2RG.__new__(Reg2RG)
    torch.nn.Module.__init__(model)
    peft = get_peft_model(lm, LoraConfig(task_type="CAUSAL_LM", inference_mode=False, r=8, lora_alpha=32,
                                         lora_dropout=0.1))
    with torch.no_grad():  # LoRA's B starts at zero: give it values so the adapter changes the logits
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    model.lang_model = peft
    model.embedding_layer = MyEmbedding(num_embeddings=vocab, embedding_dim=HIDDEN, perceiver_num=32,
                                        vis_dim=VIS_DIM, patch_size=32, frame_patch_size=4)
    model.embedding_layer.weight = model.lang_model.get_input_embeddings().weight
    model.eval()
    checkpoint = root / "reg2rg.pth"
    torch.save(model.state_dict(), checkpoint)
    return {"model": model, "checkpoint": checkpoint, "llama": llama_dir, "root": root}


@pytest.fixture(scope="module")
def imported(upstream):
    out = upstream["root"] / "imported"
    summary = import_reg2rg(upstream["checkpoint"], upstream["llama"], out, dtype="float32", grid=GRID,
                            log=lambda m: None)
    return summary, MedRegionModel.from_pretrained(out).eval()


def _upstream_tokenizer(llama_dir, n_regions):
    """Reg2RG's test dataset's tokenizer set-up and prompt text (RadGenomeDataset_Test.__init__/__getitem__)."""
    from transformers import AutoTokenizer

    data = RadGenomeDataset_Test.__new__(RadGenomeDataset_Test)
    data.text_tokenizer = AutoTokenizer.from_pretrained(str(llama_dir))
    special = {"additional_special_tokens": ["<image>", "</image>", "<region>", "</region>"]}
    data.image_padding_tokens = ["".join(f"<image{j}>" for j in range(32))]
    special["additional_special_tokens"] += [f"<image{j}>" for j in range(32)]
    data.region_padding_tokens = ["".join(f"<region{i * 33 + j}>" for j in range(33)) for i in range(10)]
    special["additional_special_tokens"] += [f"<region{i * 33 + j}>" for i in range(10) for j in range(33)]
    data.text_tokenizer.add_special_tokens(special)
    instruction = ("Given the provided global and regional information from this CT scan, please generate a "
                   "comprehensive medical report for each region. First, identify the anatomical area corresponding "
                   "to each region, then provide detailed information about these anatomical structures and any "
                   "abnormalities that are essential. You can refer to the global information as the context and "
                   "take it as a supplement when generating each region report.")
    prompt = data.text_add_image_tokens(data.text_add_region_tokens(instruction, num_regions=n_regions))
    return data.text_tokenizer, prompt


def _case():
    case = synthetic_case(5, shape=(70, 66, 20), spacing=(1.5, 1.5, 2.5))
    regions = {"heart": case["regions"]["heart"], "lung": case["regions"]["lung"],
               "trachea and bronchie": case["regions"]["trachea"]}
    return {"volume": case["volume"], "affine": case["affine"], "regions": regions}


def _reg2rg_transforms(grid):
    import monai.transforms as transforms

    def threshold(x):
        return x > -1000

    region = transforms.Compose([transforms.CropForeground(select_fn=threshold),
                                 transforms.Resize(spatial_size=grid), transforms.ToTensor()])
    image = transforms.Compose([transforms.CropForegroundd(keys=["img", "seg"], source_key="img",
                                                           select_fn=threshold),
                                transforms.Resized(keys=["img", "seg"], spatial_size=grid),
                                transforms.ToTensord(keys=["img", "seg"])])
    return region, image


def test_preprocessing_matches_reg2rgs_dataset(imported, tmp_path):
    import nibabel as nib

    _, model = imported
    case = _case()
    nib.save(nib.Nifti1Image(case["volume"].astype(np.int16), case["affine"]), tmp_path / "ct.nii.gz")
    paths = {}
    for key, mask in case["regions"].items():
        paths[key] = tmp_path / f"{key}.nii.gz"
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), case["affine"]), paths[key])
    region_t, image_t = _reg2rg_transforms(GRID)
    vision, masks = RadGenomeDataset_Test.mask_nii_img_to_tensor(None, str(tmp_path / "ct.nii.gz"),
                                                                 {k: str(p) for k, p in paths.items()}, region_t,
                                                                 image_t)
    from MedRegionCTLib.model.preprocess import prepare_case
    from MedRegionCTLib.volume import read_volume

    ours = prepare_case({"volume": read_volume(tmp_path / "ct.nii.gz"), "regions": case["regions"]},
                        model.config.preprocess, model.config.needed_inputs())
    diffs = {"image": float(np.abs(vision["image"][0, 0].numpy() - ours.arrays["image"]).max())}
    for i, key in enumerate(ours.keys):
        diffs[f"crop:{key}"] = float(np.abs(vision[key][0, 0].numpy() - ours.arrays["crops"][i]).max())
        diffs[f"mask:{key}"] = float(np.abs(masks[key][0].numpy() - ours.arrays["masks"][i]).max())
    print("\n[reg2rg parity] preprocessing max |diff|:", {k: f"{v:.1e}" for k, v in diffs.items()})
    assert max(diffs.values()) < 1e-5, diffs


def test_imported_model_gives_reg2rgs_tokens_and_logits(upstream, imported):
    summary, ours = imported
    assert summary["base_llm"] == "referenced" and summary["max_base_difference"] == 0.0
    assert summary["sizes"]["vis_dim"] == VIS_DIM and summary["sizes"]["lora_targets"] == ["q_proj", "v_proj"]
    up = upstream["model"]
    prepared = ours.prepare([_case()])[0]
    assert prepared.keys == REGIONS
    # Reg2RG's inputs: its prompt through its tokenizer, its tensor layout (B, S, C=3, H, W, D)
    tokenizer, prompt = _upstream_tokenizer(upstream["llama"], len(REGIONS))
    lang_x = tokenizer(prompt, max_length=2048, truncation=True, return_tensors="pt")["input_ids"]
    a = prepared.arrays
    vision_x = {"image": torch.as_tensor(a["image"])[None, None, None].repeat(1, 1, 3, 1, 1, 1)}
    mask_x = {}
    for i, key in enumerate(prepared.keys):
        vision_x[key] = torch.as_tensor(a["crops"][i])[None, None, None].repeat(1, 1, 3, 1, 1, 1)
        mask_x[key] = torch.as_tensor(a["masks"][i])[None, None]
    region2area = [dict(enumerate(prepared.keys))]
    with torch.no_grad():
        up_embeds = up.embedding_layer(vision_x, mask_x, lang_x, region2area)
        up_logits = up.lang_model(inputs_embeds=up_embeds).logits
        inputs = ours.build_inputs([prepared], train=False, with_answer=False)
        our_logits = ours(inputs).logits
    # the same prompt: every text token the same, the slot tokens where Reg2RG has its <imageN>/<regionN>
    ids_up, ids_ours = lang_x[0], inputs.input_ids[0]
    assert ids_up.shape == ids_ours.shape
    vocab = len(tokenizer) - 4 - 32 - 330
    text = ids_up < vocab
    assert torch.equal(ids_up[text], ids_ours[text])
    is_image = (ids_up >= vocab + 4) & (ids_up < vocab + 36)
    is_region = ids_up >= vocab + 36
    assert torch.equal(is_image, inputs.group_masks["global"][0]) and torch.equal(is_region,
                                                                                inputs.group_masks["region"][0])
    figures = {
        "visual tokens": float((up_embeds[0][is_image] - inputs.inputs_embeds[0][is_image]).abs().max()),
        "region tokens": float((up_embeds[0][is_region] - inputs.inputs_embeds[0][is_region]).abs().max()),
        "all embeddings": float((up_embeds[0] - inputs.inputs_embeds[0]).abs().max()),
        "logits": float((up_logits - our_logits).abs().max()),
    }
    print("\n[reg2rg parity] max |Reg2RG - imported|:", {k: f"{v:.2e}" for k, v in figures.items()},
          f"(logit scale {float(up_logits.abs().max()):.2f})")
    assert all(v < TOL for v in figures.values()), figures


def test_the_import_command(upstream, tmp_path, capsys):
    from MedRegionCTLib.cli.main import main

    out = tmp_path / "cli"
    assert main(["import-reg2rg", str(upstream["checkpoint"]), "--llama", str(upstream["llama"]), "--out", str(out),
                 "--dtype", "float32"]) == 0
    assert "base LM referenced" in capsys.readouterr().out
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "llm").exists()
    assert main(["import-reg2rg", str(upstream["llama"] / "config.json"), "--llama", str(upstream["llama"]), "--out",
                 str(tmp_path / "bad")]) == 1
    assert "could not be read as a torch state dict" in capsys.readouterr().err
