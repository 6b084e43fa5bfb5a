"""Report generation: every region of every CT as rows of one batched ``generate`` call (left-padded), with
decoding settings passed explicitly, and the answers split back into {region: name, paragraph}. ``cancel`` is
checked after every decode step (a stopping criterion), so a cancel or a job's deadline stops at once."""

from __future__ import annotations

import torch

from ..progress import Steps
from .config import GenerationSettings
from .llm import generation_config
from .stopping import stopping_criteria


def generate_reports(model, cases, settings: GenerationSettings | None = None, progress=None,
                     cancel=None) -> list[dict[str, dict]]:
    """``[{region_key: {"name": identified name, "paragraph": text, "slot": slot number}}]``, one per case.

    Rows (one per region, or one per CT in the joint layout) from consecutive CTs are batched together up to
    ``settings.batch_size``; CTs are encoded as their rows are needed, so memory stays bounded.
    """
    settings = settings or model.config.generation
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _generate(model, list(cases), settings, progress, cancel)
    finally:
        model.train(was_training)


def _generate(model, cases, settings, progress, cancel) -> list[dict[str, dict]]:
    steps = Steps(progress, total=max(len(cases), 1), cancel=cancel, what="report generation")
    results: list[dict[str, dict]] = [{} for _ in cases]
    ids = model.ids
    # placeholders and boundary tokens that fall inside the LM's vocabulary must never be generated
    vocab = base_vocab_size(model)
    suppress = [t for t in ids.boundary + ids.placeholders if t < vocab]
    joint = model.config.prompt.layout == "joint"

    start = 0
    while start < len(cases):
        steps.report(0.0, f"preparing CT {start + 1} of {len(cases)}")
        # take CTs until their rows fill a batch
        prepared, rows, stop = [], [], start
        while stop < len(cases) and (not rows or len(rows) < settings.batch_size):
            case = model.prepare([cases[stop]])[0]
            prepared.append(case)
            rows += model.builder.rows(case, stop, train=False, with_answer=False)
            stop += 1
        visual = model.encode(prepared)
        for b0 in range(0, len(rows), settings.batch_size):
            batch = rows[b0:b0 + settings.batch_size]
            n_regions = max(len(r.target_slots) for r in batch)
            max_new = settings.max_new_tokens * (n_regions if joint else 1)
            model.builder.check_budget(batch, max_new)
            inputs = model.collate(batch, visual, padding_side="left", case_offset=start)
            gen = generation_config(settings, ids.eos, ids.pad, max_new, suppress)
            if settings.do_sample and settings.seed is not None:
                torch.manual_seed(settings.seed)
            criteria, stopper = stopping_criteria(cancel)
            out = model.llm.generate(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                                     generation_config=gen, stopping_criteria=criteria)
            stopper.raise_if_stopped()  # a cancel ends generate() within one decode step
            # decoder-only generate() with inputs_embeds returns only the new tokens
            texts = model.tokenizer.batch_decode(out, skip_special_tokens=True)
            for row, text in zip(batch, texts):
                results[row.case_index].update(model.builder.parse(text, row))
            steps.report((b0 + len(batch)) / len(rows), f"generated {b0 + len(batch)} of {len(rows)} sequences")
        for _ in range(stop - start):
            start += 1
            steps.advance(f"CT {start} of {len(cases)} done")
    return results


def base_vocab_size(model) -> int:
    from .llm import base_model

    return int(base_model(model.llm).get_output_embeddings().weight.shape[0])
