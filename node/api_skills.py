"""API routes of skills.

- ``GET /v1/skills``: installed skills (the rows of ``bitterbot skill list --json``);
- ``GET /v1/skills/{name}``: one skill and its prompt with invisible characters shown;
- ``POST /v1/skills/{name}/run`` ``{"input": str, "max_tokens"?: int}``: run it
  (``{"name", "kind", "output", "stderr", "elapsed_ms", "tokens_used", "fuel_used"}``);
- ``POST /v1/skills/install?accept=declared``: body is a package file
  (``application/octet-stream``). An API client cannot be shown a consent screen, so it
  must say ``accept=declared`` (grant exactly what the package declares) or get 400;
- ``DELETE /v1/skills/{name}``.

Bodies are size-limited before they are read in full and validated before use.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.context import NodeContext
from bitterbot.protocol.errors import TooLargeError, ValidationError

MAX_RUN_BODY = 256 * 1024


def _manager(ctx: NodeContext) -> Any:
    if ctx.skills is None:
        from bitterbot.node.skills_store import open_manager

        ctx.skills = open_manager(ctx.home.path, ctx.store, ctx.settings)
    return ctx.skills


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"request body over {limit} bytes")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise TooLargeError(f"request body over {limit} bytes")
    return bytes(body)


def _row(record: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "name", "version", "kind", "id", "publisher", "source", "price", "description",
        "examples", "tags", "granted", "folders",
    )  # fmt: skip
    return {k: record.get(k) for k in keys}


def _generate(ctx: NodeContext, name: str) -> Any:
    if ctx.agent is None:
        return None
    from bitterbot.agent.skills import runtime_generate

    bundled = _manager(ctx).model_path(name)
    return runtime_generate(ctx.agent, str(bundled) if bundled else None)


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def list_skills(_request: Request) -> JSONResponse:
        return JSONResponse([_row(r) for r in _manager(ctx).installed()])

    async def show_skill(request: Request) -> JSONResponse:
        from bitterbot.protocol.skill_manifest import reveal_invisible

        manager = _manager(ctx)
        name = request.path_params["name"]
        record = manager.get(name)
        return JSONResponse({**_row(record), "prompt": reveal_invisible(manager.prompt_text(name))})

    async def run_skill(request: Request) -> JSONResponse:
        raw = await _body(request, MAX_RUN_BODY)
        try:
            obj = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ValidationError("the body is not JSON") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("input", ""), str):
            raise ValidationError('send {"input": "..."}')
        max_tokens = obj.get("max_tokens", int(ctx.settings["agent.max_tokens"]))
        if (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not 1 <= max_tokens <= 8192
        ):
            raise ValidationError("max_tokens must be an integer 1..8192")
        out = await _manager(ctx).run(
            request.path_params["name"],
            obj.get("input", ""),
            generate=_generate(ctx, request.path_params["name"]),
            max_tokens=max_tokens,
        )
        return JSONResponse(
            {
                "name": out.name,
                "kind": out.kind,
                "output": out.text,
                "stderr": out.stderr,
                "elapsed_ms": round(out.elapsed_ms, 3),
                "tokens_used": out.tokens_used,
                "fuel_used": out.fuel_used,
            }
        )

    async def install_skill(request: Request) -> JSONResponse:
        from bitterbot.agent.skills import accept_declared

        if request.query_params.get("accept") != "declared":
            raise ValidationError(
                "installing needs consent",
                hint="review the package (bitterbot skill show after a CLI install), then "
                "POST again with ?accept=declared to grant exactly what it declares",
                code="consent_needed",
            )
        manager = _manager(ctx)
        data = await _body(request, manager.limits.max_package_bytes + 4096)
        force = request.query_params.get("force") == "1"
        record = manager.install(data, accept_declared, force=force)
        return JSONResponse(_row(record), status_code=201)

    async def remove_skill(request: Request) -> JSONResponse:
        record = _manager(ctx).remove(request.path_params["name"])
        return JSONResponse({"removed": record["name"], "version": record["version"]})

    return [
        Route("/v1/skills", list_skills, methods=["GET"]),
        Route("/v1/skills/install", install_skill, methods=["POST"]),
        Route("/v1/skills/{name}", show_skill, methods=["GET"]),
        Route("/v1/skills/{name}", remove_skill, methods=["DELETE"]),
        Route("/v1/skills/{name}/run", run_skill, methods=["POST"]),
    ]
