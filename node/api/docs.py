"""API routes: the user's documents (list, search, ask with citations).

    GET  /v1/docs                 {"documents": [{path, kind, size, chunks, sha256, added_ms}]}
    POST /v1/docs/search          {"query", "k"?}            -> {"passages": [...]}
    POST /v1/docs/ask             {"question", "model"?, "extractive"?}
                                  -> {"answer", "found", "mode", "citations", "passages", ...}

Adding and removing documents stays a CLI action (it reads the user's files by path).
Bodies are limited to 64 KiB and validated before use; blocking work runs in threads.
"""

from __future__ import annotations

from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.api.body import read_json
from bitterbot.node.context import NodeContext
from bitterbot.node.docs_store import docs_index
from bitterbot.protocol.errors import ValidationError

MAX_BODY = 64 * 1024
MAX_K = 50
_limiter = trio.CapacityLimiter(2)


def text_field(body: dict[str, Any], name: str, limit: int = 2000) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"'{name}' must be a non-empty string")
    if len(value) > limit:
        raise ValidationError(f"'{name}' is over {limit} characters")
    return value


def k_field(body: dict[str, Any], default: int = 5) -> int:
    value = body.get("k", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
        raise ValidationError(f"'k' must be an integer from 1 to {MAX_K}")
    return value


async def _reranker(ctx: NodeContext) -> Any:
    from bitterbot.agent.encoder import get_encoder

    return await trio.to_thread.run_sync(get_encoder, ctx.home.path / "cache", limiter=_limiter)


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def list_documents(_request: Request) -> JSONResponse:
        index = docs_index(ctx)
        rows = await trio.to_thread.run_sync(index.list_files, limiter=_limiter)
        return JSONResponse({"documents": rows})

    async def search(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        query, k = text_field(body, "query"), k_field(body)
        index = docs_index(ctx)
        hits = await trio.to_thread.run_sync(index.search, query, k, limiter=_limiter)
        return JSONResponse({"passages": [h.to_dict() for h in hits]})

    async def ask(request: Request) -> JSONResponse:
        from bitterbot.agent.docs_qa import MAX_QUESTION_CHARS, answer_question

        body = await read_json(request, MAX_BODY)
        question = text_field(body, "question", MAX_QUESTION_CHARS)
        model = body.get("model")
        if model is not None and (not isinstance(model, str) or len(model) > 4096):
            raise ValidationError("'model' must be a model name")
        extractive = body.get("extractive", False)
        if not isinstance(extractive, bool):
            raise ValidationError("'extractive' must be true or false")
        index = docs_index(ctx)
        backend = None
        if not extractive:
            if ctx.agent is None:
                from bitterbot.agent.backends import ModelUnavailableError

                raise ModelUnavailableError(
                    "the agent runtime is not running in this node",
                    hint='ask with {"extractive": true}, or restart the node',
                )
            backend = await ctx.agent.backend(model or None)
        result = await answer_question(
            index,
            backend,
            question,
            reranker=await _reranker(ctx),
            max_passages=int(ctx.settings["docs.passages"]),
        )
        return JSONResponse(result.to_dict())

    return [
        Route("/v1/docs", list_documents, methods=["GET"]),
        Route("/v1/docs/search", search, methods=["POST"]),
        Route("/v1/docs/ask", ask, methods=["POST"]),
    ]
