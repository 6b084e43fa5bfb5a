"""The causal language model: loading from a local folder (never the Hub), dtype, LoRA through peft,
gradient checkpointing, and the explicit generation configuration."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, MissingDependencyError
from .config import GenerationSettings, LLMConfig


def resolve_dtype(name: str, device: torch.device | str | None = None) -> torch.dtype:
    """``"auto"`` is bfloat16 on CUDA and float32 elsewhere (CPU bf16 matmuls are slow and imprecise)."""
    if name == "auto":
        dev = torch.device(device) if device is not None else None
        return torch.bfloat16 if dev is not None and dev.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise InputError(f"llm.dtype {name!r} is unknown; use 'auto', 'float32', 'bfloat16' or 'float16'.")
    return table[name]


def _check_folder(path, what: str, files: tuple[str, ...]) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise MissingDependencyError(f"{what} folder {folder} does not exist; download the model to a local folder "
                                     "and set its path in the model configuration (nothing is downloaded for you).")
    for name in files:
        if not (folder / name).is_file():
            raise MissingDependencyError(f"{what} folder {folder} has no {name}; it is not a complete Hugging Face "
                                         "model folder (copy the whole snapshot).")
    return folder


def load_tokenizer(config: LLMConfig, path=None):
    from transformers import AutoTokenizer

    folder = path or config.tokenizer_path or config.path
    if folder is None:
        raise InputError("no tokenizer folder: set llm.tokenizer_path (or llm.path).")
    folder = _check_folder(folder, "tokenizer", ())
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise MissingDependencyError(f"no tokenizer could be read from {folder} ({type(exc).__name__}); copy the "
                                     "tokenizer files of the language model there.") from exc


def load_causal_lm(config: LLMConfig, dtype: torch.dtype, path=None) -> nn.Module:
    """The base LM from ``path``/``config.path`` or, without a path, randomly initialised from ``hf_config``.

    Built on whatever default device is active, so ``with torch.device("meta")`` builds a 7B-shaped model
    without allocating its weights.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = path or config.path
    if folder is not None:
        folder = _check_folder(folder, "language model", ("config.json",))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    else:
        data = dict(config.hf_config or {})
        model_type = data.pop("model_type", None)
        if not model_type:
            raise InputError("llm.hf_config needs a 'model_type' (e.g. 'llama').")
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **data), dtype=dtype)
    # Decoding settings come only from GenerationSettings: forget what the checkpoint ships (chat models set
    # sampling, temperature, top_p...), so nothing is inherited silently.
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig()
    return model


def apply_training_mode(model: nn.Module, config: LLMConfig) -> nn.Module:
    """Freeze / LoRA-wrap / leave trainable, and switch on gradient checkpointing."""
    if config.train == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.lora_target_modules), bias="none", task_type="CAUSAL_LM")
        try:
            model = get_peft_model(model, lora)
        except ValueError as exc:
            raise InputError(f"LoRA could not be applied ({exc}); set llm.lora_target_modules to module names of "
                             "this language model (LLaMA: q_proj, k_proj, v_proj, o_proj).") from exc
    elif config.train == "frozen":
        model.requires_grad_(False)
    if config.gradient_checkpointing:
        enable_checkpointing(model)
    return model


def enable_checkpointing(model: nn.Module) -> None:
    """Activation (gradient) checkpointing of the LM's layers, non-reentrant (works with inputs_embeds that carry
    gradients from the encoders); transformers 5 renamed the method."""
    hf = base_model(model)
    if hasattr(hf, "activation_checkpointing_enable"):
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_adapter(model: nn.Module, adapter_dir, trainable: bool = False) -> nn.Module:
    from peft import PeftModel

    folder = _check_folder(adapter_dir, "LoRA adapter", ("adapter_config.json",))
    if not any((folder / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin")):
        raise InputError(f"LoRA adapter folder {folder} has no adapter_model.safetensors; the checkpoint is "
                         "incomplete, save it again with save_pretrained().")
    try:
        return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise InputError(f"LoRA adapter {folder} does not fit this language model ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]}); load it with the base model it was trained on.") from exc


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def generation_config(settings: GenerationSettings, eos: int, pad: int, max_new_tokens: int,
                      suppress: list[int] | None = None):
    """Every decoding parameter set explicitly (none is left for a checkpoint's defaults to fill)."""
    from transformers import GenerationConfig

    sampling = {"temperature": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p} \
        if settings.do_sample else {}
    return GenerationConfig(
        max_new_tokens=int(max_new_tokens), min_new_tokens=int(settings.min_new_tokens),
        do_sample=bool(settings.do_sample), num_beams=int(settings.num_beams),
        repetition_penalty=float(settings.repetition_penalty),
        no_repeat_ngram_size=int(settings.no_repeat_ngram_size), length_penalty=float(settings.length_penalty),
        num_return_sequences=1, eos_token_id=int(eos), pad_token_id=int(pad), bos_token_id=None,
        suppress_tokens=list(suppress) if suppress else None, use_cache=True, **sampling,
    )
