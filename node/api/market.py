"""API routes of the skill market (used by ``bitterbot skill publish|search|install``).

- ``POST /v1/market/publish`` ``{"path": str}``: publish a signed package file on this machine;
- ``GET /v1/market/search?name=N`` or ``?tag=T``: offers found on the network;
- ``POST /v1/market/fetch`` ``{"source": name | package ID, "publisher"?: key,
  "max_price"?: int}``: download and verify into the node's package folder, buying a paid
  skill for at most ``max_price`` (installing is the caller's step, with consent);
- ``POST /v1/market/seed`` ``{"id": str, "record"?: hex}``: provide an installed free skill;
- ``GET /v1/market/status``: last announcement, served packages, penalized providers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.api.body import read_json
from bitterbot.node.context import NodeContext
from bitterbot.protocol.errors import (
    NotFoundError,
    NotRunningError,
    ValidationError,
)

if TYPE_CHECKING:
    from bitterbot.node.rep.service import Reputation

MAX_BODY = 16 * 1024


def _market(ctx: NodeContext) -> Any:
    if ctx.market is None:
        raise NotRunningError(
            "the market is not running on this node",
            hint="restart the node; see its log for why the network did not start",
            code="market_not_running",
        )
    return ctx.market


def _str(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 4096:
        raise ValidationError(f"field {key!r} must be a non-empty string")
    return value


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def publish(request: Request) -> JSONResponse:
        path = Path(_str(await read_json(request, MAX_BODY), "path") or "")
        if not path.is_file():
            raise NotFoundError(f"no package file {path}")
        return JSONResponse(await _market(ctx).publish(path.read_bytes()))

    async def search(request: Request) -> JSONResponse:
        name = request.query_params.get("name")
        tag = request.query_params.get("tag")
        offers = await _market(ctx).search(name=name, tag=tag)
        rows = [o.to_obj() for o in offers]
        if ctx.reputation is not None:
            for row in rows:
                row["reputation"] = _reputation(ctx.reputation, row)
        return JSONResponse({"offers": rows})

    async def fetch(request: Request) -> JSONResponse:
        data = await read_json(request, MAX_BODY)
        max_price = data.get("max_price", 0)
        if isinstance(max_price, bool) or not isinstance(max_price, int) or max_price < 0:
            raise ValidationError("max_price must be a non-negative integer")
        info = await _market(ctx).fetch(
            _str(data, "source") or "", _str(data, "publisher", required=False), max_price
        )
        info["record"] = info["record"].hex()
        return JSONResponse(info)

    async def seed(request: Request) -> JSONResponse:
        data = await read_json(request, MAX_BODY)
        record_hex = _str(data, "record", required=False)
        try:
            record = bytes.fromhex(record_hex) if record_hex else None
        except ValueError as exc:
            raise ValidationError("record must be hex") from exc
        return JSONResponse(await _market(ctx).seed(_str(data, "id") or "", record or None))

    async def status(_request: Request) -> JSONResponse:
        market = _market(ctx)
        return JSONResponse(
            {"last_announce": market.last_announce, "penalties": market.penalties()}
        )

    return [
        Route("/v1/market/publish", publish, methods=["POST"]),
        Route("/v1/market/search", search, methods=["GET"]),
        Route("/v1/market/fetch", fetch, methods=["POST"]),
        Route("/v1/market/seed", seed, methods=["POST"]),
        Route("/v1/market/status", status, methods=["GET"]),
    ]


def _reputation(reputation: Reputation, row: dict[str, Any]) -> dict[str, Any]:
    """Tier and score of an offer from this node's reputation ledger."""
    from bitterbot.protocol.identity import decode_key

    assessment = reputation.assess(row["package_id"], decode_key(row["publisher"]))
    score = None if assessment.score is None else round(assessment.score, 3)
    return {"tier": assessment.tier, "score": score}
