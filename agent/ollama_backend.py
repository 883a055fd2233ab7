"""ollama backend: a model served by an ollama server, over its HTTP API (httpx).

Used for ``ollama:NAME`` models. Endpoints: ``POST /api/chat`` (NDJSON stream or one JSON),
``POST /api/show`` (context length), ``POST /api/embed``, ``GET /api/tags`` (listing).
Every response is size-limited and checked for shape before use; connection failures
become :class:`OllamaUnreachableError` naming the URL and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from bitterbot.agent.backends import (
    Chunk,
    Completion,
    GenerateOptions,
    Message,
    ModelNotFoundError,
    ModelUnavailableError,
    register_backend,
)

MAX_LINE_BYTES = 1 << 20  # one NDJSON event
MAX_BODY_BYTES = 16 << 20  # a whole non-streamed answer or listing
CHARS_PER_TOKEN = 4  # ollama has no tokenize endpoint: a conservative estimate


class OllamaUnreachableError(ModelUnavailableError):
    code = "ollama_unreachable"


def _unreachable(url: str, exc: Exception) -> OllamaUnreachableError:
    return OllamaUnreachableError(
        f"ollama unreachable at {url}: start it or change ollama.url",
        hint=f"run `ollama serve`, or set ollama.url to where it listens ({type(exc).__name__})",
    )


def _bad_reply(url: str, what: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"ollama at {url} sent an unexpected reply: {what}",
        hint="check that ollama.url points at an ollama server",
        code="ollama_bad_reply",
    )


def _parse_json(url: str, data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise _bad_reply(url, "not JSON") from exc
    if not isinstance(obj, dict):
        raise _bad_reply(url, "not a JSON object")
    return obj


def _check_status(url: str, model: str, response: httpx.Response, body: bytes) -> None:
    if response.status_code == 404:
        raise ModelNotFoundError(
            f"ollama at {url} has no model {model!r}", hint=f"run: ollama pull {model}"
        )
    if response.status_code >= 400:
        detail = body[:200].decode("utf-8", "replace")
        raise ModelUnavailableError(
            f"ollama at {url} answered {response.status_code}: {detail}",
            hint="see the ollama server's log",
            code="ollama_error",
        )


async def _read_limited(url: str, response: httpx.Response, limit: int = MAX_BODY_BYTES) -> bytes:
    body = bytearray()
    async for piece in response.aiter_bytes():
        body += piece
        if len(body) > limit:
            raise _bad_reply(url, f"reply over {limit} bytes")
    return bytes(body)


def list_ollama_models(url: str, *, timeout: float = 1.0) -> list[dict[str, Any]]:
    """Models the server has (``GET /api/tags``): ``[{"name", "size"}]``."""
    try:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            response = client.get("/api/tags")
            body = response.content[: MAX_BODY_BYTES + 1]
    except httpx.TransportError as exc:
        raise _unreachable(url, exc) from exc
    if len(body) > MAX_BODY_BYTES:
        raise _bad_reply(url, "listing too large")
    _check_status(url, "", response, body)
    models = _parse_json(url, body).get("models")
    if not isinstance(models, list):
        raise _bad_reply(url, "no models list")
    out = []
    for entry in models:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            size = entry.get("size")
            out.append({"name": entry["name"], "size": size if isinstance(size, int) else None})
    return out


class OllamaBackend:
    name = "ollama"

    def __init__(
        self, model: str, *, url: str, context_length: int = 2048, timeout: float = 300.0
    ) -> None:
        self.model_name = model
        self.model = f"ollama:{model}"
        self.url = url.rstrip("/")
        self._context_length = context_length
        self._timeout = timeout
        self._context_checked = False

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, messages: Sequence[Message]) -> int:
        chars = sum(len(m["content"]) + len(m["role"]) + 8 for m in messages)
        return math.ceil(chars / CHARS_PER_TOKEN)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, timeout=httpx.Timeout(self._timeout, connect=5.0)
        )

    async def load(self) -> None:
        """Check the server and the model; learn the model's context length (``/api/show``)."""
        if self._context_checked:
            return
        try:
            async with self._client() as client:
                async with client.stream(
                    "POST", "/api/show", json={"model": self.model_name}
                ) as response:
                    body = await _read_limited(self.url, response)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        _check_status(self.url, self.model_name, response, body)
        info = _parse_json(self.url, body).get("model_info")
        if isinstance(info, dict):
            for key, value in info.items():
                if key.endswith(".context_length") and isinstance(value, int) and value > 0:
                    self._context_length = min(self._context_length, value)
        self._context_checked = True

    def _request(
        self, messages: Sequence[Message], options: GenerateOptions, stream: bool
    ) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "temperature": options.temperature,
            "top_p": options.top_p,
            "num_predict": options.max_tokens,
            "num_ctx": self._context_length,
        }
        if options.stop:
            opts["stop"] = list(options.stop)
        if options.seed is not None:
            opts["seed"] = options.seed
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "stream": stream,
            "options": opts,
        }
        if options.json_schema is not None:
            body["format"] = options.json_schema
        return body

    async def generate(self, messages: Sequence[Message], options: GenerateOptions) -> Completion:
        parts: list[str] = []
        final = Chunk(text="")
        async for chunk in self.stream(messages, options):
            parts.append(chunk.text)
            final = chunk
        return Completion(
            text="".join(parts),
            model=self.model,
            backend=self.name,
            tokens_in=final.tokens_in or 0,
            tokens_out=final.tokens_out or 0,
            finish_reason=final.finish_reason or "stop",
        )

    async def stream(
        self, messages: Sequence[Message], options: GenerateOptions
    ) -> AsyncGenerator[Chunk, None]:
        request = self._request(messages, options, stream=True)
        try:
            async with self._client() as client:
                async with client.stream("POST", "/api/chat", json=request) as response:
                    if response.status_code >= 400:
                        body = await _read_limited(self.url, response, MAX_LINE_BYTES)
                        _check_status(self.url, self.model_name, response, body)
                    async for line in _lines(self.url, response):
                        event = _parse_json(self.url, line)
                        if isinstance(event.get("error"), str):
                            raise ModelUnavailableError(
                                f"ollama: {event['error']}", hint="see the ollama server's log"
                            )
                        message = event.get("message")
                        text = message.get("content") if isinstance(message, dict) else None
                        if text is not None and not isinstance(text, str):
                            raise _bad_reply(self.url, "message content is not text")
                        if event.get("done") is True:
                            if text:
                                yield Chunk(text=text)
                            yield Chunk(
                                text="",
                                finish_reason=_finish(event.get("done_reason")),
                                tokens_in=_count(event.get("prompt_eval_count")),
                                tokens_out=_count(event.get("eval_count")),
                            )
                            return
                        if text:
                            yield Chunk(text=text)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        raise _bad_reply(self.url, "stream ended without done")

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            async with self._client() as client:
                async with client.stream(
                    "POST", "/api/embed", json={"model": self.model_name, "input": list(texts)}
                ) as response:
                    body = await _read_limited(self.url, response)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        _check_status(self.url, self.model_name, response, body)
        vectors = _parse_json(self.url, body).get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise _bad_reply(self.url, "wrong number of embeddings")
        out: list[list[float]] = []
        for vector in vectors:
            if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
                raise _bad_reply(self.url, "an embedding is not a list of numbers")
            out.append([float(x) for x in vector])
        return out

    async def aclose(self) -> None:
        return None


async def _lines(url: str, response: httpx.Response) -> AsyncIterator[bytes]:
    """NDJSON lines, each refused past :data:`MAX_LINE_BYTES` before parsing."""
    buffer = bytearray()
    async for piece in response.aiter_bytes():
        buffer += piece
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end]).strip()
            del buffer[: end + 1]
            if line:
                yield line
        if len(buffer) > MAX_LINE_BYTES:
            raise _bad_reply(url, f"a stream line over {MAX_LINE_BYTES} bytes")
    if buffer.strip():
        yield bytes(buffer).strip()


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _finish(reason: Any) -> str:
    return "length" if reason == "length" else "stop"


def _factory(name: str, settings: Mapping[str, Any]) -> OllamaBackend:
    return OllamaBackend(
        name,
        url=str(settings["ollama.url"]),
        context_length=int(settings["agent.context"]),
    )


register_backend("ollama", _factory)
