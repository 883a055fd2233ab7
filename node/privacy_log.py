"""The privacy audit log (LMDB): every request that left the device, and cloud spend.

One record per outgoing request, written before the answer is used: time, provider,
model, bytes sent, entity counts per type, and the SHA-256 of the exact payload (the
payload itself is never stored). Escalation decisions are kept next to it with their
reasons, and daily spend in integer micro-USD (the :class:`SpendLedger` of
:mod:`bitterbot.agent.escalation`).

Databases: ``privacy_log`` (key: 20-digit microsecond time + sequence), ``escalation``
(same keys), ``cloud_spend`` (key: UTC day ``YYYY-MM-DD``).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bitterbot.node.store import Store, Txn
from bitterbot.protocol.errors import ValidationError

LOG_DB = "privacy_log"
DECISIONS_DB = "escalation"
SPEND_DB = "cloud_spend"
_seq = itertools.count()


@dataclass
class AuditEntry:
    time_s: float
    provider: str
    model: str
    bytes_sent: int
    entity_counts: dict[str, int]
    payload_sha256: str
    route: str = "cloud"


def payload_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _key(time_s: float) -> str:
    return f"{int(time_s * 1_000_000):020d}-{next(_seq) % 1_000_000:06d}"


class PrivacyLog:
    """Audit sink (for the orchestrator), decision sink and spend ledger, in one store."""

    def __init__(self, store: Store, *, clock: Any = time.time) -> None:
        self.store = store
        self.clock = clock

    # --- outgoing requests ------------------------------------------------------------
    def record_request(
        self,
        *,
        provider: str,
        model: str,
        payload: bytes,
        entity_counts: Mapping[str, int],
        time_s: float | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            time_s=self.clock() if time_s is None else time_s,
            provider=provider,
            model=model,
            bytes_sent=len(payload),
            entity_counts={str(k): int(v) for k, v in entity_counts.items()},
            payload_sha256=payload_hash(payload),
        )

        def put(txn: Txn) -> None:
            txn.put(LOG_DB, _key(entry.time_s), asdict(entry))

        self.store.transact(put)
        return entry

    def entries(self, *, limit: int | None = None, since_s: float = 0.0) -> list[dict[str, Any]]:
        """Newest first."""
        out: list[dict[str, Any]] = []
        with self.store.read() as txn:
            for _key_bytes, value in txn.items(LOG_DB, reverse=True):
                if value["time_s"] < since_s or (limit is not None and len(out) >= limit):
                    break
                out.append(value)
        return out

    def total_bytes(self, since_s: float = 0.0) -> int:
        return sum(int(e["bytes_sent"]) for e in self.entries(since_s=since_s))

    # --- escalation decisions -----------------------------------------------------------
    def record_decision(self, decision: Any) -> None:
        value = asdict(decision)

        def put(txn: Txn) -> None:
            txn.put(DECISIONS_DB, _key(value.get("time_s") or self.clock()), value)

        self.store.transact(put)

    def decisions(self, *, limit: int = 100) -> list[dict[str, Any]]:
        with self.store.read() as txn:
            return [v for _, v in itertools.islice(txn.items(DECISIONS_DB, reverse=True), limit)]

    # --- spend ledger (integer micro-USD per UTC day) ------------------------------------
    def spent(self, day: str) -> int:
        with self.store.read() as txn:
            return int(txn.get(SPEND_DB, day, 0))

    def add(self, day: str, microusd: int) -> int:
        if microusd < 0:
            raise ValidationError("spend is never negative")

        def bump(txn: Txn) -> int:
            total = int(txn.get(SPEND_DB, day, 0)) + int(microusd)
            txn.put(SPEND_DB, day, total)
            return total

        return self.store.transact(bump)
