"""Reputation storage: append-only attestations in LMDB, and the per-attester gossip rate.

:class:`Ledger` keys attestations by attester and sequence number; the node's own wait in
``rep.pending`` until gossiped. Only verified attestations may be added. SPEC.md section 11.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from bitterbot.protocol import attestation as att_mod
from bitterbot.protocol.attestation import Attestation
from bitterbot.protocol.errors import BitterbotError, ValidationError

logger = logging.getLogger(__name__)

DB_ATT = "rep.att"  # attester(32) + seq(8, big-endian) -> signed envelope bytes
DB_HEAD = "rep.head"  # attester -> [contiguous seq, highest seq, count]
DB_PENDING = "rep.pending"  # own attestations not yet gossiped: attester + seq -> 1


def _key(attester: bytes, seq: int) -> bytes:
    return attester + seq.to_bytes(8, "big")


class Ledger:
    """Append-only attestation storage. Only verified attestations may be added."""

    def __init__(self, store: Any) -> None:
        self.store = store

        # Open the named databases in a write transaction: a handle first opened inside a
        # read transaction is dropped when that transaction ends, and LMDB then hands the
        # same slot to the next database opened (reads of one database return another's).
        def open_all(txn: Any) -> None:
            for name in (DB_ATT, DB_HEAD, DB_PENDING):
                txn._db(name)

        store.transact(open_all)

    @staticmethod
    def _put(txn: Any, att: Attestation, pending: bool) -> str:
        key = _key(att.attester, att.seq)
        old = txn.get(DB_ATT, key)
        if old is not None:
            return "duplicate" if old == att.data else "conflict"
        txn.put(DB_ATT, key, att.data)
        contig, high, count = txn.get(DB_HEAD, att.attester, [0, 0, 0])
        high = max(high, att.seq)
        count += 1
        if att.seq == contig + 1:
            contig += 1
            while txn.get(DB_ATT, _key(att.attester, contig + 1)) is not None:
                contig += 1
        txn.put(DB_HEAD, att.attester, [contig, high, count])
        if pending:
            txn.put(DB_PENDING, key, 1)
        return "new"

    def add_many(self, atts: Iterable[Attestation]) -> tuple[list[Attestation], int]:
        """Store in one durable transaction; returns (new ones, number of conflicts)."""
        items = list(atts)

        def write(txn: Any) -> tuple[list[Attestation], int]:
            new, conflicts = [], 0
            for att in items:
                outcome = self._put(txn, att, pending=False)
                if outcome == "new":
                    new.append(att)
                elif outcome == "conflict":
                    conflicts += 1
            return new, conflicts

        result: tuple[list[Attestation], int] = self.store.transact(write)
        return result

    def create(self, make: Callable[[int], Attestation], attester: bytes) -> Attestation:
        """Allocate the attester's next sequence number and store ``make(seq)`` as pending.

        One write transaction, so a CLI process and the running node never reuse a number.
        """

        def write(txn: Any) -> Attestation:
            _contig, high, _count = txn.get(DB_HEAD, attester, [0, 0, 0])
            att = make(high + 1)
            if self._put(txn, att, pending=True) != "new":  # pragma: no cover - seq is fresh
                raise ValidationError("sequence number already used")
            return att

        result: Attestation = self.store.transact(write)
        return result

    def get(self, attester: bytes, seq: int) -> bytes | None:
        """The stored envelope bytes of ``attester``'s statement ``seq``, if any."""
        with self.store.read() as txn:
            data = txn.get(DB_ATT, _key(attester, seq))
        return None if data is None else bytes(data)

    def has(self, attester: bytes, seq: int) -> bool:
        with self.store.read() as txn:
            return txn.get(DB_ATT, _key(attester, seq)) is not None

    def count(self) -> int:
        with self.store.read() as txn:
            return int(txn.count(DB_ATT))

    def heads(self) -> dict[bytes, tuple[int, int, int]]:
        with self.store.read() as txn:
            return {bytes(k): (v[0], v[1], v[2]) for k, v in txn.items(DB_HEAD)}

    def load_all(self) -> list[Attestation]:
        """Every stored attestation, its shape and rules checked again (not the signature,
        verified before it was stored: that check is 90% of the cost of a load)."""
        out = []
        with self.store.read() as txn:
            rows = [bytes(v) for _k, v in txn.items(DB_ATT)]
        for data in rows:
            try:
                out.append(att_mod.parse_stored(data))
            except BitterbotError as exc:
                logger.warning("skipping a corrupt stored attestation: %s", exc)
        return out

    def pending(self) -> list[Attestation]:
        with self.store.read() as txn:
            keys = [bytes(k) for k, _v in txn.items(DB_PENDING)]
            rows = [txn.get(DB_ATT, k) for k in keys]
        return [att_mod.parse_stored(bytes(r)) for r in rows if r is not None]

    def mark_sent(self, atts: Iterable[Attestation]) -> None:
        keys = [_key(a.attester, a.seq) for a in atts]

        def write(txn: Any) -> None:
            for k in keys:
                txn.delete(DB_PENDING, k)

        self.store.transact(write)

    def newer_than(self, heads: dict[bytes, int], limit: int) -> list[bytes]:
        """Attestations with a seq above ``heads[attester]`` (0 for unknown attesters)."""
        out: list[bytes] = []
        with self.store.read() as txn:
            for attester, (_contig, high, _count) in txn.items(DB_HEAD):
                after = heads.get(bytes(attester), 0)
                if high <= after:
                    continue  # the requester has all of this attester's statements
                for key, data in txn.items(DB_ATT, prefix=bytes(attester)):
                    if int.from_bytes(key[32:], "big") > after:
                        out.append(bytes(data))
                        if len(out) >= limit:
                            return out
        return out


class RateBuckets:
    """Token bucket per attester: ``burst`` at once, then ``rate_per_min``."""

    def __init__(self, rate_per_min: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._state: dict[bytes, tuple[float, float]] = {}

    def take(self, who: bytes, n: int) -> bool:
        now = self.clock()
        tokens, last = self._state.get(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < n:
            self._state[who] = (tokens, now)
            return False
        self._state[who] = (tokens - n, now)
        if len(self._state) > 100_000:  # forget the idlest half (they refill to full anyway)
            for k in sorted(self._state, key=lambda k: self._state[k][1])[:50_000]:
                del self._state[k]
        return True
