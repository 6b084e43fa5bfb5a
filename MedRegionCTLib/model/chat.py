"""A local instruction-tuned causal LM as a chat engine (Llama-3.x-Instruct, Qwen2.5-Instruct, MedGemma, ...):
any Hugging Face folder with a chat template, loaded from disk only, prompts rendered with its own template,
greedy batched generation that a cancel stops within one decode step."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError, MissingDependencyError
from ..progress import Steps
from .llm import resolve_dtype
from .stopping import stopping_criteria


def _device(device: str | None) -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} was asked for but torch sees no CUDA GPU; use --device cpu or run on "
                         "a GPU machine with a CUDA build of torch.")
    if device != "cpu" and not str(device).startswith("cuda"):
        raise InputError(f"unknown device {device!r}; use cuda, cuda:N or cpu.")
    return str(device)


class LocalChatEngine:
    """``folder``: a Hugging Face causal-LM folder with ``config.json``, weights and a tokenizer with a chat template.

    ``batch_size``: conversations per ``generate`` call (left-padded). ``dtype``: "auto" (bfloat16 on CUDA,
    float32 on CPU), "bfloat16", "float16" or "float32".
    """

    name = "local"

    def __init__(self, folder, device: str | None = None, dtype: str = "auto", batch_size: int = 8):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(folder).expanduser()
        if not (self.folder / "config.json").is_file():
            raise MissingDependencyError(f"{self.folder} is not a Hugging Face model folder (no config.json); give the "
                                         "local folder of an instruction-tuned causal LM (nothing is downloaded).")
        self.device = _device(device)
        self.batch_size = max(int(batch_size), 1)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise MissingDependencyError(f"no tokenizer could be read from {self.folder} ({type(exc).__name__}); copy "
                                         "the model's tokenizer files there.") from exc
        if not getattr(self.tokenizer, "chat_template", None):
            raise InputError(f"{self.folder} has no chat template: it is a base model, not an instruction-tuned one; "
                             "give an -Instruct/-it folder (its tokenizer_config.json or chat_template.jinja holds "
                             "the template).")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype_ = resolve_dtype(dtype, self.device)
        self.model = AutoModelForCausalLM.from_pretrained(str(self.folder), dtype=dtype_, local_files_only=True)
        self.model.to(self.device).eval()
        shipped = self.model.generation_config.eos_token_id  # chat models end turns with their own token(s)
        eos = shipped if shipped is not None else self.tokenizer.eos_token_id
        self.eos = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
        if not self.eos:
            raise InputError(f"{self.folder} names no end-of-sequence token; its generation_config.json or tokenizer "
                             "must set eos_token_id.")
        text_config = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") \
            else self.model.config
        self.context = int(getattr(text_config, "max_position_embeddings", 0) or self.tokenizer.model_max_length)
        self.special_tokens = tuple(sorted({str(t) for t in list(self.tokenizer.all_special_tokens)
                                            + list(self.tokenizer.get_added_vocab()) if str(t)}, key=len,
                                           reverse=True))

    def settings(self) -> dict:
        return {"engine": self.name, "model": self.folder.name, "device": self.device,
                "dtype": str(self.model.dtype).replace("torch.", ""), "decoding": "greedy"}

    # --- prompts -------------------------------------------------------------------------------------------
    def render(self, messages: list[dict]) -> str:
        """The prompt text in the model's own chat template (system text folded into the first user turn for
        templates that have no system role, as Gemma's)."""
        from jinja2 import TemplateError

        try:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except TemplateError:
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            rest = [dict(m) for m in messages if m["role"] != "system"]
            if system and rest:
                rest[0]["content"] = system + "\n\n" + rest[0]["content"]
            return self.tokenizer.apply_chat_template(rest, add_generation_prompt=True, tokenize=False)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"])

    def check_budget(self, messages: list[dict], max_new_tokens: int) -> int:
        n = self.count_tokens(messages)
        if n + int(max_new_tokens) > self.context:
            raise InputError(f"the prompt is {n} tokens; with {int(max_new_tokens)} new tokens it exceeds the model's "
                             f"context of {self.context} tokens: shorten the facts or lower max_new_tokens.")
        return n

    # --- generation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def complete(self, conversations: list[list[dict]], max_new_tokens: int, progress=None, cancel=None) -> list[str]:
        from transformers import GenerationConfig

        steps = Steps(progress, total=max(len(conversations), 1), cancel=cancel, what="the LLM report")
        out: list[str] = []
        for start in range(0, len(conversations), self.batch_size):
            batch = conversations[start:start + self.batch_size]
            steps.report(0.0, f"writing regions {start + 1}-{start + len(batch)} of {len(conversations)}")
            for messages in batch:
                self.check_budget(messages, max_new_tokens)
            enc = self.tokenizer([self.render(m) for m in batch], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            gen = GenerationConfig(max_new_tokens=int(max_new_tokens), do_sample=False, num_beams=1,
                                   eos_token_id=self.eos, pad_token_id=int(self.tokenizer.pad_token_id),
                                   repetition_penalty=1.0, use_cache=True)
            criteria, stopper = stopping_criteria(cancel)
            tokens = self.model.generate(**enc, generation_config=gen, stopping_criteria=criteria)
            stopper.raise_if_stopped("the LLM report")
            new = tokens[:, enc["input_ids"].shape[1]:]
            out += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
            for _ in batch:
                steps.advance(f"{len(out)} of {len(conversations)} regions written")
        return out
