"""Tiny randomly initialised models written to local folders, and small synthetic cases.

For tests, benchmarks and demos that must run on a CPU with nothing downloaded: the folders are loaded by the
same code as real checkpoints (``from_pretrained`` on a local folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import MedRegionModelConfig, preset

SPECIALS = ("<pad>", "<s>", "</s>")


def train_tokenizer(texts, vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on ``texts`` (decodes back to the exact text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def write_tiny_llm(folder, texts, hidden_size: int = 64, layers: int = 2, heads: int = 4, vocab_size: int = 512,
                   seed: int = 0, generation_config: dict | None = None, init_range: float = 0.1) -> Path:
    """A LLaMA-architecture causal LM (random weights) and its tokenizer in ``folder``.

    ``init_range`` is larger than LLaMA's 0.02: with a frozen random output head at 0.02 the logits cannot
    exceed ~2.5, so no adapter could make the distribution peaked (a trained LM's head can); 0.1 lets a LoRA
    adapter on the tiny model learn text as it would on a real one.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = train_tokenizer(texts, vocab_size)
    tokenizer.save_pretrained(str(folder))
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(heads // 2, 1),
                      max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      tie_word_embeddings=False, initializer_range=init_range)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    if generation_config:
        GenerationConfig(**generation_config).save_pretrained(str(folder))
    return folder


# A ChatML template (Qwen-style), what instruction-tuned folders ship in tokenizer_config.json / chat_template.jinja.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' "
    "+ '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_SPECIALS = ("<|im_start|>", "<|im_end|>")


def write_tiny_chat_llm(folder, texts, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                        vocab_size: int = 512, seed: int = 0) -> Path:
    """A tiny instruction-tuned-style causal LM folder (random weights): a LLaMA-architecture model, a tokenizer
    with ChatML special tokens and chat template, and a generation config that ends at ``<|im_end|>`` -- the
    layout of Qwen2.5-Instruct / Llama-3-Instruct folders, for tests of the zero-shot writer."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = train_tokenizer(list(texts) + [t + " " for t in CHAT_SPECIALS], vocab_size)
    tokenizer.add_special_tokens({"additional_special_tokens": list(CHAT_SPECIALS)})
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(heads // 2, 1),
                      max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=end, tie_word_embeddings=False,
                      initializer_range=0.1)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    GenerationConfig(eos_token_id=end, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                     do_sample=True, temperature=0.7).save_pretrained(str(folder))
    return folder


def write_tiny_vision2d(folder, kind: str = "siglip", image_size: int = 32, patch_size: int = 8,
                        hidden_size: int = 32, layers: int = 1, seed: int = 0) -> Path:
    """A SigLIP- or DINOv2-architecture vision encoder (random weights) in ``folder``."""
    import torch
    from transformers import AutoModel, Dinov2Config, SiglipVisionConfig

    common = {"hidden_size": hidden_size, "intermediate_size": hidden_size * 2, "num_hidden_layers": layers,
              "num_attention_heads": 2, "image_size": image_size, "patch_size": patch_size}
    cfg = SiglipVisionConfig(**common) if kind == "siglip" else Dinov2Config(**common)
    torch.manual_seed(seed)
    AutoModel.from_config(cfg).save_pretrained(str(folder))
    return Path(folder)


def tiny_config(llm_path, vision2d_path=None, name: str = "hybrid", **sections: dict) -> MedRegionModelConfig:
    """A preset scaled down to a 16x16x8 grid and 8 slices (seconds on a CPU)."""
    small = {
        "preprocess": {"grid": (16, 16, 8), "num_slices": 8, "slice_size": 32, "body_margin_mm": 2.0},
        "vision2d": {"path": str(vision2d_path) if vision2d_path else None, "region_tokens": 2, "slab_size": 2,
                     "encoder_batch": 8},
        "vision3d": {"patch_size": (8, 8, 4), "hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 2,
                     "num_latents": 4, "perceiver_depth": 1, "perceiver_heads": 2, "perceiver_dim_head": 16},
        "mask": {"patch_size": (8, 8, 4), "hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 2,
                 "cnn_channels": (8, 16)},
        "llm": {"path": str(llm_path), "lora_r": 4, "lora_alpha": 8, "max_length": 1024},
        "prompt": {"instruction": "Report each region."},
        "generation": {"max_new_tokens": 48},
    }
    for section, changes in sections.items():
        small.setdefault(section, {}).update(changes)
    return preset(name, **small)


# --- synthetic cases ----------------------------------------------------------------------------------
REGION_NAMES = {"lung": "lung", "heart": "heart", "trachea": "trachea and bronchie"}


def synthetic_case(seed: int, shape=(40, 36, 24), spacing=(2.0, 2.0, 3.0)) -> dict:
    """A body with two lungs, a heart and a trachea; a nodule in one lung and, sometimes, a large heart.

    Returns a case mapping (volume, affine, regions, names, attributes, paragraphs) whose paragraphs state
    exactly what was planted.
    """
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    cx, cy = shape[0] / 2, shape[1] / 2
    hu = np.full(shape, -1000.0)
    body = ((x - cx) / (shape[0] * 0.45)) ** 2 + ((y - cy) / (shape[1] * 0.4)) ** 2 < 1
    hu[body] = 40.0
    lung_r = (((x - cx * 0.55) / (shape[0] * 0.17)) ** 2 + ((y - cy) / (shape[1] * 0.27)) ** 2 < 1) & (z > 2)
    lung_l = (((x - cx * 1.45) / (shape[0] * 0.17)) ** 2 + ((y - cy) / (shape[1] * 0.27)) ** 2 < 1) & (z > 2)
    lungs = lung_r | lung_l
    hu[lungs] = -850.0
    big_heart = bool(rng.integers(0, 2))
    radius = (0.2 if big_heart else 0.13) * shape[0]
    heart = ((x - cx) ** 2 + (y - cy * 1.3) ** 2 + (z - shape[2] * 0.3) ** 2 < radius ** 2) & body & ~lungs
    hu[heart] = 45.0
    trachea = ((x - cx) ** 2 + (y - cy * 0.85) ** 2 < 2.0 ** 2) & (z > shape[2] * 0.55)
    hu[trachea] = -1000.0
    side = "right" if rng.integers(0, 2) == 0 else "left"
    lung = lung_r if side == "right" else lung_l
    centre = np.argwhere(lung)[rng.integers(0, int(lung.sum()))]
    size_vox = int(rng.integers(1, 4))
    nodule = (np.abs(x - centre[0]) <= size_vox) & (np.abs(y - centre[1]) <= size_vox) & \
             (np.abs(z - centre[2]) <= max(size_vox - 1, 0)) & lung
    hu[nodule] = 30.0
    diameter = (2 * size_vox + 1) * spacing[0]
    paragraphs = {
        "lung": f"A {diameter:.0f} mm nodule is seen in the {side} lung. The rest of the lungs is clear.",
        "heart": "The heart is enlarged." if big_heart else "Heart size is normal.",
        "trachea": "The trachea is patent.",
    }
    attributes = {"lung": f"A nodule with a diameter of {diameter:.1f} mm is identified in the {side} lung."}
    hu += rng.normal(0, 5, shape)
    affine = np.diag([*spacing, 1.0])
    return {"volume": hu.astype(np.int16), "affine": affine,
            "regions": {"lung": lungs, "heart": heart, "trachea": trachea},
            "names": dict(REGION_NAMES), "attributes": attributes, "paragraphs": paragraphs,
            "truth": {"big_heart": big_heart, "nodule_side": side, "nodule_mm": diameter}}


def corpus_for(cases, config: MedRegionModelConfig | None = None) -> list[str]:
    """Texts a tiny tokenizer should be trained on so prompts and answers tokenise compactly."""
    from .config import PromptConfig

    prompt = config.prompt if config is not None else PromptConfig()
    texts = [prompt.global_intro, prompt.instruction, "Report each region.", ". "]
    for case in cases:
        for key, paragraph in case.get("paragraphs", {}).items():
            name = case.get("names", {}).get(key, key)
            for i in range(len(case["regions"])):
                texts.append(prompt.answer.format(i=i, name=name, paragraph=paragraph))
                texts.append(prompt.question.format(i=i))
                texts.append(prompt.region_intro.format(i=i))
        texts += [s + " " for s in case.get("attributes", {}).values()]
    return texts * 3


def write_tiny_folders(root, cases, kind: str = "siglip", hidden_size: int = 64) -> tuple[Path, Path]:
    """A tiny LM (tokenizer trained on the cases' texts) and a tiny 2D encoder under ``root``."""
    root = Path(root)
    llm = write_tiny_llm(root / "llm", corpus_for(cases), hidden_size=hidden_size)
    vision = write_tiny_vision2d(root / f"vision_{kind}", kind=kind)
    return llm, vision


# Published shapes (random weights): LLaMA-2-7B, SigLIP-so400m/14 at 384 px, Reg2RG's ViT-B 3D on 256x256x64.
LLAMA2_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
             "max_position_embeddings": 4096}
SIGLIP_SO400M_384 = {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                     "num_hidden_layers": 27, "num_attention_heads": 16, "image_size": 384, "patch_size": 14}


def seven_b_config(tokenizer_path, name: str = "hybrid") -> MedRegionModelConfig:
    """A full-size configuration with random weights (no download): build it under ``torch.device("meta")``."""
    return preset(name, vision2d={"hf_config": dict(SIGLIP_SO400M_384)},
                  llm={"hf_config": dict(LLAMA2_7B), "tokenizer_path": str(tokenizer_path), "lora_r": 16,
                       "lora_alpha": 32, "dtype": "bfloat16", "gradient_checkpointing": True})
