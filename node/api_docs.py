"""API routes: docs (not built yet)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from bitterbot.node.context import NodeContext


def routes(ctx: NodeContext) -> list[BaseRoute]:
    return []
