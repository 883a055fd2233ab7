"""Payments on a node: durable channels, the ``/bitterbot/pay/1.0.0`` protocol, purchases.

The payee persists every voucher in LMDB before it acknowledges it or delivers anything
(license, content key, call result): :class:`GroupCommitter` batches concurrent voucher
acceptances into one synced transaction (group commit), so durability costs one fsync
per batch, not per voucher. The payer persists each voucher it signs *before* sending it,
with the purchase it pays for, so a crash can never make it sign the same nonce twice or
pay for one purchase twice.

Wire: one request and one reply per frame (canonical msgpack, size-limited), any number
of requests per stream. Requests are maps with ``"t"``::

    info                      -> key, backend, test_money, dispute_window_ms
    open   {open}             -> open (countersigned)
    quote  {skill | service}  -> price, versions, publisher
    buy    {skill, version, purchase, voucher} -> license, sealed_key
    call   {service, id, voucher, input}       -> output
    pay    {voucher}          -> amount (a plain payment; simnet's cheaters use it)
    close  {close}            -> close (countersigned)

Replies are ``{"ok": true, ...}`` or ``{"ok": false, "error": {code, message, hint?}}``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bitterbot.node import framing
from bitterbot.node.ledger_backend import LedgerBackend
from bitterbot.node.peer import peer_id_from_public_key
from bitterbot.node.store import Store, Txn
from bitterbot.protocol import channel as ch
from bitterbot.protocol import license as lic
from bitterbot.protocol import paidpkg
from bitterbot.protocol import settlement as rules
from bitterbot.protocol.codec import expect_map
from bitterbot.protocol.errors import (
    BitterbotError,
    DecodeError,
    NetworkError,
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
OFFERS = "pay.offers"  # payee: skill name -> price, versions, content key

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
    out: dict[str, type[BitterbotError]] = {}
    todo: list[type[BitterbotError]] = [BitterbotError]
    while todo:
        cls = todo.pop()
        out.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return out


def remote_error(err: Any) -> BitterbotError:
    """The typed error a peer reported (unknown codes become a plain PaymentError)."""
    if not isinstance(err, dict):
        return PaymentError("the peer refused the request without saying why")
    code = str(err.get("code", "payment_error"))[:64]
    message = str(err.get("message", ""))[:500]
    hint = err.get("hint")
    cls = _error_classes().get(code, PaymentError)
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


def channel_state(rec: dict[str, Any]) -> ch.ChannelState:
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


class Payments:
    """One node's payments: payee (serves the protocol) and payer (opens, buys, calls, closes)."""

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
        open_databases(store, (CHANNELS, PEER_CHANNEL, SOLD, BOUGHT, OFFERS))
        self.services: dict[str, Service] = {}
        self._locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)
        #: test hook: called with a step name ("voucher_sent") during a purchase
        self.fault_hook: Callable[[str], None] | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the protocol (when a P2PHost is attached) and run group commits."""
        if self.p2p is not None:
            self.p2p.set_stream_handler(PROTOCOL_ID, self.handle_stream)
        await self.committer.run(task_status=task_status)

    # --- records -------------------------------------------------------------------
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

    # --- payee: offers ------------------------------------------------------------------
    def offer_skill(
        self,
        skill: str,
        price: int,
        content_key: bytes,
        *,
        version_min: str = "0.0.0",
        version_below: str = "999999999.0.0",
    ) -> SkillOffer:
        """Sell ``skill`` (published by this node's key) for ``price``; persisted."""
        if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
            raise PaymentError("a price is a positive integer in the smallest unit")
        if len(content_key) != paidpkg.KEY_SIZE:
            raise PaymentError("a content key is 32 bytes")
        if lic.parse_version(version_min) >= lic.parse_version(version_below):
            raise PaymentError(f"empty version range {version_min} .. {version_below}")
        offer = SkillOffer(skill, price, version_min, version_below, content_key)
        self.store.transact(lambda txn: txn.put(OFFERS, skill, offer.__dict__))
        return offer

    def offer(self, skill: str) -> SkillOffer:
        with self.store.read() as txn:
            obj = txn.get(OFFERS, skill)
        if obj is None:
            raise NotFoundError(f"no skill {skill!r} is for sale here")
        return SkillOffer(**obj)

    def offer_service(self, name: str, price: int, handler: ServiceHandler) -> Service:
        """Offer ``handler`` as a service metered per call at ``price`` (shown before calling)."""
        if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
            raise PaymentError("a price is a positive integer in the smallest unit")
        svc = Service(name, price, handler)
        self.services[name] = svc
        return svc

    # --- payee: the protocol ------------------------------------------------------------
    async def handle_stream(self, stream: Any) -> None:
        while True:
            try:
                req = await framing.read_message(
                    stream, max_size=MAX_REQUEST, timeout=REQUEST_TIMEOUT_S
                )
            except framing.StreamClosed:
                return
            reply = await self.handle_request(stream.peer_id, req)
            await framing.write_message(stream, reply, max_size=MAX_REPLY)

    async def handle_request(self, peer_id: str, req: Any) -> dict[str, Any]:
        try:
            m = expect_map(req, "pay request", {"t": str})
            handler = self._handlers().get(m["t"])
            if handler is None:
                raise DecodeError(f"unknown pay request {m['t'][:32]!r}")
            result: dict[str, Any] = await handler(peer_id, m)
            return {"ok": True, **result}
        except BitterbotError as exc:
            return {"ok": False, "error": exc.to_dict()}

    def _handlers(self) -> dict[str, Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {
            "info": self._on_info,
            "open": self._on_open,
            "quote": self._on_quote,
            "buy": self._on_buy,
            "call": self._on_call,
            "pay": self._on_pay,
            "close": self._on_close,
        }

    async def _on_info(self, _peer: str, _m: dict[str, Any]) -> dict[str, Any]:
        return {
            "key": self.me,
            "backend": self.backend.name,
            "test_money": self.backend.test_money,
            "dispute_window_ms": self.dispute_window_ms,
        }

    async def _on_open(self, peer: str, m: dict[str, Any]) -> dict[str, Any]:
        msg = ch.OpenMessage.from_obj(expect_map(m, "open", {"open": dict})["open"])
        t = msg.terms
        if t.payee != self.me:
            raise ch.BadOpenError("the channel is not payable to this node")
        if peer_id_from_public_key(t.payer) != peer:
            raise ch.BadOpenError("the payer key is not the key of the connected peer")
        if t.backend != self.backend.name:
            raise ch.BadOpenError(f"this node settles on {self.backend.name!r}, not {t.backend!r}")
        if t.dispute_window_ms < self.dispute_window_ms:
            raise ch.BadOpenError(
                f"dispute window {t.dispute_window_ms} ms is below this node's "
                f"{self.dispute_window_ms} ms"
            )
        full = msg.countersign(self.identity)
        rec = {
            "role": PAYEE,
            "peer": peer,
            "open": full.to_obj(),
            "nonce": 0,
            "amount": 0,
            "state": ch.OPEN,
            "voucher": None,
            "funded": False,
            "close": None,
        }

        def store_it(txn: Txn) -> dict[str, Any]:
            existing: dict[str, Any] | None = txn.get(CHANNELS, full.channel_id)
            if existing is not None:
                return existing  # a retried open: same terms, same ID
            txn.put(CHANNELS, full.channel_id, rec)
            return rec

        stored = await self.store.run(store_it)
        return {"open": stored["open"]}

    async def _on_quote(self, _peer: str, m: dict[str, Any]) -> dict[str, Any]:
        if isinstance(m.get("service"), str):
            svc = self.services.get(m["service"])
            if svc is None:
                raise NotFoundError(f"no service {m['service'][:64]!r} here")
            return {"price": svc.price}
        offer = self.offer(expect_map(m, "quote", {"skill": str})["skill"])
        return {
            "price": offer.price,
            "publisher": self.me,
            "versions": {"min": offer.version_min, "below": offer.version_below},
        }

    async def _prepare_voucher(self, raw: Any) -> tuple[ch.Voucher, dict[str, Any]]:
        """Decode and verify a voucher's signature, and that its channel is funded."""
        voucher = ch.Voucher.from_obj(raw)
        rec = self.channel_record(voucher.channel)
        if rec is None or rec["role"] != PAYEE:
            raise ch.UnknownChannelError(
                "voucher for an unknown channel", hint="open a channel first"
            )
        state = channel_state(rec)
        voucher.verify(state.terms.payer)
        if not rec["funded"] and self.require_deposit:
            await self._check_deposit(state.terms)
        return voucher, rec

    async def _check_deposit(self, terms: ch.ChannelTerms) -> None:
        escrow = await self.backend.escrow(terms.channel_id)
        if escrow is None or escrow.terms != terms:
            raise DepositMissingError(
                f"no deposit is locked for this channel on {self.backend.name!r}",
                hint="the payer must lock the deposit before paying",
            )

        def mark(txn: Txn) -> None:
            rec = txn.get(CHANNELS, terms.channel_id)
            if rec is not None and not rec["funded"]:
                rec["funded"] = True
                txn.put(CHANNELS, terms.channel_id, rec)

        await self.store.run(mark)

    def _apply_voucher(
        self, txn: Txn, voucher: ch.Voucher, price: int | None
    ) -> tuple[int, dict[str, Any]]:
        """Check (no writes) and return the increment and updated record; caller writes."""
        rec: dict[str, Any] | None = txn.get(CHANNELS, voucher.channel)
        state = None if rec is None or rec["role"] != PAYEE else channel_state(rec)
        inc = ch.check_voucher(state, voucher, verified=True)
        if price is not None and inc != price:
            raise PriceError(f"the voucher pays {inc}, the price is {price}")
        assert rec is not None
        rec.update(nonce=voucher.nonce, amount=voucher.amount, voucher=voucher.to_obj())
        return inc, rec

    async def accept_voucher(self, voucher: ch.Voucher, price: int | None = None) -> int:
        """Accept a plain payment durably (group commit); returns the increment."""

        def fn(txn: Txn) -> int:
            inc, rec = self._apply_voucher(txn, voucher, price)
            txn.put(CHANNELS, voucher.channel, rec)
            return inc

        result: int = await self.committer.submit(fn)
        return result

    async def _on_pay(self, _peer: str, m: dict[str, Any]) -> dict[str, Any]:
        voucher, _ = await self._prepare_voucher(m.get("voucher"))
        return {"amount": await self.accept_voucher(voucher)}

    async def _on_buy(self, _peer: str, m: dict[str, Any]) -> dict[str, Any]:
        m = expect_map(m, "buy", {"skill": str, "version": str, "purchase": bytes, "voucher": dict})
        if not 1 <= len(m["purchase"]) <= ch.MAX_REF_SIZE:
            raise DecodeError("purchase ID must be 1..32 bytes")
        voucher, rec = await self._prepare_voucher(m["voucher"])
        payer = channel_state(rec).terms.payer
        sold_key = payer + m["purchase"]
        with self.store.read() as txn:
            done = txn.get(SOLD, sold_key)
        if done is not None:  # a retry: deliver again, take nothing
            return {"license": done["license"], "sealed_key": done["sealed_key"]}
        offer = self.offer(m["skill"])
        if voucher.ref != m["purchase"]:
            raise PriceError("the voucher pays for another purchase")
        license_ = lic.issue_license(
            self.identity,
            skill=offer.skill,
            buyer=payer,
            version_min=offer.version_min,
            version_below=offer.version_below,
            amount=offer.price,
            voucher=voucher.voucher_id,
            purchase=m["purchase"],
            content_key=offer.content_key,
            now_ms=self.clock_ms(),
        )
        if not license_.covers(m["version"]):
            raise lic.LicenseVersionError(f"version {m['version']} is not for sale here")
        sold = {
            "license": license_.to_bytes(),
            "sealed_key": lic.seal_key(offer.content_key, payer),
            "skill": offer.skill,
            "amount": offer.price,
            "channel": voucher.channel,
            "ms": self.clock_ms(),
        }

        def fn(txn: Txn) -> dict[str, Any]:
            again = txn.get(SOLD, sold_key)  # a concurrent retry in the same batch
            if again is not None:
                return dict(again)
            _, crec = self._apply_voucher(txn, voucher, offer.price)
            txn.put(CHANNELS, voucher.channel, crec)
            txn.put(SOLD, sold_key, sold)
            return sold

        out = await self.committer.submit(fn)
        return {"license": out["license"], "sealed_key": out["sealed_key"]}

    async def _on_call(self, _peer: str, m: dict[str, Any]) -> dict[str, Any]:
        m = expect_map(m, "call", {"service": str, "id": bytes, "voucher": dict, "input": bytes})
        svc = self.services.get(m["service"])
        if svc is None:
            raise NotFoundError(f"no service {m['service'][:64]!r} here")
        if not 1 <= len(m["id"]) <= ch.MAX_REF_SIZE or len(m["input"]) > MAX_CALL_IO:
            raise DecodeError("call ID must be 1..32 bytes and input at most 48 KiB")
        voucher, rec = await self._prepare_voucher(m["voucher"])
        if voucher.ref != m["id"]:
            raise PriceError("the voucher pays for another call")
        key = channel_state(rec).terms.payer + m["id"]

        def fn(txn: Txn) -> bool:
            if txn.get(SOLD, key) is not None:
                return False  # retried call: already paid, run it again for free
            _, crec = self._apply_voucher(txn, voucher, svc.price)
            txn.put(CHANNELS, voucher.channel, crec)
            txn.put(SOLD, key, {"service": svc.name, "amount": svc.price, "ms": self.clock_ms()})
            return True

        await self.committer.submit(fn)
        output = await svc.handler(m["input"])
        if len(output) > MAX_CALL_IO:
            raise PaymentError("the service's output is over 48 KiB")
        return {"output": output}

    async def _on_close(self, peer: str, m: dict[str, Any]) -> dict[str, Any]:
        close = ch.CloseMessage.from_obj(expect_map(m, "close", {"close": dict})["close"])

        def fn(txn: Txn) -> dict[str, Any]:
            rec: dict[str, Any] | None = txn.get(CHANNELS, close.channel)
            if rec is None or rec["role"] != PAYEE:
                raise ch.UnknownChannelError("close for an unknown channel")
            if rec["state"] == ch.CLOSED and rec["close"] is not None:
                return dict(rec["close"])
            signed = ch.PayeeChannel(channel_state(rec)).close(close, self.identity)
            rec.update(state=ch.CLOSED, close=signed.to_obj())
            txn.put(CHANNELS, close.channel, rec)
            return signed.to_obj()

        return {"close": await self.committer.submit(fn)}

    # --- payee: unilateral settlement ------------------------------------------------
    async def settle(self, cid: bytes) -> int:
        """Settle our highest voucher on the backend (unilateral close by the payee)."""
        rec = self.channel_record(cid)
        if rec is None or rec["role"] != PAYEE or rec["voucher"] is None:
            raise ch.UnknownChannelError("no voucher to settle on this channel")
        paid = await self.backend.settle(ch.Voucher.from_obj(rec["voucher"]), self.clock_ms())

        def mark(txn: Txn) -> None:
            r = txn.get(CHANNELS, cid)
            r["state"] = ch.CLOSING if r["state"] == ch.OPEN else r["state"]
            txn.put(CHANNELS, cid, r)

        await self.store.run(mark)
        return paid

    # --- payer ----------------------------------------------------------------------
    async def request(
        self, peer: str, req: dict[str, Any], *, after_send: str | None = None
    ) -> dict[str, Any]:
        if self.p2p is None:
            raise NetworkError("payments need a running node", hint="bitterbot node start")
        stream = await self.p2p.open_stream(peer, PROTOCOL_ID)
        async with stream:
            await framing.write_message(stream, req, max_size=MAX_REQUEST)
            if after_send and self.fault_hook is not None:
                self.fault_hook(after_send)
            reply = await framing.read_message(
                stream, max_size=MAX_REPLY, timeout=REQUEST_TIMEOUT_S
            )
        if not isinstance(reply, dict) or reply.get("ok") is not True:
            raise remote_error(reply.get("error") if isinstance(reply, dict) else None)
        return reply

    async def open_channel(self, peer: str, capacity: int) -> bytes:
        async with self._locks[peer]:
            return await self._open_locked(peer, capacity)

    async def _open_locked(self, peer: str, capacity: int) -> bytes:
        info = expect_map(
            await self.request(peer, {"t": "info"}),
            "pay info",
            {"key": bytes, "backend": str, "dispute_window_ms": int},
        )
        if len(info["key"]) != 32 or peer_id_from_public_key(info["key"]) != peer:
            raise ch.BadOpenError("the peer's payment key does not match its peer ID")
        if info["backend"] != self.backend.name:
            raise ch.BadOpenError(
                f"the peer settles on {info['backend']!r}, this node on {self.backend.name!r}"
            )
        terms = ch.new_terms(
            self.me,
            info["key"],
            capacity,
            backend=self.backend.name,
            dispute_window_ms=max(self.dispute_window_ms, info["dispute_window_ms"]),
            now_ms=self.clock_ms(),
            salt=os.urandom(ch.SALT_SIZE),
        )
        msg = ch.open_channel(terms, self.identity)
        cid = msg.channel_id
        rec = {
            "role": PAYER,
            "peer": peer,
            "open": msg.to_obj(),
            "nonce": 0,
            "amount": 0,
            "state": OPENING,
            "voucher": None,
            "funded": False,
            "close": None,
        }
        await self.store.run(lambda txn: txn.put(CHANNELS, cid, rec))
        reply = await self.request(peer, {"t": "open", "open": msg.to_obj()})
        full = ch.OpenMessage.from_obj(reply.get("open"))
        if full.terms != terms:
            raise ch.BadOpenError("the peer countersigned different terms")
        full.verify()
        await self.backend.lock_deposit(full, self.clock_ms())

        def opened(txn: Txn) -> None:
            rec.update(open=full.to_obj(), state=ch.OPEN, funded=True)
            txn.put(CHANNELS, cid, rec)
            txn.put(PEER_CHANNEL, peer, cid)

        await self.store.run(opened)
        return cid

    async def _channel_for(self, peer: str, need: int) -> bytes:
        with self.store.read() as txn:
            cid = txn.get(PEER_CHANNEL, peer)
            rec = None if cid is None else txn.get(CHANNELS, cid)
        if rec is not None and rec["state"] == ch.OPEN:
            if channel_state(rec).remaining >= need:
                return bytes(cid)
        return await self._open_locked(peer, max(self.default_capacity, need))

    def _sign_and_record(
        self, cid: bytes, amount: int, ref: bytes, bought: dict[str, Any]
    ) -> ch.Voucher:
        """Sign the next voucher and persist it with the purchase, in one transaction."""

        def fn(txn: Txn) -> ch.Voucher:
            rec = txn.get(CHANNELS, cid)
            payer = ch.PayerChannel(channel_state(rec), self.identity)
            voucher = payer.pay(amount, ref)
            rec.update(nonce=voucher.nonce, amount=voucher.amount, voucher=voucher.to_obj())
            txn.put(CHANNELS, cid, rec)
            txn.put(BOUGHT, ref, {**bought, "voucher": voucher.to_obj(), "state": "pending"})
            return voucher

        return self.store.transact(fn)

    def bought(self, purchase_id: bytes) -> dict[str, Any] | None:
        with self.store.read() as txn:
            rec: dict[str, Any] | None = txn.get(BOUGHT, purchase_id)
            return rec

    async def purchase(
        self,
        peer: str,
        skill: str,
        version: str,
        *,
        max_price: int,
        purchase_id: bytes | None = None,
    ) -> Purchase:
        """Buy ``skill`` from ``peer``: pay over a channel, receive license and content key.

        Idempotent: a retry (same peer, skill, version, or the same ``purchase_id``) after a
        crash resends the voucher already signed for it, so it is never paid twice.
        """
        pid = purchase_id or purchase_id_for(self.me, peer, skill, version)
        async with self._locks[peer]:
            rec = self.bought(pid)
            if rec is not None and rec["state"] == "done":
                return self._purchase_from(pid, rec)
            await self._finish_pending(peer, skip=pid)
            if rec is None:
                quote = await self.request(peer, {"t": "quote", "skill": skill})
                price = quote.get("price")
                if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
                    raise PaymentError("the seller quoted no valid price")
                if price > max_price:
                    raise PriceTooHighError(
                        f"{skill} costs {price}, more than the {max_price} you allowed",
                        hint="raise --max-price to buy it",
                    )
                cid = await self._channel_for(peer, price)
                bought: dict[str, Any] = {"kind": "skill", "peer": peer, "skill": skill}
                bought.update(version=version, price=price)
                await trio.to_thread.run_sync(self._sign_and_record, cid, price, pid, bought)
                rec = self.bought(pid)
                assert rec is not None
            return await self._complete(pid, rec)

    async def _finish_pending(self, peer: str, skip: bytes) -> None:
        with self.store.read() as txn:
            pending = [
                (k, v)
                for k, v in txn.items(BOUGHT)
                if v["peer"] == peer and v["state"] == "pending" and k != skip
            ]
        for pid, rec in pending:
            if rec["kind"] == "skill":
                await self._complete(pid, rec)

    async def _complete(self, pid: bytes, rec: dict[str, Any]) -> Purchase:
        voucher = ch.Voucher.from_obj(rec["voucher"])
        reply = await self.request(
            rec["peer"],
            {
                "t": "buy",
                "skill": rec["skill"],
                "version": rec["version"],
                "purchase": pid,
                "voucher": voucher.to_obj(),
            },
            after_send="voucher_sent",
        )
        lic_bytes, sealed = reply.get("license"), reply.get("sealed_key")
        if not isinstance(lic_bytes, bytes) or not isinstance(sealed, bytes):
            raise PaymentError("the seller sent no license")
        license_ = lic.verify_license(
            lic_bytes, buyer=self.me, skill=rec["skill"], version=rec["version"]
        )
        if license_.voucher != voucher.voucher_id or license_.purchase != pid:
            raise lic.LicenseError("the license refers to another payment")
        key = lic.open_sealed_key(sealed, self.identity, license_)
        done = {**rec, "state": "done", "license": lic_bytes, "content_key": key}
        await self.store.run(lambda txn: txn.put(BOUGHT, pid, done))
        return self._purchase_from(pid, done)

    def _purchase_from(self, pid: bytes, rec: dict[str, Any]) -> Purchase:
        license_ = lic.verify_license(
            rec["license"], buyer=self.me, skill=rec["skill"], version=rec["version"]
        )
        return Purchase(
            pid, rec["skill"], rec["version"], rec["price"], license_, rec["content_key"]
        )

    def license_for(self, skill: str, version: str, publisher: bytes | None = None) -> Purchase:
        """This node's valid license (and content key) for ``skill`` at ``version``.

        The skill runtime calls this before running a paid skill and refuses without one.
        """
        with self.store.read() as txn:
            done = [(k, v) for k, v in txn.items(BOUGHT) if v.get("license") is not None]
        for pid, rec in done:
            if rec["skill"] != skill:
                continue
            try:
                license_ = lic.verify_license(
                    rec["license"], buyer=self.me, skill=skill, version=version, publisher=publisher
                )
            except lic.LicenseError:
                continue
            return Purchase(pid, skill, version, rec["price"], license_, rec["content_key"])
        raise NoLicenseError(
            f"no valid license for {skill} {version} on this node",
            hint=f"buy it: bitterbot skill install {skill}",
        )

    async def quote_service(self, peer: str, service: str) -> int:
        price = (await self.request(peer, {"t": "quote", "service": service})).get("price")
        if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
            raise PaymentError("the peer quoted no valid price")
        return price

    async def call_service(self, peer: str, service: str, data: bytes, *, max_price: int) -> bytes:
        """Call a metered service: see the price, pay it over the channel, get the output."""
        price = await self.quote_service(peer, service)
        if price > max_price:
            raise PriceTooHighError(f"{service} costs {price} per call, over {max_price}")
        call_id = os.urandom(16)
        async with self._locks[peer]:
            cid = await self._channel_for(peer, price)
            bought = {"kind": "call", "peer": peer, "service": service, "price": price}
            voucher = await trio.to_thread.run_sync(
                self._sign_and_record, cid, price, call_id, bought
            )
        reply = await self.request(
            peer,
            {
                "t": "call",
                "service": service,
                "id": call_id,
                "voucher": voucher.to_obj(),
                "input": data,
            },
        )
        output = reply.get("output")
        if not isinstance(output, bytes):
            raise PaymentError("the service returned no output")
        await self.store.run(lambda txn: txn.put(BOUGHT, call_id, {**bought, "state": "done"}))
        return output

    async def send_voucher(self, peer: str, voucher: ch.Voucher) -> int:
        """Send a plain voucher (no purchase); returns the increment the payee accepted."""
        reply = await self.request(peer, {"t": "pay", "voucher": voucher.to_obj()})
        amount = reply.get("amount")
        return amount if isinstance(amount, int) else 0

    async def pay(self, peer: str, amount: int) -> ch.Voucher:
        """Pay ``amount`` to ``peer`` over its channel (a tip, or what a caller metered)."""
        async with self._locks[peer]:
            cid = await self._channel_for(peer, amount)
            ref = os.urandom(16)
            voucher = await trio.to_thread.run_sync(
                self._sign_and_record, cid, amount, ref, {"kind": "pay", "peer": peer}
            )
            await self.send_voucher(peer, voucher)
            await self.store.run(lambda txn: txn.delete(BOUGHT, ref))
        return voucher

    def _find_channel(self, target: str) -> tuple[bytes, dict[str, Any]]:
        """A channel by hex ID (or prefix), or the current channel to a peer ID."""
        with self.store.read() as txn:
            cid = txn.get(PEER_CHANNEL, target)
            if cid is not None:
                return bytes(cid), txn.get(CHANNELS, cid)
            hits = [(k, v) for k, v in txn.items(CHANNELS) if k.hex().startswith(target.lower())]
        if len(hits) != 1 or len(target) < 8:
            raise NotFoundError(
                f"no single channel matches {target!r}", hint="see bitterbot pay status"
            )
        return hits[0]

    async def close_channel(self, target: str, *, unilateral: bool = False) -> dict[str, Any]:
        """Close our channel as payer: cooperatively, or alone (refund after the window)."""
        cid, rec = self._find_channel(target)
        if rec["role"] != PAYER:
            paid = await self.settle(cid)
            return {"channel": cid.hex(), "settled": paid, "state": ch.CLOSING}
        async with self._locks[rec["peer"]]:
            rec = self.channel_record(cid) or rec
            if rec["state"] != ch.OPEN:
                raise ch.ChannelClosedError(f"channel is {rec['state']}")
            proposal = ch.PayerChannel(channel_state(rec), self.identity).propose_close()
            if unilateral:
                escrow = await self.backend.request_close(proposal, self.clock_ms())
                state = ch.CLOSING
                result = {"refund_after_ms": escrow.deadline_ms}
            else:
                reply = await self.request(rec["peer"], {"t": "close", "close": proposal.to_obj()})
                signed = ch.CloseMessage.from_obj(reply.get("close"))
                signed.verify(channel_state(rec).terms)
                escrow = await self.backend.close(signed, self.clock_ms())
                state = ch.CLOSED
                result = {"paid": escrow.settled, "refunded": escrow.refunded}

            def mark(txn: Txn) -> None:
                r = txn.get(CHANNELS, cid)
                r["state"] = state
                txn.put(CHANNELS, cid, r)
                if txn.get(PEER_CHANNEL, rec["peer"]) == cid:
                    txn.delete(PEER_CHANNEL, rec["peer"])

            await self.store.run(mark)
        return {"channel": cid.hex(), "state": state, **result}

    async def refund(self, target: str) -> int:
        """After a unilateral close's dispute window: take back what was not settled."""
        cid, _ = self._find_channel(target)
        amount = await self.backend.refund(cid, self.clock_ms())

        def mark(txn: Txn) -> None:
            r = txn.get(CHANNELS, cid)
            r["state"] = ch.CLOSED
            txn.put(CHANNELS, cid, r)

        await self.store.run(mark)
        return amount


# --- adversaries (simnet's cheaters scenario) ---------------------------------------------


async def attempt_cheats(payer: Payments, peer: str, *, honest: int = 10) -> dict[str, Any]:
    """Pay ``peer`` ``honest`` once, then try every cheating voucher against it.

    Returns ``{"attempts": {kind: 1}, "accepted": {kind: 0|1}, "codes": {kind: error code},
    "honest_accepted": bool}``; a correct payee accepts none. Kinds: forgery, over_capacity,
    rollback, stale_nonce, unknown_channel, replay (see ``channel.cheating_vouchers``).
    """
    voucher = await payer.pay(peer, honest)
    rec = payer.channel_record(voucher.channel)
    assert rec is not None
    cheats = ch.cheating_vouchers(payer.identity, Identity.generate(), channel_state(rec), voucher)
    accepted: dict[str, int] = {}
    codes: dict[str, str] = {}
    for kind, bad in cheats.items():
        try:
            await payer.send_voucher(peer, bad)
        except PaymentError as exc:
            accepted[kind], codes[kind] = 0, exc.code
        else:
            accepted[kind], codes[kind] = 1, "accepted"
    return {
        "attempts": {k: 1 for k in cheats},
        "accepted": accepted,
        "codes": codes,
        "honest_accepted": True,
    }


# --- node wiring ----------------------------------------------------------------------


def ledger_path(settings: Any, home_path: Path) -> Path:
    configured = str(settings.get("pay.ledger_path", "") or "")
    return Path(configured).expanduser() if configured else home_path / "ledger"


def open_backend(settings: Any, home_path: Path) -> LedgerBackend:
    backend = str(settings.get("pay.backend", "ledger"))
    if backend != "ledger":
        raise PaymentError(
            f"settlement backend {backend!r} is not available in this build",
            hint="use pay.backend = 'ledger' (test money); see SPEC 12.6 for real rails",
        )
    return LedgerBackend.open(ledger_path(settings, home_path))


async def start_payments(ctx: Any, nursery: trio.Nursery) -> None:
    """Start payments for a running node and set ``ctx.payments``; serves on ``ctx.p2p``.

    The test-money ledger lives in its own LMDB folder (``pay.ledger_path``, default
    HOME/ledger) and is closed when the node's nursery ends.
    """
    settings = ctx.settings
    backend = open_backend(settings, ctx.home.path)
    payments = Payments(
        ctx.identity,
        ctx.store,
        backend,
        p2p=ctx.p2p,
        default_capacity=int(settings.get("pay.default_capacity", 10_000)),
        dispute_window_ms=int(settings.get("pay.dispute_window_ms", 24 * 3600 * 1000)),
        require_deposit=bool(settings.get("pay.require_deposit", True)),
        max_batch=int(settings.get("pay.group_commit_max", 256)),
    )
    grant = int(settings.get("pay.test_grant", 0))
    if grant > 0 and backend.test_money and backend.balance_sync(ctx.identity.public_key) == 0:
        await backend.faucet(ctx.identity.public_key, grant)

    async def serve(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await payments.run(task_status=task_status)
        finally:
            backend.shutdown()

    await nursery.start(serve)
    ctx.payments = payments
