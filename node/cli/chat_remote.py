"""`bitterbot chat` through the running node: its loaded model answers over the local API.

The chat loop in ``node/cli/agent.py`` talks to an object with the in-process runtime's
shape (``backend()``, ``options()``, ``prepare()``, ``stream()``); :class:`NodeChat` gives
it that shape over ``POST /v1/chat/completions`` with ``stream: true`` (server-sent
events). The history stays in the CLI's hands (the same LMDB database the node uses), so
the node needs no chat state and a second process never loads a second copy of the model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bitterbot.node.api.client import NodeUnreachable
from bitterbot.protocol.errors import BitterbotError, NetworkError

MAX_EVENT_BYTES = 1 << 20  # one SSE line from our own node; larger means something is wrong


@dataclass
class RemoteBackend:
    model: str
    name: str = "through the running node"


@dataclass
class RemotePrepared:
    messages: list[dict[str, str]]
    options: dict[str, Any]
    notice: str | None = None


@dataclass
class RemoteChunk:
    text: str = ""
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class NodeChat:
    """Chat with the node at ``address`` (``host:port``), authenticated by ``token``."""

    def __init__(self, address: str, token: str, model: str | None = None) -> None:
        self.url = f"http://{address}/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"}
        self.model = model

    async def backend(self) -> RemoteBackend:
        return RemoteBackend(self.model or "the node's model")

    def options(self, max_tokens: int | None = None) -> dict[str, Any]:
        return {"max_tokens": max_tokens} if max_tokens else {}

    async def prepare(
        self, messages: list[dict[str, str]], options: dict[str, Any]
    ) -> RemotePrepared:
        return RemotePrepared([dict(m) for m in messages], options)

    async def stream(self, prepared: RemotePrepared) -> AsyncIterator[RemoteChunk]:
        """Answer pieces as the node streams them; errors become BitterbotError."""
        import httpx

        body: dict[str, Any] = {"messages": prepared.messages, "stream": True, **prepared.options}
        if self.model:
            body["model"] = self.model
        timeout = httpx.Timeout(None, connect=5.0)  # an answer may take minutes on a Pi
        try:
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream("POST", self.url, json=body, headers=self.headers) as resp,
            ):
                if resp.status_code != 200:
                    raise _api_error(resp.status_code, await resp.aread())
                notice = resp.headers.get("x-bitterbot-notice")
                if notice:
                    yield RemoteChunk(extra={"notice": notice})
                async for line in resp.aiter_lines():
                    chunk = _parse_event(line)
                    if chunk is None:
                        continue
                    if chunk.extra.get("done"):
                        return
                    yield chunk
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise NodeUnreachable(
                "the node's API does not answer",
                hint="the node may have stopped; chat again (it runs in-process without a node)",
            ) from exc
        except httpx.HTTPError as exc:
            raise NetworkError(f"the node's answer broke off: {exc}") from exc


def _parse_event(line: str) -> RemoteChunk | None:
    if len(line) > MAX_EVENT_BYTES:
        raise NetworkError("the node sent an oversized event")
    if not line.startswith("data: "):
        return None
    payload = line[len("data: ") :]
    if payload == "[DONE]":
        return RemoteChunk(extra={"done": True})
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise NetworkError("the node sent a malformed event") from exc
    if not isinstance(event, dict):
        raise NetworkError("the node sent a malformed event")
    if "error" in event:
        err = event["error"] if isinstance(event["error"], dict) else {}
        raise BitterbotError(
            str(err.get("message", "the node's model failed")),
            hint=err.get("hint"),
            code=str(err.get("code", "api_error")),
        )
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return None  # the usage event
    delta = choices[0].get("delta") or {}
    text = delta.get("content") if isinstance(delta, dict) else None
    return RemoteChunk(
        text=text if isinstance(text, str) else "", finish_reason=choices[0].get("finish_reason")
    )


def _api_error(status: int, raw: bytes) -> BitterbotError:
    try:
        err = json.loads(raw).get("error", {})
    except (ValueError, AttributeError):
        err = {}
    if not isinstance(err, dict):
        err = {}
    return BitterbotError(
        str(err.get("message", f"the node answered {status}")),
        hint=err.get("hint"),
        code=str(err.get("code", "api_error")),
    )
