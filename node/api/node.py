"""API: node status and manual peer connection."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.api.body import read_json
from bitterbot.node.context import NodeContext
from bitterbot.node.p2p.peer_id import peer_id_of
from bitterbot.protocol.errors import NotRunningError, ValidationError

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


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def status(_request: Request) -> JSONResponse:
        return JSONResponse(status_of(ctx))

    async def connect(request: Request) -> JSONResponse:
        data = await read_json(request, MAX_BODY)
        addr = data.get("addr")
        if not isinstance(addr, str):
            raise ValidationError('expected {"addr": "/ip4/.../tcp/.../p2p/<peer id>"}')
        if ctx.p2p is None:
            raise NotRunningError(
                "the p2p host is not running", hint="restart the node", code="p2p_not_running"
            )
        peer_id = await ctx.p2p.connect(addr)
        return JSONResponse({"peer_id": peer_id})

    return [
        Route("/v1/node/status", status, methods=["GET"]),
        Route("/v1/node/connect", connect, methods=["POST"]),
    ]
