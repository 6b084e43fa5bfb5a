"""``reporter="llm:TARGET"``: the zero-shot grounded writer on a local LLM folder or an OpenAI-compatible
endpoint (``llm:http://host:8000/v1``)."""

from __future__ import annotations

from ..report.llm_writer import LLMReporter


def llm_reporter(target: str, device: str | None = None, dtype: str = "auto", model: str | None = None,
                 api_key: str | None = None, max_new_tokens: int | None = None, batch_size: int = 8,
                 llm_path=None, timeout: float = 300.0, **_ignored) -> LLMReporter:
    """``target``: a local Hugging Face folder with a chat template, or an ``http(s)://`` endpoint base.
    ``llm_path`` replaces the folder (the ``--llm-path`` override); ``model``/``api_key`` are for endpoints."""
    target = str(llm_path or target).strip()
    if target.startswith(("http://", "https://")):
        from .chat import OpenAIChatEngine

        engine = OpenAIChatEngine(target, model=model, api_key=api_key, timeout=timeout)
    else:
        from ..errors import MissingDependencyError

        try:
            from ..model.chat import LocalChatEngine
        except ImportError as exc:
            raise MissingDependencyError(f"a local LLM needs torch and transformers ({exc.name} is missing); "
                                         "pip install 'MedRegionCTLib[model]', or use an endpoint: "
                                         "--reporter llm:http://HOST:PORT/v1") from None
        engine = LocalChatEngine(target, device=device, dtype=dtype, batch_size=batch_size)
    return LLMReporter(engine, max_new_tokens=max_new_tokens)
