"""An OpenAI-compatible chat-completions endpoint as a chat engine (httpx, no torch): the LLM server a site
already runs (vLLM, TGI, Ollama, llama.cpp's server, ``transformers serve``) writes the region paragraphs.

Requests are ``POST {base}/chat/completions`` with ``stream: true`` and greedy decoding (``temperature: 0``);
the answer is read from the server-sent ``choices[0].delta.content`` chunks, so a cancel closes the stream at
once (servers such as vLLM abort the generation when the client goes). The model name is the one given, or the
first of ``GET {base}/models``. Only the prompts travel: region names and measured facts, no image, no
identifier.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from ..errors import CancelledError, InputError, ServerError
from ..progress import is_cancelled
from .client import _httpx, _reason


def endpoint_base(url: str) -> str:
    """``http://host:8000`` or ``http://host:8000/v1`` (with or without a trailing slash) -> ``.../v1``."""
    url = str(url).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InputError(f"LLM endpoint {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1).")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url if url.endswith("/v1") else url + "/v1"


class OpenAIChatEngine:
    """``url``: the endpoint's base (``http://host:8000/v1``); ``model``: the served model's name (default: the
    first the server lists); ``api_key``: sent as a bearer token; ``concurrency``: requests in flight."""

    name = "openai"
    special_tokens: tuple[str, ...] = ()

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, timeout: float = 300.0,
                 concurrency: int = 4, transport=None):
        httpx = _httpx()
        self.base = endpoint_base(url)
        self.model = model
        self.concurrency = max(int(concurrency), 1)
        headers = {"User-Agent": "MedRegionCT-llm-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(headers=headers, transport=transport,
                                  timeout=httpx.Timeout(float(timeout), connect=min(float(timeout), 10.0)))

    def close(self) -> None:
        self._http.close()

    def settings(self) -> dict:
        return {"engine": self.name, "url": self.base, "model": self.model, "decoding": "greedy (temperature 0)"}

    def _fail(self, response) -> ServerError:
        try:
            detail = response.json().get("error") or response.json()
            message = detail.get("message") if isinstance(detail, dict) else str(detail)
        except (ValueError, AttributeError):
            message = response.text[:200]
        return ServerError(f"the LLM endpoint at {self.base} answered HTTP {response.status_code}: {message}",
                           status=response.status_code)

    def model_name(self) -> str:
        if self.model:
            return self.model
        httpx = _httpx()
        try:
            response = self._http.get(f"{self.base}/models")
        except httpx.TransportError as exc:
            raise ServerError(f"the LLM endpoint at {self.base} could not be reached ({_reason(exc)}); check the URL "
                              "and that the server runs.") from None
        if response.status_code != 200:
            raise self._fail(response)
        models = [m.get("id") for m in response.json().get("data", []) if m.get("id")]
        if not models:
            raise ServerError(f"the LLM endpoint at {self.base} lists no model; give the model name (--llm-model).")
        self.model = models[0]
        return self.model

    def _one(self, messages: list[dict], max_new_tokens: int, cancel) -> str:
        httpx = _httpx()
        body = {"model": self.model_name(), "messages": messages, "max_tokens": int(max_new_tokens),
                "temperature": 0.0, "stream": True}
        parts: list[str] = []
        try:
            with self._http.stream("POST", f"{self.base}/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._fail(response)
                for line in response.iter_lines():
                    if is_cancelled(cancel):
                        raise CancelledError("the LLM report was cancelled; nothing was written. Run it again to "
                                             "redo it.")
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except json.JSONDecodeError:
                        raise ServerError(f"the LLM endpoint at {self.base} sent a stream chunk that is not JSON; is "
                                          "it an OpenAI-compatible chat-completions server?") from None
                    if "error" in chunk:
                        raise ServerError(f"the LLM endpoint at {self.base} failed: {chunk['error']}")
                    for choice in chunk.get("choices", [])[:1]:
                        parts.append((choice.get("delta") or {}).get("content") or "")
        except httpx.TransportError as exc:
            raise ServerError(f"the LLM endpoint at {self.base} stopped answering ({_reason(exc)}); check it runs, "
                              "then retry.") from None
        return "".join(parts).strip()

    def complete(self, conversations: list[list[dict]], max_new_tokens: int, progress=None, cancel=None) -> list[str]:
        if is_cancelled(cancel):
            raise CancelledError("the LLM report was cancelled before it was sent; nothing was written.")
        self.model_name()
        done = 0
        results: list[str | None] = [None] * len(conversations)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._one, m, max_new_tokens, cancel): i for i, m in enumerate(conversations)}
            try:
                for future in futures:
                    results[futures[future]] = future.result()
                    done += 1
                    if progress is not None:
                        progress(done / max(len(conversations), 1), f"{done} of {len(conversations)} regions written")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return [r or "" for r in results]
