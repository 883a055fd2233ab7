"""Reputation actions of a simnet node (node/rep/service.py running on the node's P2PHost).

Honest actions go through the node's own :class:`~bitterbot.node.rep.service.Reputation`.
The one adversary action, :meth:`RepActions.action_sybil_flood`, mints fresh identities
and stores their signed attestations in this node's ledger. Gossip only carries a peer's
own attestations (the validator checks the attester is the publishing peer), so the flood
reaches honest nodes the way any third-party attestation does: through repsync, when they
sync with this node.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from bitterbot.protocol.errors import ValidationError

MAX_WAIT_S = 120.0
MAX_SYBILS = 20_000


class RepActions:
    rep: Any
    p2p: Any
    _rep_changed: trio.Event

    async def start_reputation(self, nursery: trio.Nursery, store: Any, identity: Any) -> None:
        from bitterbot.node.rep.service import RepConfig, Reputation

        roots = [bytes.fromhex(r) for r in self.options.get("rep_roots", [])]  # type: ignore[attr-defined]
        config = RepConfig(
            roots=roots,
            sync_interval_s=float(self.options.get("rep_sync_interval_s", 60.0)),  # type: ignore[attr-defined]
        )
        self.rep = Reputation(store, identity, config)
        self._watch_additions()
        await nursery.start(self.rep.run, self.p2p)

    def _watch_additions(self) -> None:
        """Wake waiters whenever attestations enter the node's graph (gossip, sync, own).

        Wraps this instance's ``graph.add_all`` (called in the trio thread after each durable
        ledger write), so :meth:`action_wait_for` needs no polling: fifty nodes polling
        their ledgers every few ms would cost more CPU than the gossip being measured.
        """
        self._rep_changed = trio.Event()
        graph = self.rep.graph
        original = graph.add_all

        def add_all(atts: Any) -> Any:
            result = original(atts)
            self._rep_changed.set()
            self._rep_changed = trio.Event()
            return result

        graph.add_all = add_all

    def _need_rep(self) -> Any:
        if getattr(self, "rep", None) is None:
            raise ValidationError("this simnet node runs without reputation")
        return self.rep

    async def action_rep_attester(self) -> bytes:
        """This node's attester key (its ed25519 public key)."""
        key: bytes = self._need_rep().identity.public_key
        return key

    async def action_rep_head(self, attester: bytes) -> int:
        """Highest sequence number held from ``attester`` (0: none)."""
        head = self._need_rep().ledger.heads().get(bytes(attester))
        return int(head[1]) if head else 0

    async def action_attest(
        self, kind: str, skill: str = "", stars: int = 5, peer: bytes = b""
    ) -> dict[str, Any]:
        """Make one attestation of this node; ``wall`` is when it was stored (epoch s)."""
        rep = self._need_rep()
        if kind == "rate":
            att = rep.rate(skill, int(stars))
        elif kind == "flag":
            att = rep.flag(skill, b"\x01" * 32, "simnet")
        elif kind == "audit_pass":
            att = rep.audit(skill, True, b"\x02" * 32)
        elif kind == "vouch":
            att = rep.vouch(bytes(peer))
        else:
            raise ValidationError(f"unknown attestation kind {kind!r}")
        return {"attester": att.attester, "seq": att.seq, "wall": time.time()}

    async def action_wait_for(self, attester: bytes, seq: int, timeout: float) -> dict[str, Any]:
        """Wait until the ledger holds ``attester``'s attestation ``seq``; when (epoch s)."""
        rep = self._need_rep()
        attester, seq = bytes(attester), int(seq)
        with trio.move_on_after(min(float(timeout), MAX_WAIT_S)):
            while not rep.ledger.has(attester, seq):
                await self._rep_changed.wait()
            return {"held": True, "wall": time.time()}
        return {"held": False, "wall": time.time()}

    async def action_assess(self, skill: str) -> dict[str, Any]:
        assessment = self._need_rep().assess(str(skill))
        return {
            "tier": assessment.tier,
            "score": assessment.score,
            "support": assessment.support,
            "ignored": assessment.ignored,
            "total": assessment.total,
        }

    async def action_rep_sync(self, peer_id: str) -> dict[str, Any]:
        """Pull from ``peer_id`` every attestation above our heads (repsync)."""
        rep = self._need_rep()
        before = rep.ledger.count()
        started = time.perf_counter()
        await rep.sync_with(self.p2p, str(peer_id))
        return {
            "new": rep.ledger.count() - before,
            "ms": (time.perf_counter() - started) * 1000,
        }

    async def action_rep_mesh(self) -> dict[str, int]:
        """Sizes of this node's view of the reputation topic: mesh, subscribers, connections."""
        from bitterbot.node.rep.service import TOPIC

        return {
            "mesh": len(self.p2p.mesh_peers(TOPIC)),
            "topic_peers": len(self.p2p.topic_peers(TOPIC)),
            "connected": len(self.p2p.connected_peers()),
        }

    async def action_rep_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._need_rep().status()
        return status

    async def action_sybil_flood(
        self, count: int, skill: str, stars: int, against: str, seed: int
    ) -> dict[str, Any]:
        """Adversary: ``count`` fresh identities rate ``skill`` ``stars`` and ``against``
        1 star, and vouch for each other in a ring; all stored in this node's ledger."""
        import hashlib

        from bitterbot.protocol import attestation as att_mod
        from bitterbot.protocol.identity import Identity

        rep = self._need_rep()
        count = int(count)
        if not 1 <= count <= MAX_SYBILS:
            raise ValidationError(f"count must be 1..{MAX_SYBILS}")
        now = int(time.time() * 1000)

        def mint() -> list[Any]:
            idents = [
                Identity.from_seed(hashlib.sha256(f"sybil/{seed}/{i}".encode()).digest())
                for i in range(count)
            ]
            atts = []
            for i, ident in enumerate(idents):
                atts.append(att_mod.rating(ident, 1, now, skill, int(stars), "great"))
                atts.append(att_mod.rating(ident, 2, now, against, 1, "bad"))
                atts.append(att_mod.trust(ident, 3, now, idents[(i + 1) % count].public_key, True))
            return atts

        atts = await trio.to_thread.run_sync(mint)
        stored, _conflicts = await trio.to_thread.run_sync(rep.ledger.add_many, atts)
        rep.graph.add_all(stored)
        return {"identities": count, "attestations": len(stored)}
