"""Prompt and slot layout (no torch): special tokens, region slots, attribute sentences, alignment targets.

A prompt for one region of a CT reads (per_region layout; with region_context="own" only the asked slot is
shown, with "all" every slot is)::

    <s>The global information is provided as the context: <image>[G x <image_patch>]</image>. The region 0 is
    <region>[T x <region_patch>]</region>. {attribute sentence of slot 0} The region 1 is <region>...</region>.
    ... {instruction} Describe region 1.
    -> answer: The region 1 is {name}: {paragraph}</s>

Slots are numbered by position; in training their order is shuffled (Reg2RG region-report alignment), so the
model must recognise each region from its tokens and name it. The ``joint`` layout (Reg2RG) asks for every
slot at once and the answer is the answers of all slots in slot order, separated by a space. Only answer tokens
carry labels; every prompt position is -100.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field

from ..errors import InputError
from .config import PromptConfig

IGNORE_INDEX = -100
BOUNDARY_TOKENS = ("<image>", "</image>", "<region>", "</region>")
PLACEHOLDER_TOKENS = ("<image_patch>", "<region_patch>")
GLOBAL = "__global__"  # visual key of the <image> group


@dataclass(frozen=True)
class TokenIds:
    image_start: int
    image_end: int
    region_start: int
    region_end: int
    image_patch: int
    region_patch: int
    bos: int | None
    eos: int
    pad: int

    @property
    def boundary(self) -> tuple[int, int, int, int]:
        return (self.image_start, self.image_end, self.region_start, self.region_end)

    @property
    def placeholders(self) -> tuple[int, int]:
        return (self.image_patch, self.region_patch)


def add_special_tokens(tokenizer) -> TokenIds:
    """Add the slot tokens to ``tokenizer`` (once) and return their ids."""
    wanted = list(BOUNDARY_TOKENS + PLACEHOLDER_TOKENS)
    vocab = tokenizer.get_vocab()
    missing = [t for t in wanted if t not in vocab]
    if missing:
        # add_tokens(special_tokens=True) keeps any special tokens the tokenizer already has (add_special_tokens
        # would replace its "additional" list in some transformers versions)
        tokenizer.add_tokens(missing, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(wanted)
    if tokenizer.eos_token_id is None:
        raise InputError("the language model's tokenizer has no end-of-sequence token; use a causal LM tokenizer "
                         "with eos_token set.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return TokenIds(*ids, bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=pad)


def alignment_target(template: str, slot: int, name: str, paragraph: str) -> str:
    """Reg2RG's region-report alignment target, e.g. ``"The region 3 is lung: The lungs are clear."``."""
    return template.format(i=slot, name=name, paragraph=paragraph.strip())


def slot_order(keys: list[str], shuffle: bool, rng: random.Random | None = None) -> list[str]:
    """The region key of each slot: ``keys`` as given, or a random permutation when ``shuffle``."""
    order = list(keys)
    if shuffle:
        (rng or random).shuffle(order)
    return order


@dataclass
class Row:
    """One token sequence for the language model."""

    case_index: int
    slot_keys: list[str]  # region key of each slot, by slot number
    target_slots: list[int]  # slots whose answer this row asks for
    visual_keys: list[str]  # order of the visual groups in the sequence (GLOBAL, then region keys)
    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    answer: str = ""
    truncated: bool = False
    meta: dict = field(default_factory=dict)


class PromptBuilder:
    """Builds :class:`Row` objects for prepared cases."""

    def __init__(self, config: PromptConfig, tokenizer, ids: TokenIds, n_global: int, n_region: int,
                 max_length: int):
        if not config.answer.endswith("{paragraph}"):
            raise InputError("prompt.answer must end with '{paragraph}' so answers can be split back into regions; "
                             "fix the template in the model configuration.")
        self.config = config
        self.tokenizer = tokenizer
        self.ids = ids
        self.n_global = int(n_global)
        self.n_region = int(n_region)
        self.max_length = int(max_length)
        self._cache: dict[str, list[int]] = {}
        self._answer_re = _template_regex(config.answer.split("{paragraph}")[0])
        # strings that tokenise to control tokens: attribute text must never contain them (a "<region_patch>" in
        # an attribute would add a placeholder without its visual token and break the job)
        self.special_tokens = sorted({str(t) for t in list(getattr(tokenizer, "all_special_tokens", []))
                                      + list(tokenizer.get_added_vocab()) + list(BOUNDARY_TOKENS + PLACEHOLDER_TOKENS)
                                      if str(t)}, key=len, reverse=True)

    def clean(self, text: str | None) -> str:
        """Attribute text as it may enter a prompt: no special tokens, control bytes or slot prefixes."""
        if not text:
            return ""
        from ..report.grounding import sanitise

        return sanitise(str(text), self.special_tokens)

    def text(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self._cache[text]

    # --- layout ---------------------------------------------------------------------------------------
    def _prompt(self, case, slot_keys: list[str], context_slots: list[int], question_slot: int | None):
        if self.config.tokenize == "whole":
            return self._prompt_whole(case, slot_keys, context_slots, question_slot)
        cfg, ids = self.config, self.ids
        seq: list[int] = [] if ids.bos is None else [ids.bos]
        visual = [GLOBAL]
        seq += self.text(cfg.global_intro)
        seq += [ids.image_start] + [ids.image_patch] * self.n_global + [ids.image_end]
        seq += self.text(". ")
        for slot in context_slots:
            key = slot_keys[slot]
            seq += self.text(cfg.region_intro.format(i=slot))
            seq += [ids.region_start] + [ids.region_patch] * self.n_region + [ids.region_end]
            seq += self.text(". ")
            visual.append(key)
            sentence = self.clean(case.attributes.get(key)) if cfg.use_attributes else None
            if sentence:
                seq += self.text(sentence.strip() + " ")
        seq += self.text(cfg.instruction)
        if question_slot is not None:
            seq += self.text(" " + cfg.question.format(i=question_slot))
        return seq, visual

    def _prompt_whole(self, case, slot_keys, context_slots, question_slot):
        """The prompt as one string tokenised once (Reg2RG's dataset builds and tokenises it this way), so the
        text around the slot tokens gets exactly the tokens the published model was trained on."""
        cfg = self.config
        image, image_end, region, region_end = BOUNDARY_TOKENS
        image_patch, region_patch = PLACEHOLDER_TOKENS
        text = cfg.global_intro + image + image_patch * self.n_global + image_end + ". "
        visual = [GLOBAL]
        for slot in context_slots:
            key = slot_keys[slot]
            text += cfg.region_intro.format(i=slot) + region + region_patch * self.n_region + region_end + ". "
            visual.append(key)
            sentence = self.clean(case.attributes.get(key)) if cfg.use_attributes else None
            if sentence:
                text += sentence.strip() + " "
        text += cfg.instruction
        if question_slot is not None:
            text += " " + cfg.question.format(i=question_slot)
        seq = list(self.tokenizer(text)["input_ids"])
        want = self.n_global + self.n_region * len(context_slots)
        got = sum(t in self.ids.placeholders for t in seq)
        if got != want:
            raise InputError(f"the tokenizer split the prompt into {got} placeholder tokens instead of {want}; use "
                             "prompt.tokenize='pieces' with this tokenizer.")
        return seq, visual

    def _finish(self, case, case_index, slot_keys, targets, seq, visual, with_answer) -> Row:
        if len(seq) >= self.max_length:
            which = ", ".join(slot_keys[t] for t in targets)
            raise InputError(f"the prompt for {which} is {len(seq)} tokens, over llm.max_length={self.max_length}; "
                             "shorten the attribute text, reduce the visual tokens (slab pooling, fewer latents) or "
                             "raise llm.max_length.")
        answer = ""
        labels = [IGNORE_INDEX] * len(seq)
        prompt_length = len(seq)
        truncated = False
        if with_answer:
            parts = []
            for slot in targets:
                key = slot_keys[slot]
                if key not in case.paragraphs:
                    raise InputError(f"region {key!r} has no paragraph to train on; give case['paragraphs'][{key!r}] "
                                     "or drop the region.")
                parts.append(alignment_target(self.config.answer, slot, case.name_of(key), case.paragraphs[key]))
            answer = " ".join(parts)
            answer_ids = self.text(answer) + [self.ids.eos]
            room = self.max_length - len(seq)
            truncated = len(answer_ids) > room
            answer_ids = answer_ids[:room]
            seq = seq + answer_ids
            labels = labels + answer_ids
        return Row(case_index=case_index, slot_keys=list(slot_keys), target_slots=list(targets),
                   visual_keys=visual, input_ids=seq, labels=labels, prompt_length=prompt_length, answer=answer,
                   truncated=truncated)

    def rows(self, case, case_index: int = 0, train: bool = False, rng: random.Random | None = None,
             with_answer: bool | None = None) -> list[Row]:
        """Rows for one prepared case (per_region: one per region; joint: one)."""
        with_answer = train if with_answer is None else with_answer
        slot_keys = slot_order(case.keys, shuffle=train and self.config.shuffle_slots, rng=rng)
        all_slots = list(range(len(slot_keys)))
        if self.config.layout == "joint":
            seq, visual = self._prompt(case, slot_keys, all_slots, None)
            return [self._finish(case, case_index, slot_keys, all_slots, seq, visual, with_answer)]
        out = []
        for slot in all_slots:
            context = all_slots if self.config.region_context == "all" else [slot]
            seq, visual = self._prompt(case, slot_keys, context, slot)
            out.append(self._finish(case, case_index, slot_keys, [slot], seq, visual, with_answer))
        return out

    def check_budget(self, rows: list[Row], max_new_tokens: int) -> None:
        """InputError when a row's prompt leaves fewer than ``max_new_tokens`` tokens for the answer."""
        for row in rows:
            if len(row.input_ids) + int(max_new_tokens) > self.max_length:
                which = ", ".join(row.slot_keys[t] for t in row.target_slots)
                raise InputError(f"the prompt for {which} is {len(row.input_ids)} tokens; with {int(max_new_tokens)} "
                                 f"new tokens it exceeds llm.max_length={self.max_length} (the attribute text takes "
                                 "too much of it): shorten the attributes or lower generation.max_new_tokens.")

    # --- answers back into regions ------------------------------------------------------------------
    def parse(self, text: str, row: Row) -> dict[str, dict]:
        """Generated text -> {region key: {"name", "paragraph", "slot"}} for the row's target slots.

        Each answer names its slot number; an answer whose number is not one of the row's targets is ignored,
        and a target without a parsable answer gets the whole text (per_region) or an empty paragraph.
        """
        text = text.strip()
        found: dict[int, tuple[str, str]] = {}
        matches = list(self._answer_re.finditer(text))
        for m, nxt in zip(matches, matches[1:] + [None]):
            slot = int(m.group("i")) if m.groupdict().get("i") is not None else row.target_slots[0]
            end = nxt.start() if nxt is not None else len(text)
            found.setdefault(slot, (m.group("name").strip(), text[m.end():end].strip()))
        out = {}
        for slot in row.target_slots:
            key = row.slot_keys[slot]
            if slot in found:
                name, paragraph = found[slot]
            elif len(row.target_slots) == 1:
                name, paragraph = "", text
            else:
                name, paragraph = "", ""
            out[key] = {"name": name, "paragraph": paragraph, "slot": slot}
        return out


def _template_regex(prefix: str) -> re.Pattern:
    """Regex for the answer prefix template (``"The region {i} is {name}: "``); its trailing spaces are optional
    in generated text."""
    pattern = ""
    parts = list(string.Formatter().parse(prefix.rstrip()))
    for literal, field_name, _, _ in parts:
        pattern += re.escape(literal)
        if field_name == "i":
            pattern += r"(?P<i>\d+)"
        elif field_name == "name":
            pattern += r"(?P<name>.+?)"
        elif field_name:
            raise InputError(f"prompt.answer uses an unknown field {{{field_name}}}; use {{i}}, {{name}}, "
                             "{paragraph}.")
    return re.compile(pattern + r"\s*")
