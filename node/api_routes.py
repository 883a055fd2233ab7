"""The list of route factories the local API mounts; each subsystem adds its own module."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute

from bitterbot.node.context import NodeContext

RouteFactory = Callable[[NodeContext], list[BaseRoute]]


def _factories() -> list[RouteFactory]:
    from bitterbot.node import (
        api_agent,
        api_docs,
        api_market,
        api_node,
        api_pay,
        api_rep,
        api_skills,
    )

    return [
        api_node.routes,
        api_agent.routes,
        api_skills.routes,
        api_docs.routes,
        api_market.routes,
        api_rep.routes,
        api_pay.routes,
    ]


ROUTE_FACTORIES: list[RouteFactory] = _factories()
