"""The model behind the server: loading (a checkpoint folder or the tiny CPU test model), what it declares
about its inputs, and batched generation that reports each region's paragraph as soon as it is decoded."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
from pathlib import Path

from .. import __version__
from ..anatomy import load_schema
from ..client.codec import CONTENT_TYPE, FORMAT, FORMAT_VERSION, InputSpec
from ..errors import InputError, MissingDependencyError

log = logging.getLogger("medregionct.server")
API_VERSION = "v1"
CHARS_PER_TOKEN = 6  # generous: English text averages about 4 characters per token


def _file_digest(path: Path, h) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def checkpoint_version(directory: Path) -> str:
    """A short content hash of what shapes the model's output: configuration, encoder weights, adapter
    (the base LM folder, if stored, by file names and sizes only: hashing gigabytes would slow start-up)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        h.update(rel.encode())
        if rel.startswith("llm/") or path.stat().st_size > (1 << 30):
            h.update(str(path.stat().st_size).encode())
        else:
            _file_digest(path, h)
    return "sha256:" + h.hexdigest()[:16]


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} was asked for but torch sees no CUDA GPU (torch {torch.__version__}); "
                         "install a CUDA build of torch on a GPU machine, or use --device cpu.")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}; use cuda, cuda:N or cpu.")
    return device


def write_tiny_checkpoint(folder, schema="radgenome10", seed: int = 0, name: str = "hybrid",
                          generation: dict | None = None, llm_settings: dict | None = None) -> Path:
    """A tiny random-weight model (every input path enabled) saved with ``save_pretrained`` in ``folder``:
    the CPU test mode of the server (``--model tiny`` builds one in a temporary folder)."""
    import torch

    from ..model import MedRegionModel
    from ..model.tiny import corpus_for, synthetic_case, tiny_config, write_tiny_llm, write_tiny_vision2d

    folder = Path(folder)
    schema = load_schema(schema)
    cases = [synthetic_case(s) for s in range(2)]
    texts = corpus_for(cases) + [f"The region {i} is {r.name}: " for i in range(len(schema.regions))
                                 for r in schema.regions]
    with tempfile.TemporaryDirectory() as tmp:
        llm = write_tiny_llm(Path(tmp) / "llm", texts, hidden_size=32, seed=seed)
        vision = write_tiny_vision2d(Path(tmp) / "vision", seed=seed)
        torch.manual_seed(seed)
        config = tiny_config(llm, vision, name=name,
                             generation={"max_new_tokens": 24, "batch_size": 64, **(generation or {})},
                             vision2d={"freeze": False}, llm={"train": "full", **(llm_settings or {})})
        model = MedRegionModel.from_config(config)
        model.save_pretrained(folder)
    return folder


class ModelEngine:
    """One loaded model plus the region schema it reports on; ``generate`` is called from one thread."""

    def __init__(self, model, schema, source: str, version: str, device: str, rows_per_generate: int | None = None):
        self.model = model
        self.schema = schema
        self.source = source
        self.version = version
        self.device = device
        config = model.config
        self.settings = config.generation
        if rows_per_generate:
            from dataclasses import replace

            self.settings = replace(self.settings, batch_size=int(rows_per_generate))
        self._sink = None
        self._lock = threading.Lock()
        # Each decoded row goes through builder.parse: wrap it to pass the region paragraphs on as they come.
        original = model.builder.parse

        def parse(text, row):
            out = original(text, row)
            sink = self._sink
            if sink is not None:
                for key, value in out.items():
                    sink(row.case_index, key, value)
            return out

        model.builder.parse = parse

    # --- what the model takes -----------------------------------------------------------------------------
    def _new_tokens(self, regions: int) -> int:
        joint = self.model.config.prompt.layout == "joint"
        return int(self.settings.max_new_tokens) * (max(regions, 1) if joint else 1)

    def token_budget(self) -> dict:
        """The LM's context split: the longest prompt without attribute text, the tokens kept for the answer, and
        what is left for attribute text (per sequence)."""
        from ..model.preprocess import PreparedCase

        keys = list(self.schema.keys)
        empty = PreparedCase(keys=keys, arrays={}, names={k: k for k in keys})
        rows = self.model.builder.rows(empty, 0, train=False, with_answer=False)
        prompt = max(len(r.input_ids) for r in rows)
        new = self._new_tokens(len(keys))
        max_length = int(self.model.config.llm.max_length)
        return {"max_length": max_length, "prompt_tokens_without_attributes": prompt, "max_new_tokens": new,
                "attribute_tokens": max(max_length - prompt - new, 0)}

    def spec(self, max_body_bytes: int) -> InputSpec:
        config = self.model.config
        budget = self.token_budget()
        # a cheap first bound on the text (a token is rarely longer than CHARS_PER_TOKEN characters); the exact
        # token count is checked by check() before the job is queued
        chars = budget["attribute_tokens"] * CHARS_PER_TOKEN if config.prompt.use_attributes else 0
        return InputSpec.from_preprocess(config.preprocess, config.needed_inputs(), self.schema.name,
                                         self.schema.keys, max_regions=len(self.schema.keys),
                                         max_body_bytes=int(max_body_bytes), max_attribute_chars=int(chars))

    def check(self, case) -> None:
        """PayloadError 422 (before the job is queued) when the case's prompt would not leave room for the answer."""
        from ..errors import PayloadError

        try:
            rows = self.model.builder.rows(case, 0, train=False, with_answer=False)
            self.model.builder.check_budget(rows, self._new_tokens(len(case.keys)))
        except InputError as exc:
            raise PayloadError(f"the prompt does not fit this model's token budget: {exc}", 422,
                               "prompt_too_long") from None

    def info(self, limits: dict) -> dict:
        from dataclasses import asdict

        config = self.model.config
        pre = config.preprocess
        spec = self.spec(limits["max_request_bytes"])
        return {
            "api_version": API_VERSION,
            "server_version": __version__,
            "model": {"version": self.version, "source": self.source, "device": self.device,
                      "layout": config.prompt.layout, "uses_attributes": bool(config.prompt.use_attributes),
                      "needed_inputs": sorted(config.needed_inputs())},
            "schema": {"name": self.schema.name, "title": self.schema.title,
                       "regions": [{"key": r.key, "name": r.name} for r in self.schema.regions]},
            "payload": {"format": FORMAT, "format_version": FORMAT_VERSION, "content_type": CONTENT_TYPE},
            "input": spec.to_dict(),
            "grid": {"shape": list(pre.grid), "axes": "RAS (X right, Y anterior, Z superior)",
                     "spacing_mm": None,
                     "spacing_note": "the body box is resampled to the grid, so the spacing follows the patient's "
                                     "size; it is not fixed",
                     "num_slices": pre.num_slices, "slice_size": pre.slice_size},
            "preprocess": asdict(pre),
            "preprocessing": config.describe_preprocessing(),
            "generation": asdict(self.settings),
            "token_budget": self.token_budget(),
            "limits": dict(limits),
        }

    # --- generation -----------------------------------------------------------------------------------------
    def generate(self, prepared: list, on_region=None, progress=None, cancel=None) -> list[dict]:
        """Reports for a batch of prepared cases in one ``generate_reports`` call; ``on_region(case_index, key,
        {"name", "paragraph", "slot"})`` is called as each region's paragraph is decoded."""
        import torch

        with self._lock:
            self._sink = on_region
            try:
                with torch.inference_mode():
                    return self.model.generate_reports(prepared, settings=self.settings, progress=progress,
                                                       cancel=cancel)
            finally:
                self._sink = None
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()

    def close(self) -> None:
        pass


def load_engine(model: str, device: str | None = None, schema: str = "radgenome10",
                rows_per_generate: int | None = None, llm_path=None) -> ModelEngine:
    """``model``: a checkpoint folder written by ``save_pretrained``, or ``"tiny"`` (a tiny random-weight model
    built in a temporary folder: the CPU test mode)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError("the report server needs torch; install it with "
                                     "pip install 'MedRegionCTLib[server]'.") from None
    from ..model import MedRegionModel

    device = resolve_device(device)
    schema_obj = load_schema(schema)
    if model == "tiny":
        tmp = Path(tempfile.mkdtemp(prefix="medregionct-tiny-"))
        try:
            folder = write_tiny_checkpoint(tmp / "model", schema=schema_obj)
            loaded = MedRegionModel.from_pretrained(folder, device=device)
            version = checkpoint_version(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        source = "tiny (random weights, CPU test mode)"
    else:
        folder = Path(model)
        loaded = MedRegionModel.from_pretrained(folder, device=device, llm_path=llm_path)
        version = checkpoint_version(folder)
        source = folder.name
    log.info("model %s (%s) loaded on %s", source, version, device)
    return ModelEngine(loaded, schema_obj, source, version, device, rows_per_generate=rows_per_generate)


class LLMEngine:
    """``serve --llm DIR``: a local instruction-tuned LLM behind the same API. It takes no image: the client sends
    each region's measured facts as its attribute text (the payload has no arrays), and the LLM writes the region
    paragraphs with the zero-shot grounded writer's prompts; the client's pipeline then checks them."""

    kind = "llm"

    def __init__(self, chat, schema, source: str, version: str, device: str, max_new_tokens: int | None = None):
        from ..report.llm_writer import prompts

        self.chat = chat
        self.schema = schema
        self.source = source
        self.version = version
        self.device = device
        self.max_new_tokens = int(max_new_tokens or prompts()["max_new_tokens"])

    def _messages(self, case) -> list[tuple[str, list[dict]]]:
        from ..report.llm_writer import chat_messages

        return [(key, chat_messages(case.name_of(key), case.attributes.get(key, ""), self.chat.special_tokens))
                for key in case.keys]

    def token_budget(self) -> dict:
        from ..report.llm_writer import chat_messages

        prompt = self.chat.count_tokens(chat_messages("trachea and bronchie", ""))
        return {"max_length": self.chat.context, "prompt_tokens_without_attributes": prompt,
                "max_new_tokens": self.max_new_tokens,
                "attribute_tokens": max(self.chat.context - prompt - self.max_new_tokens, 0)}

    def spec(self, max_body_bytes: int) -> InputSpec:
        chars = self.token_budget()["attribute_tokens"] * CHARS_PER_TOKEN
        return InputSpec(schema=self.schema.name, region_keys=tuple(self.schema.keys), arrays={},
                         max_regions=len(self.schema.keys), max_attribute_chars=int(chars),
                         max_body_bytes=int(max_body_bytes))

    def check(self, case) -> None:
        from ..errors import PayloadError

        for key, messages in self._messages(case):
            try:
                self.chat.check_budget(messages, self.max_new_tokens)
            except InputError as exc:
                raise PayloadError(f"the facts of region {key!r} do not fit this LLM's token budget: {exc}", 422,
                                   "prompt_too_long") from None

    def info(self, limits: dict) -> dict:
        from dataclasses import asdict

        from ..model.config import PreprocessConfig

        spec = self.spec(limits["max_request_bytes"])
        return {
            "api_version": API_VERSION, "server_version": __version__,
            "model": {"kind": self.kind, "version": self.version, "source": self.source, "device": self.device,
                      "layout": "chat", "uses_attributes": True, "needed_inputs": [],
                      "engine": self.chat.settings()},
            "schema": {"name": self.schema.name, "title": self.schema.title,
                       "regions": [{"key": r.key, "name": r.name} for r in self.schema.regions]},
            "payload": {"format": FORMAT, "format_version": FORMAT_VERSION, "content_type": CONTENT_TYPE},
            "input": spec.to_dict(),
            "grid": None,
            "preprocess": asdict(PreprocessConfig()),
            "preprocessing": ["none: the LLM reads the region names and the measured facts (attribute text) only"],
            "generation": {"max_new_tokens": self.max_new_tokens, "decoding": "greedy"},
            "token_budget": self.token_budget(),
            "limits": dict(limits),
        }

    def generate(self, prepared: list, on_region=None, progress=None, cancel=None) -> list[dict]:
        jobs = [(ci, key, messages) for ci, case in enumerate(prepared) for key, messages in self._messages(case)]
        out: list[dict] = [{} for _ in prepared]
        done = 0
        size = max(int(getattr(self.chat, "batch_size", 8)), 1)
        for start in range(0, len(jobs), size):
            batch = jobs[start:start + size]
            texts = self.chat.complete([m for _, _, m in batch], self.max_new_tokens, cancel=cancel)
            for (ci, key, _), text in zip(batch, texts, strict=True):
                slot = prepared[ci].keys.index(key)
                value = {"name": prepared[ci].name_of(key), "paragraph": text, "slot": slot}
                out[ci][key] = value
                if on_region is not None:
                    on_region(ci, key, value)
            done += len(batch)
            if progress is not None:
                progress(done / max(len(jobs), 1), f"{done} of {len(jobs)} regions written")
        return out

    def close(self) -> None:
        pass


def load_llm_engine(folder, device: str | None = None, schema: str = "radgenome10", dtype: str = "auto",
                    max_new_tokens: int | None = None, batch_size: int = 8) -> LLMEngine:
    """The ``serve --llm DIR`` engine: a local instruction-tuned LLM folder with a chat template."""
    try:
        from ..model.chat import LocalChatEngine
    except ImportError:
        raise MissingDependencyError("serving an LLM needs torch and transformers; pip install "
                                     "'MedRegionCTLib[server]'.") from None
    device = resolve_device(device)
    chat = LocalChatEngine(folder, device=device, dtype=dtype, batch_size=batch_size)
    folder = Path(folder)
    version = checkpoint_version_of_llm(folder)
    log.info("LLM %s (%s) loaded on %s", folder.name, version, device)
    return LLMEngine(chat, load_schema(schema), folder.name, version, device, max_new_tokens=max_new_tokens)


def checkpoint_version_of_llm(folder: Path) -> str:
    """A short hash of an LLM folder's configuration, tokenizer and weight file names and sizes."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        h.update(rel.encode())
        if path.suffix in (".safetensors", ".bin", ".gguf", ".pt"):
            h.update(str(path.stat().st_size).encode())
        else:
            _file_digest(path, h)
    return "sha256:" + h.hexdigest()[:16]
