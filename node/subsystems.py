"""The subsystems a full node runs, in start order (see node/service.py for the lifecycle)."""

from __future__ import annotations

from typing import Any


def default_starters() -> list[Any]:
    """Agent, skills (and the router), market, reputation, payments: each attaches itself
    to the NodeContext."""
    from bitterbot.node.agent_service import start_agent
    from bitterbot.node.market import start_market
    from bitterbot.node.pay.service import start_payments
    from bitterbot.node.pipeline import start_skills
    from bitterbot.node.rep.service import start_reputation

    return [start_agent, start_skills, start_market, start_reputation, start_payments]
