"""The zero-shot grounded writer: any instruction-tuned LLM writes each region's paragraph from the facts measured
on the CT (no trained projector, no image tokens).

Per region, the region's name and its facts -- the measurement reporter's statements, MedRegion-CT's
patient-specific attribute sentences (``measurements.sentences``) and the structured findings with side,
location and size -- go into the chat prompt of ``data/llm_prompts.json``. A *chat engine* turns the prompts into
text: a local Hugging Face folder with a chat template (``model.chat.LocalChatEngine``, torch) or an
OpenAI-compatible chat-completions endpoint (``client.chat.OpenAIChatEngine``: vLLM, TGI, Ollama, llama.cpp's
server, ``transformers serve``). What the LLM writes then goes through the same grounding check as every other
reporter (``pipeline.analyze``).

A chat engine has ``name``, ``special_tokens`` (strings to strip from its output), ``settings()`` and
``complete(conversations, max_new_tokens, progress=None, cancel=None) -> list[str]``.
"""

from __future__ import annotations

import warnings

from ..data import load_json
from ..progress import check_cancel
from .document import ASSESSED, Evidence, RegionReport, Sentence
from .grounding import sanitise
from .labeler import split_sentences

SIZE_WORDS = {"max_diameter_mm": ("maximum diameter", "mm"), "volume_ml": ("volume", "mL"),
              "diameter_mm": ("diameter", "mm"), "axial_long_axis_mm": ("axial long axis", "mm"),
              "axial_short_axis_mm": ("axial short axis", "mm")}


def prompts() -> dict:
    return load_json("llm_prompts.json")


def _finding_fact(f) -> str:
    parts = [f.kind.replace("_", " ")]
    if f.location:
        parts.append(f"in the {f.location}" if not f.location.startswith("the ") else f"in {f.location}")
    if f.side and f.side not in (f.location or ""):
        parts.append(f"side: {f.side}")
    for key, value in (f.size or {}).items():
        words, unit = SIZE_WORDS.get(key, (key.replace("_", " "), ""))
        parts.append(f"{words} {float(value):g} {unit}".strip())
    return "Finding: " + ", ".join(parts) + "."


def region_facts(case, reference: list[RegionReport]) -> dict[str, list[str]]:
    """Region key -> the fact lines for its prompt: the measurement reporter's statements, the attribute sentences
    not already among them, and one line per measured finding."""
    attributes = getattr(case.measurements, "sentences", {}) or {}
    out = {}
    for region in reference:
        lines = [s.text.strip() for s in region.sentences if s.text.strip()]
        lines += [a for a in attributes.get(region.key, []) if a not in lines]
        lines += [_finding_fact(f) for f in region.findings]
        out[region.key] = lines
    return out


def chat_messages(name: str, facts, special_tokens=()) -> list[dict]:
    """The chat of one region: system rules, then the region's name and facts (cleaned of special tokens)."""
    table = prompts()
    lines = facts.splitlines() if isinstance(facts, str) else list(facts)
    lines = [sanitise(line, special_tokens) for line in lines]
    text = "\n".join(table["fact_prefix"] + line for line in lines if line) or table["no_facts"]
    name = sanitise(str(name), special_tokens) or "this region"
    return [{"role": "system", "content": table["system"]},
            {"role": "user", "content": table["user"].format(name=name, facts=text)}]


def measured_reference(case) -> list[RegionReport]:
    """The measurement reporter's regions for ``case`` (the facts, and what regions cannot be assessed)."""
    from .measurement_reporter import MeasurementReporter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MeasurementReporter().write(case)


class LLMReporter:
    """``pipeline.analyze(..., reporter="llm:DIR")``: one paragraph per assessed region, written by ``engine``.

    Regions that cannot be assessed (outside the field of view, not segmented) keep the measurement reporter's
    statement of why: nothing is asked of the LLM there.
    """

    name = "llm"

    def __init__(self, engine, max_new_tokens: int | None = None):
        self.engine = engine
        self.max_new_tokens = int(max_new_tokens or prompts()["max_new_tokens"])

    def settings(self) -> dict:
        return {"engine": self.engine.settings(), "max_new_tokens": self.max_new_tokens,
                "prompt": "data/llm_prompts.json"}

    def write(self, case, progress=None, cancel=None) -> list[RegionReport]:
        reference = measured_reference(case)
        facts = region_facts(case, reference)
        todo = [r for r in reference if r.status == ASSESSED]
        special = tuple(getattr(self.engine, "special_tokens", ()))
        conversations = [chat_messages(r.name, facts[r.key], special) for r in todo]
        check_cancel(cancel, "the LLM report")
        texts = self.engine.complete(conversations, self.max_new_tokens, progress=progress, cancel=cancel) \
            if conversations else []
        written = {r.key: sanitise(t, special) for r, t in zip(todo, texts, strict=True)}
        out = []
        for region in reference:
            if region.key not in written:
                out.append(RegionReport(region.key, region.name, status=region.status, sentences=[
                    Sentence(s.text, s.evidence, kind=s.kind) for s in region.sentences], evidence=region.evidence))
                continue
            evidence = Evidence(masks=[f"region:{region.key}"])
            sentences = [Sentence(s, Evidence(masks=[f"region:{region.key}"])) for s in
                         split_sentences(written[region.key])]
            out.append(RegionReport(region.key, region.name, status=ASSESSED if sentences else "not_assessed",
                                    sentences=sentences, evidence=evidence))
        return out
