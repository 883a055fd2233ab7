"""What a running node hands its subsystems: settings, home, store, identity, and the parts.

Subsystems are attached as they start; an attribute left ``None`` means "not running in
this process" (for example the CLI running the agent in-process without a node).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bitterbot.node.config import Settings
from bitterbot.node.home import Home
from bitterbot.node.store import Store
from bitterbot.protocol.identity import Identity


@dataclass
class NodeContext:
    settings: Settings
    home: Home
    store: Store
    identity: Identity
    started_at: float = field(default_factory=time.monotonic)
    p2p: Any = None  # bitterbot.node.p2p.host.P2PHost
    agent: Any = None  # bitterbot.agent runtime
    skills: Any = None  # installed skills manager
    docs: Any = None  # document Q&A
    market: Any = None
    reputation: Any = None
    payments: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at
