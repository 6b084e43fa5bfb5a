"""Checkpoint folder of a MedRegionModel.

::

    medregion_config.json     the MedRegionModelConfig
    manifest.json             what is stored where (format, parts)
    tokenizer/                the LM tokenizer with the slot tokens added
    encoders.safetensors      every non-LM weight: encoders, Perceiver, mask encoder, projectors, slot embeddings
                              (a frozen 2D encoder that came from a local folder is re-read from there instead)
    vision2d_config.json      the 2D encoder's HF config, when its weights are in encoders.safetensors
    adapter/                  the LoRA adapter (peft save_pretrained), for llm.train == "lora"
    llm/                      the whole LM, for llm.train == "full" or a randomly initialised base LM

Loading checks every file and every tensor name and shape, and says which file is missing or mismatched.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ..errors import InputError
from .config import CONFIG_NAME, MedRegionModelConfig
from .llm import (
    apply_training_mode,
    base_model,
    enable_checkpointing,
    load_adapter,
    load_causal_lm,
    load_tokenizer,
    resolve_dtype,
)

MANIFEST = "manifest.json"
ENCODERS = "encoders.safetensors"
VISION2D_CONFIG = "vision2d_config.json"
TOKENIZER_DIR = "tokenizer"
ADAPTER_DIR = "adapter"
LLM_DIR = "llm"
CHECKPOINT_FORMAT = 1


def _encoder_state(model, skip_vision2d: bool) -> dict[str, torch.Tensor]:
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("llm."):
            continue
        if skip_vision2d and name.startswith("vision2d.encoder."):
            continue
        state[name] = tensor.detach().to("cpu").contiguous()
    return state


def save_checkpoint(model, directory) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    v2 = config.vision2d
    vision2d_from_folder = bool(v2.enabled and v2.freeze and v2.path)
    save_file(_encoder_state(model, skip_vision2d=vision2d_from_folder), str(directory / ENCODERS),
              metadata={"format": str(CHECKPOINT_FORMAT)})
    if v2.enabled and not vision2d_from_folder:
        (directory / VISION2D_CONFIG).write_text(model.vision2d.encoder.config.to_json_string(), encoding="utf-8")
    model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    train = config.llm.train
    llm_saved = train == "full" or config.llm.path is None
    if train == "lora":
        model.llm.save_pretrained(str(directory / ADAPTER_DIR))
    if llm_saved:
        base_model(model.llm).save_pretrained(str(directory / LLM_DIR)) if train != "lora" else \
            _save_base_without_lora(model.llm, directory / LLM_DIR)
    portable_config(config, directory, llm_saved).save(directory / CONFIG_NAME)
    manifest = {"format": CHECKPOINT_FORMAT, "encoders": ENCODERS, "tokenizer": TOKENIZER_DIR,
                "adapter": ADAPTER_DIR if train == "lora" else None, "llm": LLM_DIR if llm_saved else None,
                "vision2d_weights_saved": bool(v2.enabled and not vision2d_from_folder)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory


MODELS_ENV = "MEDREGIONCT_MODELS"  # a folder holding base models by name (Llama-2-7b-hf/, siglip-so400m/, ...)


def portable_config(config: MedRegionModelConfig, directory: Path, llm_saved: bool) -> MedRegionModelConfig:
    """A copy of ``config`` whose base-weight folders are stored relative to the checkpoint folder, so a copied
    checkpoint (another machine, another mount point) finds them again, or by name through ``$MEDREGIONCT_MODELS``
    or an explicit ``llm_path``. Folders stored inside the checkpoint are not referenced at all."""
    import os

    out = MedRegionModelConfig.from_dict(config.to_dict())
    base = Path(directory).resolve()

    def rel(path):
        if path is None:
            return None
        try:
            return os.path.relpath(Path(path).expanduser().resolve(), base)
        except ValueError:  # another drive (Windows): keep the name only
            return Path(path).name

    if llm_saved:
        out.llm.path = None
        out.llm.tokenizer_path = None
    else:
        out.llm.path = rel(out.llm.path)
        out.llm.tokenizer_path = rel(out.llm.tokenizer_path)
    out.vision2d.path = rel(out.vision2d.path)
    return out


def resolve_base(path: str | None, directory: Path, what: str, option: str) -> str | None:
    """A base folder named by a checkpoint: absolute, relative to the checkpoint, or by its name under
    ``$MEDREGIONCT_MODELS``; a one-line error naming every place looked at when it is in none of them."""
    import os

    if path is None:
        return None
    given = Path(path).expanduser()
    tried = [given if given.is_absolute() else (Path(directory) / given)]
    if os.environ.get(MODELS_ENV):
        tried.append(Path(os.environ[MODELS_ENV]).expanduser() / given.name)
    for candidate in tried:
        if candidate.is_dir():
            return str(candidate.resolve())
    from ..errors import MissingDependencyError

    raise MissingDependencyError(
        f"checkpoint {directory} needs its {what} {given.name!r}, looked for in {', '.join(str(t) for t in tried)}; "
        f"pass {option} DIR (the folder on this machine) or set {MODELS_ENV} to the folder that holds it.")


def _save_base_without_lora(peft_model, folder: Path) -> None:
    """The randomly initialised base LM under a LoRA wrapper (the adapter is saved separately)."""
    base = peft_model.get_base_model()
    state = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items() if "lora_" not in k}
    base.save_pretrained(str(folder), state_dict=state)


def _read_manifest(directory: Path) -> dict:
    if not directory.is_dir():
        raise InputError(f"checkpoint folder {directory} does not exist; give a folder written by save_pretrained().")
    for name in (CONFIG_NAME, MANIFEST, ENCODERS):
        if not (directory / name).is_file():
            raise InputError(f"checkpoint {directory} lacks {name}; the folder is incomplete or not a MedRegion "
                             "checkpoint, save it again with save_pretrained().")
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"checkpoint {directory} has format {manifest.get('format')}, this version reads "
                         f"{CHECKPOINT_FORMAT}; use a matching MedRegionCTLib version.")
    for key in ("tokenizer", "adapter", "llm"):
        if manifest.get(key) and not (directory / manifest[key]).is_dir():
            raise InputError(f"checkpoint {directory} lacks the {manifest[key]}/ folder its manifest lists; copy the "
                             "whole checkpoint folder.")
    return manifest


def load_encoder_state(model, path: Path, with_vision2d: bool) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("llm.")}
    if not with_vision2d:
        own = {k: v for k, v in own.items() if not k.startswith("vision2d.encoder.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected),
                                              ("wrong shape", wrong)) if keys)
        raise InputError(f"{path} does not match the model its configuration builds ({detail}); the weights and "
                         f"{CONFIG_NAME} come from different models, keep them together.")
    model.load_state_dict(state, strict=False)


def load_checkpoint(directory, device=None, llm_path=None, vision2d_path=None, trainable: bool = False):
    from .modeling import MedRegionModel
    from .vision2d import load_vision_encoder

    directory = Path(directory)
    manifest = _read_manifest(directory)
    config = MedRegionModelConfig.load(directory / CONFIG_NAME)
    if llm_path is not None:
        config.llm.path = str(llm_path)
        config.llm.tokenizer_path = None
    elif not manifest.get("llm"):
        config.llm.path = resolve_base(config.llm.path, directory, "base language model", "--llm-path")
    if vision2d_path is not None:
        config.vision2d.path = str(vision2d_path)
    elif config.vision2d.enabled and not manifest.get("vision2d_weights_saved"):
        config.vision2d.path = resolve_base(config.vision2d.path, directory, "2D vision encoder", "vision2d_path=")
    if config.llm.tokenizer_path is not None and llm_path is None:
        config.llm.tokenizer_path = resolve_base(config.llm.tokenizer_path, directory, "tokenizer", "--llm-path")
    dtype = resolve_dtype(config.llm.dtype, device)
    tokenizer = load_tokenizer(config.llm, path=directory / manifest["tokenizer"])

    if manifest.get("llm"):
        llm = load_causal_lm(config.llm, dtype, path=directory / manifest["llm"])
    else:
        if config.llm.path is None:
            raise InputError(f"checkpoint {directory} needs its base language model, but no path is known; pass "
                             "llm_path= the folder of the base model it was trained on.")
        llm = load_causal_lm(config.llm, dtype)
    if config.llm.train == "lora":
        llm = load_adapter(llm, directory / manifest["adapter"], trainable=trainable)
        if config.llm.gradient_checkpointing and trainable:
            enable_checkpointing(llm)
    elif trainable:
        llm = apply_training_mode(llm, config.llm)
    else:
        llm.requires_grad_(False)

    encoder = None
    if config.vision2d.enabled:
        if manifest.get("vision2d_weights_saved"):
            # the architecture from the saved HF config; the weights come from encoders.safetensors below
            if not (directory / VISION2D_CONFIG).is_file():
                raise InputError(f"checkpoint {directory} lacks {VISION2D_CONFIG}; copy the whole checkpoint folder.")
            data = json.loads((directory / VISION2D_CONFIG).read_text(encoding="utf-8"))
            encoder = load_vision_encoder(dataclasses.replace(config.vision2d, path=None, hf_config=data))
        else:
            encoder = load_vision_encoder(config.vision2d)
    model = MedRegionModel(config, llm, tokenizer, vision2d_encoder=encoder)
    load_encoder_state(model, directory / manifest["encoders"],
                       with_vision2d=bool(manifest.get("vision2d_weights_saved")))
    if not trainable:
        model.requires_grad_(False)
    model.eval()
    return model.to(device) if device is not None else model
