"""Payments, the seller (payee) side: offers, the ``/bitterbot/pay/1.0.0`` handlers, settle.

Every voucher is durably committed (group commit) before anything is acknowledged or
delivered: license, sealed content key, call output.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bitterbot.node.p2p import framing
from bitterbot.node.p2p.peer_id import peer_id_from_public_key
from bitterbot.node.pay.core import (
    CHANNELS,
    MAX_CALL_IO,
    MAX_REPLY,
    MAX_REQUEST,
    OFFERS,
    OWED,
    PAYEE,
    REQUEST_TIMEOUT_S,
    SOLD,
    DepositMissingError,
    PaymentsBase,
    PriceError,
    Service,
    ServiceHandler,
    SkillOffer,
    channel_state,
)
from bitterbot.node.store import Txn
from bitterbot.protocol import channel as ch
from bitterbot.protocol import license as lic
from bitterbot.protocol import paidpkg
from bitterbot.protocol import settlement as rules
from bitterbot.protocol.codec import expect_map
from bitterbot.protocol.errors import (
    BitterbotError,
    DecodeError,
    NotFoundError,
    PaymentError,
)
from bitterbot.protocol.identity import Identity

logger = logging.getLogger(__name__)

#: opens a peer may leave without a deposit (each costs the payee an LMDB record)
MAX_UNFUNDED_PER_PEER = 8
#: how long before a rail's fixed deadline (Cashu locktime) the payee settles (at most
#: half the window); the watch runs every minute, so this leaves ten tries
SETTLE_MARGIN_MS = 600_000


class SellerSide(PaymentsBase):  # needs BuyerSide's paying methods in Payments
    """The payee: sells skills and metered services over channels others open to it."""

    # --- payee: offers ------------------------------------------------------------------
    def offer_skill(
        self,
        skill: str,
        price: int,
        content_key: bytes,
        *,
        version_min: str = "0.0.0",
        version_below: str = "999999999.0.0",
        publisher: Identity | None = None,
        splits: list[tuple[bytes, int]] | None = None,
    ) -> SkillOffer:
        """Sell ``skill`` for ``price``; the offer is persisted.

        Licenses are signed by ``publisher`` (default: the node key). A node loads its
        separate publisher key (HOME/publisher.key) when payments start; a key from
        elsewhere is held in memory only (offer the skill again after a restart).
        """
        if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
            raise PaymentError("a price is a positive integer in the smallest unit")
        if len(content_key) != paidpkg.KEY_SIZE:
            raise PaymentError("a content key is 32 bytes")
        if lic.parse_version(version_min) >= lic.parse_version(version_below):
            raise PaymentError(f"empty version range {version_min} .. {version_below}")
        signer = publisher or self.identity
        self.publishers[signer.public_key] = signer
        offer = SkillOffer(
            skill,
            price,
            version_min,
            version_below,
            content_key,
            signer.public_key,
            [[k, b] for k, b in splits or []],
        )
        offer.shares()  # refuses bad keys and shares over 100%
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
            except (framing.StreamClosed, framing.FrameTimeout):
                return  # the payer is done (or idle): end the stream quietly
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
            "deposit": self._on_deposit,
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
            unfunded = sum(
                1
                for _, c in txn.items(CHANNELS)
                if c["peer"] == peer and c["role"] == PAYEE and not c["funded"]
            )
            if unfunded >= MAX_UNFUNDED_PER_PEER:
                raise ch.BadOpenError(
                    f"{unfunded} channels from this peer are still without a deposit",
                    hint="lock the deposits of the channels already opened, or use them",
                )
            txn.put(CHANNELS, full.channel_id, rec)
            return rec

        stored = await self.store.run(store_it)
        extra = self.backend.open_extra(t)
        return (
            {"open": stored["open"]} if extra is None else {"open": stored["open"], "cashu": extra}
        )

    async def _on_deposit(self, peer: str, m: dict[str, Any]) -> dict[str, Any]:
        """The payer hands over its locked deposit (rails without a shared ledger)."""
        cid = expect_map(m, "deposit", {"channel": bytes})["channel"]
        rec = self.channel_record(cid)
        if rec is None or rec["role"] != PAYEE or rec["peer"] != peer:
            raise ch.UnknownChannelError("deposit for an unknown channel")
        terms = self.state_of(cid, rec).terms
        await self.backend.accept_deposit(terms, m.get("cashu"), self.clock_ms())
        await self._check_deposit(terms)
        return {}

    async def _on_quote(self, _peer: str, m: dict[str, Any]) -> dict[str, Any]:
        if isinstance(m.get("service"), str):
            svc = self.services.get(m["service"])
            if svc is None:
                raise NotFoundError(f"no service {m['service'][:64]!r} here")
            return {"price": svc.price}
        offer = self.offer(expect_map(m, "quote", {"skill": str})["skill"])
        return {
            "price": offer.price,
            "publisher": offer.publisher or self.me,
            "publisher_share": offer.shares()[0][1],
            "splits": [{"key": k, "bps": b} for k, b in offer.splits],
            "versions": {"min": offer.version_min, "below": offer.version_below},
        }

    async def _prepare_voucher(
        self, raw: Any, extra: Any = None, *, verify: bool = True
    ) -> tuple[ch.Voucher, dict[str, Any], Any]:
        """Decode a voucher, check its channel is ours and funded, (``verify``) its
        signature, and the rail's material beside it (``extra``, e.g. Cashu signatures);
        returns the voucher, the channel record and the checked material."""
        voucher = ch.Voucher.from_obj(raw)
        rec = self.channel_record(voucher.channel)
        if rec is None or rec["role"] != PAYEE:
            raise ch.UnknownChannelError(
                "voucher for an unknown channel", hint="open a channel first"
            )
        state = self.state_of(voucher.channel, rec)
        if verify:
            voucher.verify(state.terms.payer)
        if not rec["funded"] and self.require_deposit:
            await self._check_deposit(state.terms)
        return voucher, rec, self.backend.check_voucher_extra(state.terms, voucher, extra)

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
        self,
        txn: Txn,
        voucher: ch.Voucher,
        price: int | None,
        *,
        verified: bool = True,
        checked: Any = None,
    ) -> tuple[int, dict[str, Any]]:
        """Check and return the increment and updated record; the caller writes the record.
        The rail's checked material (``checked``) is applied last: it writes only once
        every check passed."""
        rec: dict[str, Any] | None = txn.get(CHANNELS, voucher.channel)
        state = None if rec is None or rec["role"] != PAYEE else self.state_of(voucher.channel, rec)
        inc = ch.check_voucher(state, voucher, verified=verified)
        if price is not None and inc != price:
            raise PriceError(f"the voucher pays {inc}, the price is {price}")
        assert rec is not None
        self.backend.apply_voucher_extra(txn, voucher, checked)
        rec.update(nonce=voucher.nonce, amount=voucher.amount, voucher=voucher.to_obj())
        return inc, rec

    async def accept_voucher(
        self,
        voucher: ch.Voucher,
        price: int | None = None,
        *,
        verified: bool = False,
        checked: Any = None,
    ) -> int:
        """Accept a plain payment durably (group commit); returns the increment.

        Unless ``verified``, the signature is checked inside the commit, in its thread.
        """

        def fn(txn: Txn) -> int:
            inc, rec = self._apply_voucher(txn, voucher, price, verified=verified, checked=checked)
            txn.put(CHANNELS, voucher.channel, rec)
            return inc

        result: int = await self.committer.submit(fn)
        return result

    async def _on_pay(self, _peer: str, m: dict[str, Any]) -> dict[str, Any]:
        # verified here, on the event loop's thread, while the commit thread syncs the
        # previous batch: the two stages overlap (checking inside the commit serializes them)
        voucher, _, checked = await self._prepare_voucher(m.get("voucher"), m.get("cashu"))
        return {"amount": await self.accept_voucher(voucher, verified=True, checked=checked)}

    async def _on_buy(self, _peer: str, m: dict[str, Any]) -> dict[str, Any]:
        m = expect_map(m, "buy", {"skill": str, "version": str, "purchase": bytes, "voucher": dict})
        if not 1 <= len(m["purchase"]) <= ch.MAX_REF_SIZE:
            raise DecodeError("purchase ID must be 1..32 bytes")
        voucher, rec, checked = await self._prepare_voucher(m["voucher"], m.get("cashu"))
        payer = channel_state(rec).terms.payer
        sold_key = payer + m["purchase"]
        with self.store.read() as txn:
            done = txn.get(SOLD, sold_key)
        if done is not None:  # a retry: deliver again, take nothing
            return {"license": done["license"], "sealed_key": done["sealed_key"]}
        offer = self.offer(m["skill"])
        if voucher.ref != m["purchase"]:
            raise PriceError("the voucher pays for another purchase")
        signer = self.publishers.get(offer.publisher or self.me)
        if signer is None:
            raise PaymentError(
                f"the publisher key of {offer.skill!r} is not loaded on the seller",
                hint="the seller must offer the skill again after a restart",
                code="publisher_key_missing",
            )
        license_ = lic.issue_license(
            signer,
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
            _, crec = self._apply_voucher(txn, voucher, offer.price, checked=checked)
            txn.put(CHANNELS, voucher.channel, crec)
            txn.put(SOLD, sold_key, sold)
            for key, amount in offer.shares()[1:]:
                if amount:
                    txn.put(OWED, key, int(txn.get(OWED, key, 0)) + amount)
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
        voucher, rec, checked = await self._prepare_voucher(m["voucher"], m.get("cashu"))
        if voucher.ref != m["id"]:
            raise PriceError("the voucher pays for another call")
        key = channel_state(rec).terms.payer + m["id"]

        def fn(txn: Txn) -> bool:
            if txn.get(SOLD, key) is not None:
                return False  # retried call: already paid, run it again for free
            _, crec = self._apply_voucher(txn, voucher, svc.price, checked=checked)
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

        signed = await self.committer.submit(fn)
        # the rail acts on the close only once it is countersigned and durable (Cashu: take
        # the uncovered rest, settle, sign the payer's proofs back); a retry repeats it
        extra = await self.backend.accept_close(
            ch.CloseMessage.from_obj(signed), m.get("cashu"), self.clock_ms()
        )
        return {"close": signed, "cashu": extra} if extra else {"close": signed}

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

    # --- revenue shares ----------------------------------------------------------------
    def owed(self) -> dict[bytes, int]:
        with self.store.read() as txn:
            return {k: int(v) for k, v in txn.items(OWED) if v}

    # --- watching escrows ---------------------------------------------------------------
    async def watch_closing(self) -> list[bytes]:
        """Settle our highest voucher on every channel whose payer asked to close alone.

        A payer's close request opens the dispute window; unless the payee settles before
        it ends, the payer refunds everything. The node runs this every watch interval.
        """
        with self.store.read() as txn:
            ours = [
                (k, v)
                for k, v in txn.items(CHANNELS)
                if v["role"] == PAYEE and v["voucher"] is not None
            ]
        now = self.clock_ms()
        settled = []
        for cid, rec in ours:
            escrow = await self.backend.escrow(cid)
            if escrow is None or escrow.state == rules.CLOSED or escrow.settled >= rec["amount"]:
                continue
            # a rail with a fixed deadline (Cashu's locktime) is settled shortly before it
            margin = min(escrow.terms.dispute_window_ms // 2, SETTLE_MARGIN_MS)
            near_deadline = escrow.deadline_ms > 0 and now >= escrow.deadline_ms - margin
            if escrow.state != rules.CLOSING and not near_deadline:
                continue
            try:
                paid = await self.settle(cid)
            except PaymentError as exc:
                logger.warning("could not settle channel %s: %s", cid.hex()[:16], exc)
                continue
            if paid:
                settled.append(cid)
        return settled
