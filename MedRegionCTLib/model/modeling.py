"""The region-focused multimodal model: encoders -> projected token groups spliced into a causal LM.

Public API (Hugging Face style)::

    model = MedRegionModel.from_config(config)            # weights from the local folders the config names
    model = MedRegionModel.from_pretrained("ckpt/")        # a folder written by save_pretrained
    model.save_pretrained("ckpt/")
    out = model(model.build_inputs(model.prepare(cases), train=True))   # out.loss: answer tokens only
    reports = model.generate_reports(cases)  # [{region_key: {"name", "paragraph", "slot"}}] per case

A *case* is a mapping: ``volume`` (Volume, or HU array + ``affine``), ``regions`` {key: boolean mask on the CT
grid}, and optionally ``names``, ``attributes`` (one sentence per region) and ``paragraphs`` (training
targets) keyed the same way; a :class:`~.preprocess.PreparedCase` (what a client sends) is accepted as well.

Token groups: ``<image>`` holds the global tokens (R2 per-slice/slab tokens, then 3D-ViT/Perceiver latents of
the whole volume); each ``<region>`` slot holds, in order, R2 mask-pooled tokens, the crop's texture latents
and the mask-encoder tokens. Each source has its own projector to the LM's hidden size.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .config import MedRegionModelConfig
from .llm import apply_training_mode, base_model, load_causal_lm, load_tokenizer, resolve_dtype
from .mask_encoder import MaskEncoder
from .preprocess import PreparedCase, prepare_case
from .projector import build_projector
from .prompt import GLOBAL, IGNORE_INDEX, PromptBuilder, Row, add_special_tokens
from .vision2d import R2TokenPooling, load_vision_encoder
from .vision3d import TextureEncoder


@dataclass
class ModelInputs:
    """A padded batch of rows, ready for the language model."""

    rows: list[Row]
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L), IGNORE_INDEX outside the answers
    inputs_embeds: torch.Tensor  # (B, L, H)
    group_masks: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, L) bool per token group
    visual: list[dict[str, torch.Tensor]] = field(default_factory=list)  # per case: group -> (n, H)


class MedRegionModel(nn.Module):
    def __init__(self, config: MedRegionModelConfig, llm: nn.Module, tokenizer, vision2d_encoder=None):
        super().__init__()
        config.validate()
        self.config = config
        self.tokenizer = tokenizer
        self.ids = add_special_tokens(tokenizer)
        self.llm = llm
        text_config = base_model(llm).config
        text_config = text_config.get_text_config() if hasattr(text_config, "get_text_config") else text_config
        hidden = int(text_config.hidden_size)
        self.hidden_size = hidden
        kind = config.projector.kind
        self.projectors = nn.ModuleDict()
        self.vision2d = self.vision3d = self.mask_encoder = None
        if config.vision2d.enabled:
            self.vision2d = R2TokenPooling(config.vision2d, encoder=vision2d_encoder)
            # the client must prepare slices at the encoder's size: record it in the (saved) configuration
            config.preprocess.slice_size = self.vision2d.image_size
            self.projectors["vision2d"] = build_projector(kind, self.vision2d.hidden_size, hidden)
        if config.vision3d.enabled:
            self.vision3d = TextureEncoder(config.vision3d, config.preprocess.grid)
            self.projectors["vision3d"] = build_projector(kind, self.vision3d.hidden_size, hidden)
        if config.mask.enabled:
            self.mask_encoder = MaskEncoder(config.mask, config.preprocess.grid)
            self.projectors["mask"] = build_projector(kind, self.mask_encoder.hidden_size, hidden)
        # The slot boundary tokens get their own trainable embeddings (as Reg2RG's image/region token
        # weights), so the LM's vocabulary matrix stays frozen under LoRA and is never resized.
        self.special_embed = nn.Embedding(len(self.ids.boundary), hidden)
        with torch.no_grad():
            table = base_model(llm).get_input_embeddings().weight
            mean = table.float().mean(0).to(self.special_embed.weight.device)  # HF's advice for new tokens
            self.special_embed.weight.copy_(mean.expand(len(self.ids.boundary), -1))
        self.register_buffer("_boundary_ids", torch.tensor(self.ids.boundary), persistent=False)
        self.register_buffer("_placeholder_ids", torch.tensor(self.ids.placeholders), persistent=False)
        self.builder = PromptBuilder(config.prompt, tokenizer, self.ids, config.num_global_tokens(),
                                     config.num_region_tokens(), config.llm.max_length)

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: MedRegionModelConfig, device=None) -> MedRegionModel:
        """Build from the local folders (or random-weight hf_config dicts) that ``config`` names.

        Inside ``with torch.device("meta"):`` nothing is allocated (size a 7B model without 28 GB of RAM).
        """
        config = MedRegionModelConfig.from_dict(config.to_dict())  # own copy: building fills slice_size
        config.check_buildable()
        dtype = resolve_dtype(config.llm.dtype, device)
        tokenizer = load_tokenizer(config.llm)
        llm = apply_training_mode(load_causal_lm(config.llm, dtype), config.llm)
        encoder = load_vision_encoder(config.vision2d) if config.vision2d.enabled else None
        model = cls(config, llm, tokenizer, vision2d_encoder=encoder)
        return model.to(device) if device is not None else model

    @classmethod
    def from_pretrained(cls, directory, device=None, llm_path=None, vision2d_path=None,
                        trainable: bool = False) -> MedRegionModel:
        """Load a folder written by :meth:`save_pretrained`; ``llm_path``/``vision2d_path`` override where the
        base weights live on this machine."""
        from .checkpoint import load_checkpoint

        return load_checkpoint(directory, device=device, llm_path=llm_path, vision2d_path=vision2d_path,
                               trainable=trainable)

    def save_pretrained(self, directory) -> None:
        from .checkpoint import save_checkpoint

        save_checkpoint(self, directory)

    # --- helpers ------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.special_embed.weight.device

    @property
    def llm_dtype(self) -> torch.dtype:
        return base_model(self.llm).get_input_embeddings().weight.dtype

    def _autocast(self):
        if self.device.type == "cuda" and self.llm_dtype in (torch.bfloat16, torch.float16):
            return torch.autocast("cuda", dtype=self.llm_dtype)
        return contextlib.nullcontext()

    def num_parameters_by_part(self) -> dict[str, tuple[int, int]]:
        """{part: (all parameters, trainable parameters)}."""
        parts: dict[str, list[int]] = {}
        for name, p in self.named_parameters():
            part = name.split(".")[0]
            if part == "projectors":
                part = "projector." + name.split(".")[1]
            n = p.numel()
            entry = parts.setdefault(part, [0, 0])
            entry[0] += n
            entry[1] += n if p.requires_grad else 0
        return {k: (v[0], v[1]) for k, v in parts.items()}

    # --- preprocessing ------------------------------------------------------------------------------
    def prepare(self, cases) -> list[PreparedCase]:
        """Cases (mappings) -> PreparedCase on this model's grids; PreparedCase objects pass through."""
        need = self.config.needed_inputs()
        out = []
        for case in cases:
            if isinstance(case, PreparedCase):
                missing = need - set(case.arrays)
                if missing:
                    raise InputError(f"prepared case lacks arrays {sorted(missing)} that this model needs; prepare "
                                     "it with the model's own configuration.")
                out.append(case)
            else:
                out.append(prepare_case(case, self.config.preprocess, need))
        return out

    # --- encoders -----------------------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32)).to(self.device)

    def encode(self, prepared: list[PreparedCase]) -> list[dict[str, torch.Tensor]]:
        """Per case: {GLOBAL: (G, H), region key: (T, H)} in the LM's hidden size and dtype."""
        cfg = self.config
        groups: list[dict[str, list[torch.Tensor]]] = [{GLOBAL: [], **{k: [] for k in c.keys}} for c in prepared]
        with self._autocast():
            if self.vision2d is not None:
                for case, g in zip(prepared, groups):
                    glob, regions = self.vision2d(self._tensor(case.arrays["slices"]),
                                                  self._tensor(case.arrays["slice_masks"]))
                    g[GLOBAL].append(self.projectors["vision2d"](glob))
                    proj = self.projectors["vision2d"](regions)
                    for i, key in enumerate(case.keys):
                        g[key].append(proj[i])
            if self.vision3d is not None:
                # every crop (and global volume) of the batch through the ViT together
                vols, owners = [], []
                for ci, case in enumerate(prepared):
                    if cfg.vision3d.global_tokens:
                        vols.append(case.arrays["image"][None])
                        owners.append((ci, GLOBAL))
                    vols.append(case.arrays["crops"])
                    owners += [(ci, k) for k in case.keys]
                latents = self.projectors["vision3d"](self.vision3d(self._tensor(np.concatenate(vols))))
                for (ci, key), lat in zip(owners, latents):
                    groups[ci][key].append(lat)
            if self.mask_encoder is not None:
                masks = self._tensor(np.concatenate([c.arrays["masks"] for c in prepared]))
                tokens = self.projectors["mask"](self.mask_encoder(masks))
                owners = [(ci, k) for ci, c in enumerate(prepared) for k in c.keys]
                for (ci, key), tok in zip(owners, tokens):
                    groups[ci][key].append(tok)
        dtype = self.llm_dtype
        return [{k: torch.cat(v, 0).to(dtype) for k, v in g.items()} for g in groups]

    # --- sequences ----------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, visual_seq: torch.Tensor) -> torch.Tensor:
        """Token embeddings with boundary tokens from ``special_embed`` and placeholders replaced, in order, by
        the rows of ``visual_seq`` (N, H)."""
        is_boundary = torch.isin(input_ids, self._boundary_ids)
        is_patch = torch.isin(input_ids, self._placeholder_ids)
        if int(is_patch.sum()) != visual_seq.shape[0]:
            raise InputError(f"{int(is_patch.sum())} placeholder tokens but {visual_seq.shape[0]} visual tokens; "
                             "the prompt and the model configuration disagree (rebuild the inputs with this model).")
        table = base_model(self.llm).get_input_embeddings()
        emb = table(input_ids.masked_fill(is_boundary | is_patch, 0))
        if bool(is_boundary.any()):
            which = (input_ids[is_boundary].unsqueeze(-1) == self._boundary_ids).int().argmax(-1)
            emb = emb.masked_scatter(is_boundary.unsqueeze(-1), self.special_embed(which).to(emb.dtype))
        return emb.masked_scatter(is_patch.unsqueeze(-1), visual_seq.to(emb.dtype))

    def rows_for(self, prepared: list[PreparedCase], train: bool = False, rng: random.Random | None = None,
                 with_answer: bool | None = None) -> list[Row]:
        rows = []
        for ci, case in enumerate(prepared):
            rows += self.builder.rows(case, ci, train=train, rng=rng, with_answer=with_answer)
        return rows

    def collate(self, rows: list[Row], visual: list[dict[str, torch.Tensor]], padding_side: str = "right",
                case_offset: int = 0) -> ModelInputs:
        """Pad ``rows`` and splice their visual groups (``visual[row.case_index - case_offset]``)."""
        ids = self.ids
        length = max(len(r.input_ids) for r in rows)
        b = len(rows)
        input_ids = torch.full((b, length), ids.pad, dtype=torch.long)
        labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((b, length), dtype=torch.long)
        pieces = []
        for i, row in enumerate(rows):
            n = len(row.input_ids)
            sl = slice(length - n, length) if padding_side == "left" else slice(0, n)
            input_ids[i, sl] = torch.tensor(row.input_ids)
            labels[i, sl] = torch.tensor(row.labels)
            attention[i, sl] = 1
            groups = visual[row.case_index - case_offset]
            pieces += [groups[k] for k in row.visual_keys]
        input_ids, labels, attention = (t.to(self.device) for t in (input_ids, labels, attention))
        embeds = self.embed(input_ids, torch.cat(pieces, 0))
        is_global = input_ids == ids.image_patch
        is_region = input_ids == ids.region_patch
        is_boundary = torch.isin(input_ids, self._boundary_ids)
        pad = attention == 0
        masks = {"global": is_global, "region": is_region, "boundary": is_boundary, "pad": pad,
                 "answer": labels != IGNORE_INDEX, "text": ~(is_global | is_region | is_boundary | pad)}
        return ModelInputs(rows=rows, input_ids=input_ids, attention_mask=attention, labels=labels,
                           inputs_embeds=embeds, group_masks=masks, visual=visual)

    def build_inputs(self, prepared: list[PreparedCase], train: bool = False, rng: random.Random | None = None,
                     with_answer: bool | None = None, padding_side: str = "right") -> ModelInputs:
        """Encode the cases and lay out their rows (shuffled slots and answers when ``train``)."""
        prepared = self.prepare(prepared)
        visual = self.encode(prepared)
        rows = self.rows_for(prepared, train=train, rng=rng, with_answer=with_answer)
        return self.collate(rows, visual, padding_side=padding_side)

    def forward(self, inputs: ModelInputs):
        """Causal-LM output; ``loss`` is the mean cross-entropy over answer tokens only."""
        has_answer = bool((inputs.labels != IGNORE_INDEX).any())
        return self.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                        labels=inputs.labels if has_answer else None, use_cache=False)

    def loss(self, cases, rng: random.Random | None = None) -> torch.Tensor:
        """Training loss on cases with paragraphs (slots shuffled with ``rng``)."""
        return self(self.build_inputs(self.prepare(cases), train=True, rng=rng)).loss

    # --- generation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_reports(self, cases, settings=None, progress=None, cancel=None) -> list[dict[str, dict]]:
        """One ``{region_key: {"name", "paragraph", "slot"}}`` per case, for every region with a non-empty mask."""
        from .generation import generate_reports

        return generate_reports(self, cases, settings=settings, progress=progress, cancel=cancel)
