"""The list of route factories the local API mounts; each subsystem adds its own module."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute

from bitterbot.node.context import NodeContext

RouteFactory = Callable[[NodeContext], list[BaseRoute]]


def _factories() -> list[RouteFactory]:
    from bitterbot.node.api import agent, docs, market, node, pay, rep, skills

    return [
        node.routes,
        agent.routes,
        skills.routes,
        docs.routes,
        market.routes,
        rep.routes,
        pay.routes,
    ]


ROUTE_FACTORIES: list[RouteFactory] = _factories()
