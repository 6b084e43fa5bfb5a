"""The one configuration object of the region-focused multimodal model (no torch import: the client shares it).

Both published designs are settings of the same model:

- ``preset("medregion")``: MedRegion-CT -- R2 token pooling over a 2D slice encoder (one pooled token per
  slice or slab for the global view, mask-weighted region tokens), a mask encoder, attribute sentences.
- ``preset("reg2rg")``: Reg2RG -- region crops through a 3D ViT and a Perceiver resampler (32 latents), a
  geometry token from the mask, the global volume through the same path, joint "The region i is ..." answers.
- ``preset("hybrid")``: both vision paths at once.

The configuration is plain data: :meth:`MedRegionModelConfig.to_dict` / :meth:`from_dict` round-trip through
JSON, and unknown keys are an error (so a checkpoint from another version fails loudly, not silently).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

CONFIG_NAME = "medregion_config.json"
FORMAT_VERSION = 1

# Reg2RG's instruction (train_radgenome dataset), kept verbatim so the Reg2RG preset reproduces its prompt.
REG2RG_INSTRUCTION = (
    "Given the provided global and regional information from this CT scan, please generate a comprehensive "
    "medical report for each region. First, identify the anatomical area corresponding to each region, then "
    "provide detailed information about these anatomical structures and any abnormalities that are essential. "
    "You can refer to the global information as the context and take it as a supplement when generating each "
    "region report."
)


@dataclass
class PreprocessConfig:
    """Exact preprocessing (implemented in :mod:`.preprocess`, numpy/scipy/scikit-image only).

    1. Reorient to RAS (closest canonical axes, nibabel), so slice k is ``array[:, :, k]`` (inferior -> superior).
    2. Body crop: the largest 3D connected component of ``HU > body_threshold_hu`` (found on every second
       voxel), its bounding box grown by ``body_margin_mm``; the global image, the slices and the global-grid
       masks are cut to that box.
    3. Intensities: ``clip(HU, hu_min, hu_max)``; the 3D image is ``(clipped - norm_offset) / norm_scale``
       (Reg2RG: [-1000, 200] HU, (x + 400) / 600 -> [-1, 1]); the 2D slices are ``(clipped - hu_min) /
       (hu_max - hu_min)`` in [0, 1] (the 2D encoder then applies its own mean/std).
    4. Resampling to the model grid: local mean over each output voxel's footprint when shrinking (area
       averaging, no aliasing), linear when enlarging; masks become occupancy fractions in [0, 1], never
       thresholded, so thin or small regions keep their weight.
    5. Region crops (texture path): the region's bounding box at full resolution grown by ``region_margin_mm``,
       voxels outside the mask set to ``hu_min`` when ``mask_outside_region`` (Reg2RG), resized to ``grid``.
    """

    hu_min: float = -1000.0
    hu_max: float = 200.0
    norm_offset: float = -400.0
    norm_scale: float = 600.0
    body_threshold_hu: float = -500.0
    body_margin_mm: float = 5.0
    region_margin_mm: float = 0.0
    mask_outside_region: bool = True
    # (X, Y, Z) in RAS voxel order: the 3D ViT, the mask encoder and the region crops use this grid.
    grid: tuple[int, int, int] = (256, 256, 64)
    # Axial slices given to the 2D encoder: how many, and their height = width (set from the encoder's image
    # size when the model is built, and saved with it, so a client prepares exactly what the model takes).
    num_slices: int = 64
    slice_size: int = 224
    # Reg2RG's own preprocessing (preset "reg2rg" imported with its published weights) differs in five points; the
    # defaults are this project's, the alternatives reproduce Reg2RG's RadGenome-ChestCT test dataset exactly:
    orientation: str = "ras"  # "ras" | "as_stored" (the array as the file stores it, as nibabel's dataobj)
    body_box: str = "largest_component"  # | "foreground": every voxel > body_threshold_hu (MONAI CropForeground)
    resample: str = "area"  # exact area overlap | "adaptive": adaptive average pooling (MONAI Resize mode "area")
    clip_before_resize: bool = True  # False: resample raw HU, then clip and normalise (Reg2RG)
    region_box: str = "mask"  # | "foreground": box of the mask's voxels above body_threshold_hu (Reg2RG)
    outside_region_hu: float | None = None  # HU outside the region in crops (None: hu_min; Reg2RG: -1024)

    def describe(self, needed=("image", "masks", "crops", "slices", "slice_masks")) -> list[str]:
        """The exact preprocessing of this configuration, one step per line (for model cards and logs)."""
        gx, gy, gz = self.grid
        lines = [
            "reorient to RAS (closest canonical axes, no interpolation)" if self.orientation == "ras" else
            "array axes as stored in the file (no reorientation)",
            f"body box: largest connected component of HU > {self.body_threshold_hu:g} (every 2nd voxel), "
            f"grown by {self.body_margin_mm:g} mm" if self.body_box == "largest_component" else
            f"body box: every voxel with HU > {self.body_threshold_hu:g}, grown by {self.body_margin_mm:g} mm",
        ]
        if self.resample == "adaptive":
            lines.append("resampling: adaptive average pooling (torch area interpolation)"
                         + ("" if self.clip_before_resize else "; raw HU resampled before clipping"))
        if "image" in needed:
            lines.append(f"image: body box, clip HU to [{self.hu_min:g}, {self.hu_max:g}], (HU - {self.norm_offset:g})"
                         f" / {self.norm_scale:g}, area-resampled to {gx}x{gy}x{gz}")
        if "masks" in needed:
            lines.append(f"masks: body box, occupancy area-resampled to {gx}x{gy}x{gz}")
        if "crops" in needed:
            outside = f"voxels outside the region set to {self.hu_min:g} HU, " if self.mask_outside_region else ""
            lines.append(f"crops: each region's box grown by {self.region_margin_mm:g} mm at full resolution, "
                         f"{outside}same intensities as the image, resampled to {gx}x{gy}x{gz}")
        if "slices" in needed:
            lines.append(f"slices: body box, clip HU to [{self.hu_min:g}, {self.hu_max:g}] -> [0, 1], "
                         f"{self.num_slices} axial slices of {self.slice_size}x{self.slice_size}, radiological view")
        if "slice_masks" in needed:
            lines.append(f"slice masks: occupancy on the same {self.num_slices} slices")
        return lines


@dataclass
class Vision2DConfig:
    """MedRegion-CT R2 token pooling over a Hugging Face 2D vision encoder run slice by slice."""

    enabled: bool = False
    path: str | None = None  # local folder with a HF vision model (SigLIP-, DINOv2-class)
    hf_config: dict | None = None  # or a config dict ({"model_type": ...}) for a randomly initialised encoder
    freeze: bool = True
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    global_pooling: str = "slice"  # "slice": one token per slice; "slab": one per slab_size slices
    slab_size: int = 4
    region_tokens: int = 4  # mask-weighted pooled tokens per region (contiguous slabs of the region's extent)
    encoder_batch: int = 32  # slices per encoder call (memory)


@dataclass
class Vision3DConfig:
    """Reg2RG texture path: MONAI 3D ViT on the grid, Perceiver resampler to ``num_latents`` tokens."""

    enabled: bool = False
    in_channels: int = 1
    patch_size: tuple[int, int, int] = (32, 32, 4)
    hidden_size: int = 768
    mlp_dim: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    dropout: float = 0.0
    pretrained: str | None = None  # safetensors state dict of the ViT (e.g. converted RadFM weights)
    freeze: bool = False
    num_latents: int = 32
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    global_tokens: bool = True  # the whole (body-cropped) volume through the same path
    # "monai": MONAI's ViT; "radfm": the RadFM-style ViT Reg2RG uses (normalised patch embedding, a learned
    # position table per axis of ``pos_grid`` patches read at strided positions, pre-norm blocks, no final norm)
    kind: str = "monai"
    dim_head: int = 64  # radfm: attention width per head (heads x dim_head need not equal hidden_size)
    pos_grid: tuple[int, int, int] | None = None  # radfm: patches per axis of the position tables (default: grid)


@dataclass
class MaskEncoderConfig:
    """Geometry tokens: the region mask on the global grid through a small 3D ViT or CNN."""

    enabled: bool = False
    kind: str = "vit"  # "vit" (MONAI ViT), "radfm" (Reg2RG's own mask ViT) or "cnn"
    num_tokens: int = 1
    patch_size: tuple[int, int, int] = (32, 32, 16)
    hidden_size: int = 256
    mlp_dim: int = 512
    num_layers: int = 3
    num_heads: int = 8
    cnn_channels: tuple[int, ...] = (16, 32, 64, 128)
    dim_head: int = 64  # radfm
    pos_grid: tuple[int, int, int] | None = None  # radfm


@dataclass
class ProjectorConfig:
    kind: str = "mlp2x_gelu"  # "linear" (Reg2RG's fc) or "mlp2x_gelu" (LLaVA-1.5)


@dataclass
class LLMConfig:
    path: str | None = None  # local folder with a causal LM (LLaMA-2/3 class)
    hf_config: dict | None = None  # or a config dict for a randomly initialised LM (tests, benchmarks)
    tokenizer_path: str | None = None  # defaults to ``path``
    dtype: str = "auto"  # "auto": bfloat16 on CUDA, float32 on CPU
    train: str = "lora"  # "lora", "frozen" or "full"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    gradient_checkpointing: bool = False
    max_length: int = 2048


@dataclass
class PromptConfig:
    """Slot layout. ``{i}`` is the slot number, ``{name}`` the region name, ``{paragraph}`` its report."""

    layout: str = "per_region"  # "per_region": one sequence per region; "joint": one per CT (Reg2RG)
    # per_region: only the asked region's slot in each prompt ("own", MedRegion-CT style; 10x shorter prefill), or
    # every region's slot ("all"), which makes the model find slot i among all of them first
    region_context: str = "own"
    shuffle_slots: bool = True  # random slot order in training (Reg2RG region-report alignment)
    use_attributes: bool = True  # MedRegion-CT: an attribute sentence after each region slot
    global_intro: str = "The global information is provided as the context: "
    region_intro: str = "The region {i} is "
    instruction: str = REG2RG_INSTRUCTION
    question: str = "Describe region {i}."
    answer: str = "The region {i} is {name}: {paragraph}"
    # "pieces": each text piece tokenised on its own (cached); "whole": the prompt as one string with the slot
    # tokens in it, tokenised once with the tokenizer's own special tokens (BOS), as Reg2RG's dataset does
    tokenize: str = "pieces"


@dataclass
class GenerationSettings:
    """Decoding settings passed explicitly on every call (a checkpoint's generation_config is never used)."""

    max_new_tokens: int = 256  # per region (the joint layout gets this times the number of regions)
    min_new_tokens: int = 0
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    batch_size: int = 16  # sequences per generate() call, across regions and CTs
    seed: int | None = None  # for do_sample


_SECTIONS = {
    "preprocess": PreprocessConfig,
    "vision2d": Vision2DConfig,
    "vision3d": Vision3DConfig,
    "mask": MaskEncoderConfig,
    "projector": ProjectorConfig,
    "llm": LLMConfig,
    "prompt": PromptConfig,
    "generation": GenerationSettings,
}


def section_from_dict(cls, data: dict, where: str, what: str = "model configuration"):
    """A config dataclass from a JSON/TOML mapping: unknown keys are an error, lists become tuples again."""
    if not isinstance(data, dict):
        raise InputError(f"{what} section {where!r} must be a mapping, got {type(data).__name__}.")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in {what} section {where!r}; valid keys are {sorted(names)}.")
    values = {}
    for key, value in data.items():
        default = getattr(cls(), key)
        # JSON has no tuples: restore them so a loaded config equals the saved one.
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        values[key] = value
    return cls(**values)


@dataclass
class MedRegionModelConfig:
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    vision2d: Vision2DConfig = field(default_factory=Vision2DConfig)
    vision3d: Vision3DConfig = field(default_factory=Vision3DConfig)
    mask: MaskEncoderConfig = field(default_factory=MaskEncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    format_version: int = FORMAT_VERSION

    # --- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> MedRegionModelConfig:
        if not isinstance(data, dict):
            raise InputError("a model configuration must be a mapping of sections; "
                             "build one with MedRegionModelConfig() or preset(...).")
        data = copy.deepcopy(data)
        version = data.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise InputError(f"model configuration format {version} is not supported by this version "
                             f"(expects {FORMAT_VERSION}); upgrade MedRegionCTLib or re-save the checkpoint.")
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise InputError(f"unknown model configuration section(s) {unknown}; valid sections are "
                             f"{sorted(_SECTIONS)}.")
        sections = {name: section_from_dict(sec, data.get(name, {}), name) for name, sec in _SECTIONS.items()}
        config = cls(**sections)
        config.validate()
        return config

    def save(self, path) -> Path:
        """Write the configuration as JSON (``path`` may be a folder: the file is then CONFIG_NAME inside)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> MedRegionModelConfig:
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.is_file():
            raise InputError(f"model configuration {path} not found; give a checkpoint folder written by "
                             f"save_pretrained() or a {CONFIG_NAME} file.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"model configuration {path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                             "restore it from the checkpoint it came from.") from exc
        return cls.from_dict(data)

    def replace(self, **sections: dict) -> MedRegionModelConfig:
        """A copy with some fields changed: ``config.replace(llm={"lora_r": 16})``."""
        data = self.to_dict()
        for name, changes in sections.items():
            if name not in _SECTIONS:
                raise InputError(f"unknown model configuration section {name!r}; valid: {sorted(_SECTIONS)}.")
            data[name].update(changes)
        return MedRegionModelConfig.from_dict(data)

    # --- derived quantities -----------------------------------------------------------------------
    def validate(self) -> None:
        v2, v3, mk, pr = self.vision2d, self.vision3d, self.mask, self.prompt
        if not (v2.enabled or v3.enabled):
            raise InputError("the model configuration enables no vision path; set vision2d.enabled (MedRegion-CT) "
                             "and/or vision3d.enabled (Reg2RG).")
        if v2.global_pooling not in ("slice", "slab"):
            raise InputError(f"vision2d.global_pooling {v2.global_pooling!r} is unknown; use 'slice' or 'slab'.")
        if v2.enabled and v2.global_pooling == "slab" and self.preprocess.num_slices % v2.slab_size:
            raise InputError(f"preprocess.num_slices ({self.preprocess.num_slices}) is not a multiple of "
                             f"vision2d.slab_size ({v2.slab_size}); change one of them.")
        if v2.region_tokens < 1 or mk.num_tokens < 1:
            raise InputError("vision2d.region_tokens and mask.num_tokens must be at least 1.")
        if mk.kind not in ("vit", "radfm", "cnn"):
            raise InputError(f"mask.kind {mk.kind!r} is unknown; use 'vit', 'radfm' or 'cnn'.")
        if v3.kind not in ("monai", "radfm"):
            raise InputError(f"vision3d.kind {v3.kind!r} is unknown; use 'monai' or 'radfm'.")
        pre = self.preprocess
        for name, value, allowed in (("orientation", pre.orientation, ("ras", "as_stored")),
                                     ("body_box", pre.body_box, ("largest_component", "foreground")),
                                     ("resample", pre.resample, ("area", "adaptive")),
                                     ("region_box", pre.region_box, ("mask", "foreground")),
                                     ("tokenize", pr.tokenize, ("pieces", "whole"))):
            if value not in allowed:
                raise InputError(f"{'prompt' if name == 'tokenize' else 'preprocess'}.{name} {value!r} is unknown; "
                                 f"use one of {allowed}.")
        for name, enabled, hidden in (("vision3d", v3.enabled and v3.kind == "radfm", v3.hidden_size),
                                      ("mask", mk.enabled and mk.kind == "radfm", mk.hidden_size)):
            if enabled and hidden % 3:
                raise InputError(f"{name}.hidden_size {hidden} is not a multiple of 3; the RadFM ViT splits it over "
                                 "three per-axis position tables.")
        for name, enabled, patch in (("vision3d", v3.enabled, v3.patch_size),
                                     ("mask", mk.enabled and mk.kind in ("vit", "radfm"), mk.patch_size)):
            if enabled and any(g % p for g, p in zip(self.preprocess.grid, patch)):
                raise InputError(f"{name}.patch_size {tuple(patch)} does not divide preprocess.grid "
                                 f"{tuple(self.preprocess.grid)}; choose a patch size that divides the grid.")
        if self.projector.kind not in ("linear", "mlp2x_gelu"):
            raise InputError(f"projector.kind {self.projector.kind!r} is unknown; use 'linear' or 'mlp2x_gelu'.")
        if self.llm.train not in ("lora", "frozen", "full"):
            raise InputError(f"llm.train {self.llm.train!r} is unknown; use 'lora', 'frozen' or 'full'.")
        if pr.layout not in ("per_region", "joint"):
            raise InputError(f"prompt.layout {pr.layout!r} is unknown; use 'per_region' or 'joint'.")
        if pr.region_context not in ("all", "own"):
            raise InputError(f"prompt.region_context {pr.region_context!r} is unknown; use 'all' or 'own'.")

    def check_buildable(self) -> None:
        """The weights' sources are set (checked when a model is built, not when a config is read)."""
        self.validate()
        if self.vision2d.enabled and not (self.vision2d.path or self.vision2d.hf_config):
            raise InputError("vision2d is enabled but has neither a path nor an hf_config; give the folder of a "
                             "Hugging Face vision model (vision2d.path).")
        if not (self.llm.path or self.llm.hf_config):
            raise InputError("llm has neither a path nor an hf_config; give the local folder of a causal language "
                             "model (llm.path).")
        if not (self.llm.tokenizer_path or self.llm.path):
            raise InputError("llm.tokenizer_path is needed when the language model comes from llm.hf_config; give "
                             "the folder of its tokenizer.")

    def num_global_tokens(self) -> int:
        """Tokens in the <image> group."""
        n = 0
        if self.vision2d.enabled:
            z = self.preprocess.num_slices
            n += z if self.vision2d.global_pooling == "slice" else z // self.vision2d.slab_size
        if self.vision3d.enabled and self.vision3d.global_tokens:
            n += self.vision3d.num_latents
        return n

    def num_region_tokens(self) -> int:
        """Tokens in each <region> slot: R2 pooled tokens, texture latents, mask tokens (in that order)."""
        n = 0
        if self.vision2d.enabled:
            n += self.vision2d.region_tokens
        if self.vision3d.enabled:
            n += self.vision3d.num_latents
        if self.mask.enabled:
            n += self.mask.num_tokens
        return n

    def describe_preprocessing(self) -> list[str]:
        """The exact preprocessing this model's inputs go through (only the arrays it consumes)."""
        return self.preprocess.describe(self.needed_inputs())

    def needed_inputs(self) -> set[str]:
        """Which preprocessed arrays the model consumes (see :func:`.preprocess.prepare_case`)."""
        need = set()
        if self.vision2d.enabled:
            need |= {"slices", "slice_masks"}
        if self.vision3d.enabled:
            need.add("crops")
            if self.vision3d.global_tokens:
                need.add("image")
        if self.mask.enabled:
            need.add("masks")
        return need


def preset(name: str, **sections: dict) -> MedRegionModelConfig:
    """A named configuration; ``sections`` override fields, e.g. ``preset("reg2rg", llm={"path": "..."})``.

    - ``"reg2rg"``: 3D ViT (patch 32x32x4 on 256x256x64) + Perceiver (32 latents) for the global volume and each
      region crop, one mask-ViT token per region, linear projector, joint answer with slot shuffling.
    - ``"medregion"``: 2D encoder on 64 axial slices, one token per slice, 4 mask-pooled tokens per region,
      a CNN mask encoder, attribute sentences, one sequence per region.
    - ``"hybrid"``: both vision paths and the ViT mask encoder, one sequence per region.
    """
    base = {
        "reg2rg": {
            "vision3d": {"enabled": True},
            "mask": {"enabled": True, "kind": "vit", "num_tokens": 1},
            "projector": {"kind": "linear"},
            "prompt": {"layout": "joint", "use_attributes": False},
        },
        "medregion": {
            "vision2d": {"enabled": True, "global_pooling": "slice", "region_tokens": 4},
            "mask": {"enabled": True, "kind": "cnn", "num_tokens": 1},
            "prompt": {"layout": "per_region", "use_attributes": True},
        },
        "hybrid": {
            "vision2d": {"enabled": True, "global_pooling": "slab", "slab_size": 4},
            "vision3d": {"enabled": True},
            "mask": {"enabled": True, "kind": "vit"},
            "prompt": {"layout": "per_region", "use_attributes": True},
        },
    }
    if name not in base:
        raise InputError(f"unknown model preset {name!r}; use one of {sorted(base)}.")
    data = MedRegionModelConfig().to_dict()
    for section, changes in list(base[name].items()) + list(sections.items()):
        if section not in data:
            raise InputError(f"unknown model configuration section {section!r}; valid: {sorted(_SECTIONS)}.")
        data[section].update(changes)
    return MedRegionModelConfig.from_dict(data)
