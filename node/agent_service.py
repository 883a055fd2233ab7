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

    async def warm_privacy_gate() -> None:
        from bitterbot.agent.orchestrator import GATE_LIMITER
        from bitterbot.agent.privacy import PrivacyGate

        try:
            gate = PrivacyGate(ner=True)
            await trio.to_thread.run_sync(gate.warm_up, limiter=GATE_LIMITER)
        except BitterbotError as exc:
            logger.warning("privacy gate: NER model not loaded: %s", exc)

    if ctx.settings["agent.preload"]:
        nursery.start_soon(preload)
        # the first cloud request would otherwise wait seconds for the gate's model
        if ctx.settings["cloud.url"] and ctx.settings["privacy.ner"]:
            nursery.start_soon(warm_privacy_gate)
