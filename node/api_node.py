"""API: node status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.context import NodeContext
from bitterbot.node.peer import peer_id_of


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

    return [Route("/v1/node/status", status, methods=["GET"])]
