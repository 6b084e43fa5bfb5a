"""Import of the published Reg2RG checkpoint (Chen et al., IEEE TMI 2025; code Apache-2.0).

The published file is a full ``Reg2RG`` state dict (``model.load_state_dict(ckpt, strict=True)`` in its
``test_radgenome.py``): ``embedding_layer.*`` (RadFM-style 3D ViT, Perceiver resampler, mask ViT, the ``fc`` and
``mask_fc`` projections, the ``<image>``/``<region>`` boundary embeddings, the LM's input embeddings tied in)
and ``lang_model.*`` (LLaMA-2-7B under a peft LoRA wrapper: r 8, alpha 32, q_proj and v_proj). Every tensor
maps onto the ``reg2rg`` preset of :class:`~.modeling.MedRegionModel` built with the RadFM ViT, Reg2RG's
preprocessing (array axes as stored, foreground crop above -1000 HU, area resampling of raw HU, then clip to
[-1000, 200] and (x + 400) / 600; region crops with -1024 outside the mask) and its prompt (one string tokenised
at once; the answer "The region i is X: ..."), so the imported model computes what the published one does
(``Testing/tests/test_reg2rg_parity.py``).

::

    medregionct import-reg2rg reg2rg.pth --llama /models/Llama-2-7b-hf --out checkpoints/reg2rg

The base LLaMA folder gives the LM's configuration and tokenizer; the checkpoint's own copy of the base weights
is compared with it, and the imported checkpoint refers to the folder (stored relative to itself) when they
agree, or carries the checkpoint's LM weights (``--embed-llm``) when they do not.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import InputError, MissingDependencyError
from .config import REG2RG_INSTRUCTION, MedRegionModelConfig, preset

VISION = "embedding_layer.vision_encoder."
PERCEIVER = "embedding_layer.perceiver."
MASK = "embedding_layer.mask_encoder."
LM = "lang_model."
BASE_TOLERANCE = 1e-3  # the checkpoint's base LM weights equal the folder's (fp16 rounding aside)


def reg2rg_config(llama_dir, *, vis_dim: int = 768, depth: int = 12, heads: int = 8, mlp_dim: int = 2048,
                  patch=(32, 32, 4), pos_grid=(16, 16, 128), grid=(256, 256, 64), latents: int = 32,
                  perceiver_depth: int = 6, perceiver_heads: int = 8, mask_dim: int = 255, mask_depth: int = 3,
                  mask_heads: int = 8, mask_mlp: int = 512, mask_patch=(32, 32, 16), mask_pos_grid=(8, 8, 4),
                  lora_r: int = 8, lora_alpha: int = 32, lora_dropout: float = 0.1,
                  lora_targets=("q_proj", "v_proj"), dtype: str = "float16", max_new_tokens: int = 50,
                  dim_head: int = 64) -> MedRegionModelConfig:
    """The ``reg2rg`` preset with everything Reg2RG fixed in its code (the defaults are the published sizes:
    ViT-B 3D with 32x32x4 patches and position tables for 512x512x512 volumes, 32 latents, a 255-wide 3-layer
    mask ViT, LoRA r 8 / alpha 32 on q_proj and v_proj, 256x256x64 inputs)."""
    return preset(
        "reg2rg",
        preprocess={"grid": tuple(grid), "hu_min": -1000.0, "hu_max": 200.0, "norm_offset": -400.0,
                    "norm_scale": 600.0, "body_threshold_hu": -1000.0, "body_margin_mm": 0.0,
                    "region_margin_mm": 0.0, "mask_outside_region": True, "orientation": "as_stored",
                    "body_box": "foreground", "resample": "adaptive", "clip_before_resize": False,
                    "region_box": "foreground", "outside_region_hu": -1024.0},
        vision3d={"enabled": True, "kind": "radfm", "in_channels": 3, "patch_size": tuple(patch),
                  "hidden_size": vis_dim, "mlp_dim": mlp_dim, "num_layers": depth, "num_heads": heads,
                  "dim_head": dim_head, "pos_grid": tuple(pos_grid), "dropout": 0.0, "freeze": True,
                  "num_latents": latents, "perceiver_depth": perceiver_depth, "perceiver_heads": perceiver_heads,
                  "perceiver_dim_head": dim_head, "global_tokens": True},
        mask={"enabled": True, "kind": "radfm", "num_tokens": 1, "patch_size": tuple(mask_patch),
              "hidden_size": mask_dim, "mlp_dim": mask_mlp, "num_layers": mask_depth, "num_heads": mask_heads,
              "dim_head": dim_head, "pos_grid": tuple(mask_pos_grid)},
        projector={"kind": "linear"},
        llm={"path": str(llama_dir), "dtype": dtype, "train": "lora", "lora_r": lora_r, "lora_alpha": lora_alpha,
             "lora_dropout": lora_dropout, "lora_target_modules": tuple(lora_targets), "max_length": 2048},
        prompt={"layout": "joint", "use_attributes": False, "shuffle_slots": True, "tokenize": "whole",
                "global_intro": "The global information is provided as the context: ",
                "region_intro": "The region {i} is ", "instruction": REG2RG_INSTRUCTION,
                "answer": "The region {i} is {name}: {paragraph}"},
        generation={"max_new_tokens": max_new_tokens, "batch_size": 1},
    )


# --- the published state dict -------------------------------------------------------------------------------
def read_state(path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (``.pth``/``.bin``/``.pt`` torch state dict read with weights_only, or
    ``.safetensors``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Reg2RG checkpoint {path} not found; give the published .pth file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise InputError(f"{path} could not be read as a torch state dict ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160]}); give the published Reg2RG checkpoint.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(k.startswith(VISION) for k in state):
        raise InputError(f"{path} is not a Reg2RG state dict (no {VISION}* tensors); give the published "
                         "checkpoint loaded by Reg2RG's test_radgenome.py.")
    return state


def _count(state, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for k in state if (m := pattern.match(k))})


def sizes_from_state(state: dict, dim_head: int = 64) -> dict:
    """The sizes of :func:`reg2rg_config` read off the tensors' shapes (attention width per head is not stored:
    Reg2RG's 64)."""
    def shape(key):
        if key not in state:
            raise InputError(f"the checkpoint lacks {key}; it is not a complete Reg2RG state dict.")
        return tuple(state[key].shape)

    out = {}
    out["vis_dim"], patch_dim = shape(VISION + "to_patch_embedding.2.weight")
    out["depth"] = _count(state, VISION + "transformer.layers.")
    out["heads"] = shape(VISION + "transformer.layers.0.0.fn.to_qkv.weight")[0] // 3 // dim_head
    out["mlp_dim"] = shape(VISION + "transformer.layers.0.1.fn.net.0.weight")[0]
    out["pos_grid"] = tuple(shape(VISION + f"pos_embedding.{a}_embed.weight")[0] for a in ("row", "col", "dep"))
    out["latents"] = shape(PERCEIVER + "latents")[0]
    out["perceiver_depth"] = _count(state, PERCEIVER + "layers.")
    out["perceiver_heads"] = shape(PERCEIVER + "layers.0.0.to_q.weight")[0] // dim_head
    out["mask_dim"], mask_patch_dim = shape(MASK + "to_patch_embedding.2.weight")
    out["mask_depth"] = _count(state, MASK + "transformer.layers.")
    out["mask_heads"] = shape(MASK + "transformer.layers.0.0.fn.to_qkv.weight")[0] // 3 // dim_head
    out["mask_mlp"] = shape(MASK + "transformer.layers.0.1.fn.net.0.weight")[0]
    out["mask_pos_grid"] = tuple(shape(MASK + f"pos_embedding.{a}_embed.weight")[0] for a in ("row", "col", "dep"))
    lora = sorted(k for k in state if k.startswith(LM) and ".lora_A." in k)
    if not lora:
        raise InputError("the checkpoint has no LoRA weights under lang_model.*; it is not a Reg2RG checkpoint.")
    out["lora_r"] = int(state[lora[0]].shape[0])
    out["lora_targets"] = tuple(sorted({k.split(".lora_A.")[0].rsplit(".", 1)[1] for k in lora}))
    return out, patch_dim, mask_patch_dim


# --- tensor names: Reg2RG -> MedRegionModel ------------------------------------------------------------------
def _vit_name(rest: str) -> str:
    return rest.replace(".1.fn.net.", ".1.fn.")  # PreNorm(FeedForward(net=...)) -> PreNorm(Sequential)


def convert_state_dict(state: dict, own_keys) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Reg2RG tensors under MedRegionModel names. ``own_keys``: the target model's state-dict keys (to choose
    between peft's ``.base_layer.`` naming and the older plain one). Returns (tensors, Reg2RG keys not used)."""
    own = set(own_keys)
    out: dict[str, torch.Tensor] = {}
    unused = []
    for key, tensor in state.items():
        if key.startswith(VISION):
            out["vision3d.vit." + _vit_name(key[len(VISION):])] = tensor
        elif key.startswith(PERCEIVER):
            out["vision3d.perceiver." + key[len(PERCEIVER):]] = tensor
        elif key.startswith(MASK):
            out["mask_encoder.net." + _vit_name(key[len(MASK):])] = tensor
        elif key.startswith("embedding_layer.fc."):
            out["projectors.vision3d." + key.rsplit(".", 1)[1]] = tensor
        elif key.startswith("embedding_layer.mask_fc."):
            out["projectors.mask." + key.rsplit(".", 1)[1]] = tensor
        elif key.startswith(LM):
            name = "llm." + key[len(LM):]
            if name not in own:  # peft before 0.7 stored a wrapped layer's weight without ".base_layer."
                alt = re.sub(r"\.(\w+_proj)\.(weight|bias)$", r".\1.base_layer.\2", name)
                name = alt if alt in own else name
            out[name] = tensor
        elif key not in ("embedding_layer.weight", "embedding_layer.image_token_weight",
                         "embedding_layer.region_token_weight"):
            unused.append(key)
    boundary = [state.get("embedding_layer.image_token_weight"), state.get("embedding_layer.region_token_weight")]
    if any(b is None for b in boundary):
        raise InputError("the checkpoint lacks embedding_layer.image_token_weight/region_token_weight; it is not a "
                         "complete Reg2RG state dict.")
    out["special_embed.weight"] = torch.cat(boundary, 0)  # <image>, </image>, <region>, </region>
    return out, unused


def import_reg2rg(checkpoint, llama_dir, out_dir, dtype: str = "float16", lora_alpha: int = 32,
                  embed_llm: bool = False, grid=(256, 256, 64), log=print) -> dict:
    """Convert the published checkpoint into a MedRegionCT checkpoint folder ``out_dir``; returns a summary
    (tensors converted, the largest base-weight difference, whether the LM is referenced or embedded).
    ``grid``: the input size (Reg2RG's 256 x 256 x 64; the weights do not fix it)."""
    from .modeling import MedRegionModel

    llama_dir = Path(llama_dir).expanduser()
    if not (llama_dir / "config.json").is_file():
        raise MissingDependencyError(f"--llama {llama_dir} is not a Hugging Face LLaMA folder (no config.json); give "
                                     "the base LLaMA-2-7B folder Reg2RG was trained on (config, tokenizer, weights).")
    state = read_state(checkpoint)
    sizes, patch_dim, mask_patch_dim = sizes_from_state(state)
    config = reg2rg_config(llama_dir, dtype=dtype, lora_alpha=lora_alpha, grid=tuple(grid), **sizes)
    v3, mk = config.vision3d, config.mask
    for what, got, patch, channels in (("vision", patch_dim, v3.patch_size, v3.in_channels),
                                       ("mask", mask_patch_dim, mk.patch_size, 1)):
        want = channels * patch[0] * patch[1] * patch[2]
        if got != want:
            raise InputError(f"the {what} encoder's patch embedding takes {got} values, Reg2RG's {tuple(patch)} "
                             f"patches of {channels} channel(s) give {want}; this is not the published layout.")
    log(f"building the reg2rg model on {llama_dir.name} ({sum(t.numel() for t in state.values()) / 1e9:.2f} G values "
        "in the checkpoint)")
    model = MedRegionModel.from_config(config)
    own = model.state_dict()
    converted, unused = convert_state_dict(state, own.keys())
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    wrong = sorted(k for k in set(own) & set(converted) if tuple(own[k].shape) != tuple(converted[k].shape))
    if missing or unexpected or wrong or unused:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for what, keys in
                           (("not in the checkpoint", missing), ("not in the model", unexpected + unused),
                            ("wrong shape", wrong)) if keys)
        raise InputError(f"the checkpoint does not map onto the reg2rg model ({detail}); it is not the published "
                         "Reg2RG layout.")
    tied = state.get("embedding_layer.weight")
    base = [k for k in converted if k.startswith("llm.") and "lora_" not in k]
    difference = 0.0
    for key in base:
        a, b = converted[key].float(), own[key].float()
        difference = max(difference, float((a - b).abs().max()) if a.numel() else 0.0)
    embed_key = next((k for k in base if k.endswith("embed_tokens.weight")), None)
    if tied is not None and embed_key is not None and not torch.equal(tied, converted[embed_key]):
        raise InputError("embedding_layer.weight differs from the LM's input embeddings; the checkpoint is not one "
                         "Reg2RG model (they are the same tensor in Reg2RG).")
    model.load_state_dict(converted, strict=True)
    referenced = difference <= BASE_TOLERANCE and not embed_llm
    if not referenced and not embed_llm:
        raise InputError(f"the checkpoint's base LM weights differ from {llama_dir} by up to {difference:.3g}; give "
                         "the LLaMA folder Reg2RG was trained on, or pass --embed-llm to store the checkpoint's own "
                         "LM weights in the output.")
    if not referenced:
        model.config.llm.path = None  # save_pretrained then writes the LM into OUT/llm
        model.config.llm.tokenizer_path = None
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    summary = {"out": str(out_dir), "tensors": len(converted), "values": int(sum(t.numel() for t in state.values())),
               "base_llm": "referenced" if referenced else "embedded", "max_base_difference": difference,
               "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}}
    log(f"wrote {out_dir}: {len(converted)} tensors; base LM {summary['base_llm']} (largest difference to "
        f"{llama_dir.name}: {difference:.3g})")
    return summary
