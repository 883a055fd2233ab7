"""Payments on a node, shared parts: LMDB records, group commit, errors, wire limits.

The payee persists every voucher before it acknowledges it; :class:`GroupCommitter` batches
concurrent acceptances into one synced LMDB transaction, so durability costs one fsync per
batch, not per voucher.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from bitterbot.node.store import Store, Txn
from bitterbot.protocol import channel as ch
from bitterbot.protocol import license as lic
from bitterbot.protocol import settlement as rules
from bitterbot.protocol.errors import (
    BitterbotError,
    NotFoundError,
    PaymentError,
)
from bitterbot.protocol.identity import Identity

logger = logging.getLogger(__name__)

PROTOCOL_ID = "/bitterbot/pay/1.0.0"
MAX_REQUEST = 64 * 1024
MAX_REPLY = 64 * 1024
MAX_CALL_IO = 48 * 1024
REQUEST_TIMEOUT_S = 30.0

CHANNELS = "pay.channels"  # channel ID -> channel record (both roles)
PEER_CHANNEL = "pay.peer_channel"  # payer: payee peer ID -> current channel ID
SOLD = "pay.sold"  # payee: payer key + purchase/call ID -> what was delivered
BOUGHT = "pay.bought"  # payer: purchase/call ID -> voucher, then license and key
OFFERS = "pay.offers"  # payee: skill name -> price, versions, content key, splits
OWED = "pay.owed"  # payee: co-author/auditor key -> revenue share not yet forwarded

PAYER, PAYEE = "payer", "payee"
OPENING = "opening"


class PriceError(PaymentError):
    code = "price_mismatch"


class PriceTooHighError(PaymentError):
    code = "price_too_high"


class DepositMissingError(PaymentError):
    code = "deposit_missing"


class NoLicenseError(lic.LicenseError):
    code = "license_missing"


def _error_classes() -> dict[str, type[BitterbotError]]:
    """Payment error classes by code; a peer can only make us raise one of these."""
    out: dict[str, type[BitterbotError]] = {NotFoundError.code: NotFoundError}
    todo: list[type[BitterbotError]] = [PaymentError]
    while todo:
        cls = todo.pop()
        out.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return out


def remote_error(err: Any) -> BitterbotError:
    """The typed error a peer reported. Codes outside the payment errors (and not found)
    become a plain PaymentError: a peer must not make us raise, say, a config error."""
    if not isinstance(err, dict):
        return PaymentError("the peer refused the request without saying why")
    code = str(err.get("code", "payment_error"))[:64]
    message = str(err.get("message", ""))[:500]
    hint = err.get("hint")
    cls = _error_classes().get(code)
    if cls is None:
        cls, code = PaymentError, f"remote_{code}"[:64]
    return cls(f"peer refused: {message}", hint=str(hint)[:300] if hint else None, code=code)


def open_databases(store: Store, names: tuple[str, ...]) -> None:
    """Open our named databases in a write transaction first.

    node/store.py caches a handle first opened in a read transaction, and LMDB then refuses
    cursors on it (mdb_cursor_open: EINVAL) in a fresh process; opening in a committed write
    transaction gives handles valid everywhere.
    """
    store.transact(lambda txn: [txn.count(name) for name in names])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def channel_state(rec: dict[str, Any], terms: ch.ChannelTerms | None = None) -> ch.ChannelState:
    """The state machine's view of a stored channel record (``terms`` if already parsed)."""
    if terms is None:
        terms = ch.OpenMessage.from_obj(rec["open"]).terms
    state = rec["state"] if rec["state"] in (ch.OPEN, ch.CLOSING, ch.CLOSED) else ch.CLOSED
    return ch.ChannelState(terms, rec["nonce"], rec["amount"], state)


def channel_summary(cid: bytes, rec: dict[str, Any]) -> dict[str, Any]:
    terms = ch.OpenMessage.from_obj(rec["open"]).terms
    return {
        "channel": cid.hex(),
        "role": rec["role"],
        "peer": rec["peer"],
        "state": rec["state"],
        "capacity": terms.capacity,
        "paid": rec["amount"],
        "remaining": terms.capacity - rec["amount"],
        "nonce": rec["nonce"],
        "backend": terms.backend,
        "dispute_window_ms": terms.dispute_window_ms,
    }


# --- group commit -------------------------------------------------------------------


@dataclass
class _Item:
    fn: Callable[[Txn], Any]
    done: trio.Event
    ok: bool = False
    result: Any = None


class GroupCommitter:
    """Runs many small write functions in one synced LMDB transaction.

    Each function must raise (a :class:`BitterbotError`) *before* writing anything when it
    refuses its input; then only it fails and the rest of the batch commits.
    """

    def __init__(self, store: Store, max_batch: int = 256) -> None:
        self.store = store
        self.max_batch = max_batch
        self._send, self._recv = trio.open_memory_channel[_Item](math.inf)
        self._limiter = trio.CapacityLimiter(1)
        self._running = False
        self.batches = 0
        self.items = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._running = True
        task_status.started()
        try:
            async for first in self._recv:
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        batch.append(self._recv.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._commit(batch)
        finally:
            self._running = False

    async def _commit(self, batch: list[_Item]) -> None:
        try:
            results = await trio.to_thread.run_sync(self._commit_sync, batch, limiter=self._limiter)
        except BitterbotError as exc:
            results = [(False, exc)] * len(batch)
        self.batches += 1
        self.items += len(batch)
        for item, (ok, value) in zip(batch, results, strict=True):
            item.ok, item.result = ok, value
            item.done.set()

    def _commit_sync(self, batch: list[_Item]) -> list[tuple[bool, Any]]:
        def body(txn: Txn) -> list[tuple[bool, Any]]:
            out: list[tuple[bool, Any]] = []
            for item in batch:
                try:
                    out.append((True, item.fn(txn)))
                except BitterbotError as exc:
                    out.append((False, exc))
            return out

        return self.store.transact(body)

    async def submit(self, fn: Callable[[Txn], Any]) -> Any:
        """Run ``fn`` in the next group commit; returns once its transaction is durable."""
        item = _Item(fn, trio.Event())
        if self._running:
            await self._send.send(item)
            await item.done.wait()
        else:
            await self._commit([item])
        if not item.ok:
            raise item.result
        return item.result


# --- what a payee sells -------------------------------------------------------------


@dataclass(frozen=True)
class SkillOffer:
    skill: str
    price: int
    version_min: str
    version_below: str
    content_key: bytes
    publisher: bytes = b""  # empty: this node's key signs the licenses
    splits: list[list[Any]] = field(default_factory=list)  # [[key, basis points], ...]

    def shares(self) -> list[tuple[bytes, int]]:
        """(key, amount) per party of one sale; the publisher's part first."""
        publisher = self.publisher or b"\x00" * 32
        return lic.revenue_split(self.price, publisher, [(k, b) for k, b in self.splits])


ServiceHandler = Callable[[bytes], Awaitable[bytes]]


@dataclass(frozen=True)
class Service:
    name: str
    price: int
    handler: ServiceHandler


@dataclass(frozen=True)
class Purchase:
    purchase_id: bytes
    skill: str
    version: str
    price: int
    license: lic.License
    content_key: bytes


def purchase_id_for(buyer: bytes, peer: str, skill: str, version: str) -> bytes:
    """The default purchase ID: the same purchase retried gets the same ID."""
    text = f"{peer}\x00{skill}\x00{version}".encode()
    return hashlib.sha256(b"bitterbot/v1/purchase\x00" + buyer + text).digest()[:16]


class PaymentsBase:
    """State shared by the seller and buyer sides: identity, store, backend, commits, locks."""

    def __init__(
        self,
        identity: Identity,
        store: Store,
        backend: rules.SettlementBackend,
        *,
        p2p: Any = None,
        clock_ms: Callable[[], int] = now_ms,
        default_capacity: int = 10_000,
        dispute_window_ms: int = 24 * 3600 * 1000,
        require_deposit: bool = True,
        max_batch: int = 256,
    ) -> None:
        self.identity = identity
        self.me = identity.public_key
        self.store = store
        self.backend = backend
        self.p2p = p2p
        self.clock_ms = clock_ms
        self.default_capacity = default_capacity
        self.dispute_window_ms = dispute_window_ms
        self.require_deposit = require_deposit
        self.committer = GroupCommitter(store, max_batch)
        open_databases(store, (CHANNELS, PEER_CHANNEL, SOLD, BOUGHT, OFFERS, OWED))
        self.services: dict[str, Service] = {}
        #: publisher keys other than the node key, loaded by offer_skill (kept in memory only)
        self.publishers: dict[bytes, Identity] = {identity.public_key: identity}
        self._locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)
        #: test hook: called with a step name ("voucher_sent") during a purchase
        self.fault_hook: Callable[[str], None] | None = None
        self._terms: dict[bytes, ch.ChannelTerms] = {}  # channel ID -> terms (immutable)

    # --- records -------------------------------------------------------------------
    def state_of(self, cid: bytes, rec: dict[str, Any]) -> ch.ChannelState:
        """:func:`channel_state` with the channel's terms parsed once (vouchers are hot)."""
        terms = self._terms.get(cid)
        if terms is None:
            terms = ch.OpenMessage.from_obj(rec["open"]).terms
            if len(self._terms) >= 10_000:
                self._terms.clear()
            self._terms[cid] = terms
        return channel_state(rec, terms)

    def channel_record(self, cid: bytes) -> dict[str, Any] | None:
        with self.store.read() as txn:
            rec: dict[str, Any] | None = txn.get(CHANNELS, cid)
            return rec

    def channels(self) -> list[dict[str, Any]]:
        with self.store.read() as txn:
            return [channel_summary(k, v) for k, v in txn.items(CHANNELS)]

    async def status(self) -> dict[str, Any]:
        return {
            "backend": self.backend.name,
            "test_money": self.backend.test_money,
            "balance": await self.backend.balance(self.me),
            "channels": self.channels(),
        }
