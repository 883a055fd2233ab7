"""API routes of skills.

- ``GET /v1/skills``: installed skills (the rows of ``bitterbot skill list --json``);
- ``GET /v1/skills/{name}``: one skill and its prompt with invisible characters shown;
- ``POST /v1/skills/{name}/run`` ``{"input": str, "max_tokens"?: int}``: run it
  (``{"name", "kind", "output", "stderr", "elapsed_ms", "tokens_used", "fuel_used"}``);
- ``POST /v1/skills/install?accept=declared``: body is a package file
  (``application/octet-stream``). An API client cannot be shown a consent screen, so it
  must say ``accept=declared`` (grant exactly what the package declares) or get 400. The
  install takes the same path as ``bitterbot skill install`` (:mod:`bitterbot.node.install`):
  a skill flagged by someone this node trusts, or revoked, is refused (403
  ``install_refused``) unless ``ignore_reputation=1``; ``force=1`` allows a downgrade;
- ``DELETE /v1/skills/{name}``.

Bodies are size-limited before they are read in full and validated before use.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.api.body import read_body, read_json
from bitterbot.node.context import NodeContext
from bitterbot.node.skills_store import run_output, skill_row, skills_of
from bitterbot.protocol.errors import ValidationError

MAX_RUN_BODY = 256 * 1024


def _generate(ctx: NodeContext, name: str) -> Any:
    if ctx.agent is None:
        return None
    from bitterbot.agent.skills import runtime_generate

    bundled = skills_of(ctx).model_path(name)
    return runtime_generate(ctx.agent, str(bundled) if bundled else None)


def _seeder(ctx: NodeContext) -> Any:
    """Seeding through the running market, or none when the node's network is off."""
    if ctx.market is None:
        return None
    market = ctx.market

    async def seed(package_id: str) -> dict[str, Any]:
        report: dict[str, Any] = await market.seed(package_id, None)
        return report

    return seed


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def list_skills(_request: Request) -> JSONResponse:
        return JSONResponse([skill_row(r) for r in skills_of(ctx).installed()])

    async def show_skill(request: Request) -> JSONResponse:
        from bitterbot.protocol.skill_manifest import reveal_invisible

        manager = skills_of(ctx)
        name = request.path_params["name"]
        record = manager.get(name)
        return JSONResponse(
            {**skill_row(record), "prompt": reveal_invisible(manager.prompt_text(name))}
        )

    async def run_skill(request: Request) -> JSONResponse:
        obj = await read_json(request, MAX_RUN_BODY)
        if not isinstance(obj.get("input", ""), str):
            raise ValidationError('send {"input": "..."}')
        max_tokens = obj.get("max_tokens", int(ctx.settings["agent.max_tokens"]))
        if (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not 1 <= max_tokens <= 8192
        ):
            raise ValidationError("max_tokens must be an integer 1..8192")
        out = await skills_of(ctx).run(
            request.path_params["name"],
            obj.get("input", ""),
            generate=_generate(ctx, request.path_params["name"]),
            max_tokens=max_tokens,
        )
        return JSONResponse(run_output(out))

    async def install_skill(request: Request) -> JSONResponse:
        from bitterbot.agent.skills import accept_declared
        from bitterbot.node.install import install_package
        from bitterbot.node.rep.service import reputation_of

        if request.query_params.get("accept") != "declared":
            raise ValidationError(
                "installing needs consent",
                hint="review the package (bitterbot skill show after a CLI install), then "
                "POST again with ?accept=declared to grant exactly what it declares",
                code="consent_needed",
            )
        manager = skills_of(ctx)
        data = await read_body(request, manager.limits.max_package_bytes + 4096)
        installed = await install_package(
            data,
            manager=manager,
            gate=reputation_of(ctx),
            home_path=ctx.home.path,
            consent=accept_declared,
            force=request.query_params.get("force") == "1",
            ignore_reputation=request.query_params.get("ignore_reputation") == "1",
            seed=_seeder(ctx),
        )
        return JSONResponse(
            {**skill_row(installed.record), "seeding": installed.seeding}, status_code=201
        )

    async def remove_skill(request: Request) -> JSONResponse:
        record = skills_of(ctx).remove(request.path_params["name"])
        return JSONResponse({"removed": record["name"], "version": record["version"]})

    return [
        Route("/v1/skills", list_skills, methods=["GET"]),
        Route("/v1/skills/install", install_skill, methods=["POST"]),
        Route("/v1/skills/{name}", show_skill, methods=["GET"]),
        Route("/v1/skills/{name}", remove_skill, methods=["DELETE"]),
        Route("/v1/skills/{name}/run", run_skill, methods=["POST"]),
    ]
