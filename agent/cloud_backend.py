"""Cloud backend: any OpenAI-compatible ``/chat/completions`` server, over httpx.

It implements the :class:`~bitterbot.agent.backends.Backend` interface and counts the exact
bytes of every request body it sends (``Completion.bytes_sent``). Callers that must audit
what leaves the device (the orchestrator) pass ``on_send``: it receives the exact payload
before it is sent, so the audit log holds a record even when the request then fails.

The API key comes from the ``cloud.api_key`` setting (environment ``BITTERBOT_CLOUD_API_KEY``);
it is sent only in the ``Authorization`` header and never logged or shown (``repr`` hides it).

This backend does not redact anything: send through the orchestrator, which applies the
privacy gate first. ``stream`` yields the whole answer as one chunk (no server-sent events).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

import httpx

from bitterbot.agent.backends import (
    Chunk,
    Completion,
    GenerateOptions,
    Message,
    ModelUnavailableError,
    register_backend,
)
from bitterbot.protocol.errors import ConfigError, ModelError

MAX_RESPONSE_BYTES = 4 << 20
CHARS_PER_TOKEN = 4

OnSend = Callable[[bytes], None]


class CloudError(ModelError):
    code = "cloud_error"


def _bad_reply(url: str, what: str) -> CloudError:
    return CloudError(
        f"the cloud provider at {url} sent an unexpected reply: {what}",
        hint="check that cloud.url points at an OpenAI-compatible API",
        code="cloud_bad_reply",
    )


class CloudBackend:
    name = "cloud"

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str = "",
        *,
        timeout_s: float = 60.0,
        context_length: int = 128_000,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url or not model:
            raise ConfigError(
                "the cloud is not configured", hint="set cloud.url and cloud.model first"
            )
        self.url = url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._context_length = context_length
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            timeout=timeout_s, headers=headers, transport=transport, follow_redirects=False
        )
        self.bytes_sent_total = 0

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"CloudBackend(url={self.url!r}, model={self.model!r}, api_key={key})"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **kwargs: Any) -> CloudBackend:
        return cls(
            str(settings["cloud.url"]),
            str(settings["cloud.model"]),
            str(settings["cloud.api_key"]),
            **kwargs,
        )

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, messages: Sequence[Message]) -> int:
        chars = sum(len(m.get("content", "")) + 8 for m in messages)
        return chars // CHARS_PER_TOKEN + 1

    def request_body(self, messages: Sequence[Message], options: GenerateOptions) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
        }
        if options.stop:
            body["stop"] = options.stop
        if options.seed is not None:
            body["seed"] = options.seed
        if options.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": options.json_schema},
            }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    async def _post(self, path: str, payload: bytes, on_send: OnSend | None) -> dict[str, Any]:
        url = self.url + path
        if on_send is not None:
            on_send(payload)  # audit first: once the request starts, the bytes may have left
        self.bytes_sent_total += len(payload)
        try:
            async with self._client.stream(
                "POST", url, content=payload, headers={"Content-Type": "application/json"}
            ) as response:
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise _bad_reply(self.url, f"reply over {MAX_RESPONSE_BYTES} bytes")
                    chunks.append(chunk)
                status = response.status_code
        except httpx.HTTPError as exc:
            raise ModelUnavailableError(
                f"cannot reach the cloud provider at {self.url}: {type(exc).__name__}",
                hint="check cloud.url and the network; the request stayed local",
                code="cloud_unreachable",
            ) from exc
        data = b"".join(chunks)
        if status in (401, 403):
            raise CloudError(
                f"the cloud provider refused the API key (HTTP {status})",
                hint="set cloud.api_key (or BITTERBOT_CLOUD_API_KEY)",
                code="cloud_auth",
            )
        if status == 429:
            raise CloudError("the cloud provider is rate-limiting", hint="retry later")
        if status >= 400:
            raise CloudError(f"the cloud provider answered HTTP {status}")
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise _bad_reply(self.url, "not JSON") from exc
        if not isinstance(obj, dict):
            raise _bad_reply(self.url, "not a JSON object")
        return obj

    async def generate_audited(
        self, messages: Sequence[Message], options: GenerateOptions, on_send: OnSend | None
    ) -> Completion:
        payload = self.request_body(messages, options)
        obj = await self._post("/chat/completions", payload, on_send)
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _bad_reply(self.url, "no choices")
        message = choices[0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise _bad_reply(self.url, "no message content")
        raw_usage = obj.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        tokens_in = usage.get("prompt_tokens")
        tokens_out = usage.get("completion_tokens")
        finish = choices[0].get("finish_reason")
        return Completion(
            text=text,
            model=str(obj.get("model") or self.model),
            backend=self.name,
            tokens_in=tokens_in if isinstance(tokens_in, int) else self.count_tokens(messages),
            tokens_out=tokens_out
            if isinstance(tokens_out, int)
            else len(text) // CHARS_PER_TOKEN + 1,
            finish_reason="length" if finish == "length" else "stop",
            bytes_sent=len(payload),
        )

    async def generate(self, messages: Sequence[Message], options: GenerateOptions) -> Completion:
        return await self.generate_audited(messages, options, None)

    def stream(
        self, messages: Sequence[Message], options: GenerateOptions
    ) -> AsyncGenerator[Chunk, None]:
        return self._stream(messages, options)

    async def _stream(
        self, messages: Sequence[Message], options: GenerateOptions
    ) -> AsyncGenerator[Chunk, None]:
        done = await self.generate(messages, options)
        yield Chunk(done.text, done.finish_reason, done.tokens_in, done.tokens_out)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        payload = json.dumps({"model": self.model, "input": list(texts)}).encode("utf-8")
        obj = await self._post("/embeddings", payload, None)
        data = obj.get("data")
        if not isinstance(data, list) or len(data) != len(texts):
            raise _bad_reply(self.url, "wrong number of embeddings")
        out = []
        for item in data:
            vec = item.get("embedding") if isinstance(item, dict) else None
            if not isinstance(vec, list) or not all(isinstance(v, int | float) for v in vec):
                raise _bad_reply(self.url, "embedding is not a list of numbers")
            out.append([float(v) for v in vec])
        return out

    async def aclose(self) -> None:
        await self._client.aclose()


def _factory(name: str, settings: Mapping[str, Any]) -> CloudBackend:
    """``cloud:MODEL``: MODEL at ``cloud.url``. Direct use bypasses the privacy gate."""
    return CloudBackend(str(settings["cloud.url"]), name, str(settings["cloud.api_key"]))


register_backend("cloud", _factory)
