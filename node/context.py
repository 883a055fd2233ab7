"""What a running node hands its subsystems: settings, home, store, identity, and the parts.

Subsystems are attached as they start; an attribute left ``None`` means "not running in
this process" (for example the CLI running the agent in-process without a node).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bitterbot.node.config import Settings
from bitterbot.node.home import Home
from bitterbot.node.store import Store
from bitterbot.protocol.identity import Identity

if TYPE_CHECKING:  # the parts import this module; only their types are needed here
    from bitterbot.agent.docs_index import DocsIndex
    from bitterbot.agent.runtime import AgentRuntime
    from bitterbot.agent.skills import SkillManager
    from bitterbot.node.market import Market
    from bitterbot.node.p2p.host import P2PHost
    from bitterbot.node.pay.service import Payments
    from bitterbot.node.rep.service import Reputation


@dataclass
class NodeContext:
    settings: Settings
    home: Home
    store: Store
    identity: Identity
    started_at: float = field(default_factory=time.monotonic)
    p2p: P2PHost | None = None
    agent: AgentRuntime | None = None
    skills: SkillManager | None = None
    docs: DocsIndex | None = None  # document Q&A
    market: Market | None = None
    reputation: Reputation | None = None
    payments: Payments | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at
