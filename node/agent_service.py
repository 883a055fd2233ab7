"""The agent runtime as a node subsystem: attached as ``ctx.agent``, model preloaded."""

from __future__ import annotations

import logging

import trio

from bitterbot.agent.runtime import AgentRuntime
from bitterbot.node.context import NodeContext
from bitterbot.protocol.errors import BitterbotError

logger = logging.getLogger(__name__)


async def start_agent(ctx: NodeContext, nursery: trio.Nursery) -> None:
    """Node starter: attach the agent runtime as ``ctx.agent`` and load the default model in
    the background, so the first question does not pay for it (a load failure is logged and
    reported again, with its fix, on the first request)."""
    runtime = AgentRuntime(ctx.settings, home=ctx.home.path)
    ctx.agent = runtime

    async def preload() -> None:
        try:
            await runtime.backend()
        except BitterbotError as exc:
            logger.warning("agent: default model %s not loaded: %s", runtime.default_model, exc)

    if ctx.settings["agent.preload"]:
        nursery.start_soon(preload)
