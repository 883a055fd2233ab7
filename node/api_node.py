"""API: node status and manual peer connection."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.context import NodeContext
from bitterbot.node.peer import peer_id_of
from bitterbot.protocol.errors import DecodeError, NetworkError, ValidationError

MAX_BODY = 4096


def status_of(ctx: NodeContext) -> dict[str, object]:
    out: dict[str, object] = {
        "peer_id": peer_id_of(ctx.identity),
        "uptime_s": round(ctx.uptime_s(), 3),
        "listen_addrs": [],
        "connected_peers": [],
        "routing_table_size": 0,
        "network": "off",
    }
    if ctx.p2p is not None:
        out.update(ctx.p2p.status())
    return out


async def _json_body(request: Request) -> dict[str, object]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ValidationError(f"request body over {MAX_BODY} bytes")
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise DecodeError("the request body is not JSON") from exc
    if not isinstance(data, dict):
        raise ValidationError("the request body must be a JSON object")
    return data


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def status(_request: Request) -> JSONResponse:
        return JSONResponse(status_of(ctx))

    async def connect(request: Request) -> JSONResponse:
        data = await _json_body(request)
        addr = data.get("addr")
        if not isinstance(addr, str):
            raise ValidationError('expected {"addr": "/ip4/.../tcp/.../p2p/<peer id>"}')
        if ctx.p2p is None:
            raise NetworkError("the p2p host is not running")
        peer_id = await ctx.p2p.connect(addr)
        return JSONResponse({"peer_id": peer_id})

    return [
        Route("/v1/node/status", status, methods=["GET"]),
        Route("/v1/node/connect", connect, methods=["POST"]),
    ]
