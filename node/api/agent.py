"""API routes of the agent: OpenAI-compatible chat completions and models, and ``ask``.

- ``POST /v1/chat/completions``: OpenAI's request shape (messages, model, max_tokens,
  temperature, top_p, stop, seed, stream, response_format json_schema); answers as
  ``chat.completion`` JSON or, with ``"stream": true``, ``chat.completion.chunk`` SSE events
  ending with ``data: [DONE]``. A history longer than the context is trimmed oldest-first
  and the response says so: header ``X-Bitterbot-Trimmed: N`` and a ``bitterbot`` field.
  A client that disconnects mid-stream cancels the generation.
- ``GET /v1/models``: what ``bitterbot models list`` shows, in OpenAI's list shape.
- ``POST /v1/agent/ask`` ``{"question", "model"?, "max_tokens"?}``: the ``bitterbot ask``
  result (``answer, route, backend, model, latency_ms, tokens_in, tokens_out, cloud_bytes``).

Requests are size-limited (:data:`MAX_BODY_BYTES`) and validated before use.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bitterbot.agent.backends import GenerateOptions, Message, ModelUnavailableError
from bitterbot.agent.models import list_models
from bitterbot.agent.runtime import AgentRuntime, PreparedChat
from bitterbot.node.api.body import read_json
from bitterbot.node.context import NodeContext
from bitterbot.protocol.errors import BitterbotError, ValidationError

logger = logging.getLogger(__name__)
T = TypeVar("T")

AGENT_NOT_RUNNING = "agent_not_running"
MAX_BODY_BYTES = 4 << 20
MAX_MESSAGES = 1000
MAX_ANSWER_TOKENS = 16384
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: only text is understood here
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise ValidationError(
                    f"messages[{index}]: only text content parts are supported",
                    hint="send text; images and audio are not supported by local models",
                )
            if not isinstance(part.get("text"), str):
                raise ValidationError(f"messages[{index}]: a text part needs a string 'text'")
            parts.append(part["text"])
        return "".join(parts)
    raise ValidationError(f"messages[{index}].content must be text")


def parse_messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise ValidationError("'messages' must be a non-empty list")
    if len(raw) > MAX_MESSAGES:
        raise ValidationError(f"too many messages (over {MAX_MESSAGES})")
    out: list[Message] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValidationError(
                f"messages[{i}] needs a role of system, user or assistant",
                hint="tool and function messages are not supported",
            )
        out.append(
            {"role": ROLES[message["role"]], "content": _content_text(message.get("content"), i)}
        )
    if out[-1]["role"] != "user":
        raise ValidationError("the last message must be from the user")
    return out


def _number(data: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValidationError(f"'{key}' must be a number from {low} to {high}")
    return float(value)


def _int(data: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"'{key}' must be an integer from {low} to {high}")
    return value


def parse_options(runtime: AgentRuntime, data: dict[str, Any]) -> GenerateOptions:
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    ):
        raise ValidationError("'stop' must be a string or up to 4 strings")
    schema = None
    fmt = data.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ValidationError("response_format.json_schema.schema must be an object")
    max_tokens = _int(data, "max_completion_tokens", 1, MAX_ANSWER_TOKENS)
    if max_tokens is None:
        max_tokens = _int(data, "max_tokens", 1, MAX_ANSWER_TOKENS)
    return runtime.options(
        max_tokens=max_tokens,
        temperature=_number(data, "temperature", 0.0, 2.0),
        top_p=_number(data, "top_p", 0.0, 1.0),
        stop=stop,
        seed=_int(data, "seed", -(2**63), 2**63 - 1),
        json_schema=schema,
    )


def _model_name(data: dict[str, Any]) -> str | None:
    model = data.get("model")
    if model is None or model in {"", "default"}:
        return None
    if not isinstance(model, str) or len(model) > 4096:
        raise ValidationError("'model' must be a model name")
    return model


def _runtime(ctx: NodeContext) -> AgentRuntime:
    if ctx.agent is None:
        raise ModelUnavailableError(
            "the agent runtime is not running in this node",
            hint="restart the node; see its log for why the agent did not start",
            code=AGENT_NOT_RUNNING,
        )
    runtime: AgentRuntime = ctx.agent
    return runtime


async def until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run ``work``, cancelling it if the client goes away first (None then).

    The body has been read, so the next ASGI message is ``http.disconnect``: a client that
    gives up (Ctrl-C on ``bitterbot ask``, a timeout) stops its generation on the node."""
    result: list[T] = []
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        result.append(await work())
        nursery.cancel_scope.cancel()
    return result[0] if result else None


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _trim_info(prepared: PreparedChat) -> dict[str, Any]:
    return {"trimmed_messages": len(prepared.trimmed), "notice": prepared.notice}


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def chat_completions(request: Request) -> Response:
        runtime = _runtime(ctx)
        data = await read_json(request, MAX_BODY_BYTES)
        messages = parse_messages(data.get("messages"))
        options = parse_options(runtime, data)
        prepared = await runtime.prepare(messages, model=_model_name(data), options=options)
        ident = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        headers = {"X-Bitterbot-Trimmed": str(len(prepared.trimmed))}
        if prepared.notice:  # what was left out to fit the context (header text is ASCII)
            headers["X-Bitterbot-Notice"] = prepared.notice.encode("ascii", "replace").decode()
        if data.get("stream") is True:
            usage = isinstance(data.get("stream_options"), dict) and bool(
                data["stream_options"].get("include_usage")
            )
            events = _sse(runtime, prepared, ident, created, usage)
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        done = await until_disconnect(request, lambda: runtime.complete(prepared))
        if done is None:
            return Response(status_code=499)  # client closed the request; nobody reads this
        body = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": done.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done.text},
                    "finish_reason": _finish(done.finish_reason),
                }
            ],
            "usage": {
                "prompt_tokens": done.tokens_in,
                "completion_tokens": done.tokens_out,
                "total_tokens": done.tokens_in + done.tokens_out,
            },
            "bitterbot": {**_trim_info(prepared), "backend": done.backend},
        }
        return JSONResponse(body, headers=headers)

    async def models(_request: Request) -> Response:
        runtime = _runtime(ctx)
        rows, _notes = await trio.to_thread.run_sync(
            lambda: list_models(runtime.settings, runtime.home)
        )
        data = [
            {
                "id": row["name"],
                "object": "model",
                "created": 0,
                "owned_by": "bitterbot",
                "backend": row["backend"],
                "source": row["source"],
            }
            for row in rows
        ]
        return JSONResponse({"object": "list", "data": data})

    async def ask(request: Request) -> Response:
        _runtime(ctx)  # refuses clearly when the agent is not running in this node
        data = await read_json(request, 1 << 20)
        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ValidationError("'question' must be non-empty text")
        from bitterbot.node.pipeline import pipeline_of

        max_tokens = _int(data, "max_tokens", 1, MAX_ANSWER_TOKENS)
        model = _model_name(data)
        result = await until_disconnect(
            request, lambda: pipeline_of(ctx).ask(question, model=model, max_tokens=max_tokens)
        )
        if result is None:
            return Response(status_code=499)
        return JSONResponse(result)

    return [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/agent/ask", ask, methods=["POST"]),
    ]


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _sse(
    runtime: AgentRuntime, prepared: PreparedChat, ident: str, created: int, usage: bool
) -> AsyncIterator[bytes]:
    """SSE events; if the client goes away, the cancellation closes the model's stream."""
    model = prepared.backend.model

    def chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield _event(chunk({"role": "assistant", "content": ""}, None))
    final = None
    try:
        async with aclosing(runtime.stream(prepared)) as stream:
            async for piece in stream:
                if piece.finish_reason is not None:
                    final = piece
                if piece.text:
                    yield _event(chunk({"content": piece.text}, None))
    except BitterbotError as exc:  # headers are sent: report in-band, as OpenAI does
        yield _event({"error": exc.to_dict()})
        return
    yield _event(chunk({}, _finish(final.finish_reason if final else None)))
    if usage and final is not None:
        tokens_in, tokens_out = final.tokens_in or 0, final.tokens_out or 0
        yield _event(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": tokens_in,
                    "completion_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
            }
        )
    yield b"data: [DONE]\n\n"
