"""Payments, the buyer (payer) side: open channels, purchases, metered calls, close, refund.

Each voucher is signed and written to LMDB together with what it pays for *before* it is
sent, so a crash never makes the payer reuse a nonce or pay one purchase twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import trio

from bitterbot.node.p2p import framing
from bitterbot.node.p2p.peer_id import peer_id_from_public_key
from bitterbot.node.pay.core import (
    BOUGHT,
    CHANNELS,
    MAX_REPLY,
    MAX_REQUEST,
    OPENING,
    PAYER,
    PEER_CHANNEL,
    PROTOCOL_ID,
    REQUEST_TIMEOUT_S,
    NoLicenseError,
    PaymentsBase,
    PriceTooHighError,
    Purchase,
    channel_state,
    open_databases,
    purchase_id_for,
    remote_error,
)
from bitterbot.node.store import Store, Txn
from bitterbot.protocol import channel as ch
from bitterbot.protocol import license as lic
from bitterbot.protocol import settlement as rules
from bitterbot.protocol.codec import expect_map
from bitterbot.protocol.errors import (
    NetworkError,
    NotFoundError,
    PaymentError,
)

logger = logging.getLogger(__name__)


class BuyerSide(PaymentsBase):
    """The payer: opens and reuses channels, buys, calls, pays, closes."""

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
        resumed = await self._resume_opening(peer)
        if resumed is not None:
            return resumed
        balance = await self.backend.balance(self.me)
        if balance < capacity:  # before the payee keeps a record of a channel never funded
            raise rules.InsufficientFundsError(
                f"a channel of {capacity} needs that much; this node has {balance}",
                hint="fund it: bitterbot pay wallet mint AMOUNT (Cashu) or pay faucet (ledger)",
            )
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
        await self.backend.note_open(full, reply.get("cashu"))
        rec.update(open=full.to_obj())
        await self.store.run(lambda txn: txn.put(CHANNELS, cid, rec))
        return await self._lock_and_hand_over(peer, cid, rec, full)

    async def _lock_and_hand_over(
        self, peer: str, cid: bytes, rec: dict[str, Any], full: ch.OpenMessage
    ) -> bytes:
        """Lock the deposit on the backend and give it to the payee (rails without a shared
        ledger); the channel opens only then. A failure leaves the record opening, and the
        next open to this peer resumes it (nothing locked twice, nothing lost)."""
        await self.backend.lock_deposit(full, self.clock_ms())
        deposit = self.backend.deposit_message(cid)
        if deposit is not None:
            await self.request(peer, {"t": "deposit", "channel": cid, "cashu": deposit})

        def opened(txn: Txn) -> None:
            rec.update(open=full.to_obj(), state=ch.OPEN, funded=True)
            txn.put(CHANNELS, cid, rec)
            txn.put(PEER_CHANNEL, peer, cid)

        await self.store.run(opened)
        return cid

    async def _resume_opening(self, peer: str) -> bytes | None:
        """A channel to ``peer`` countersigned but not yet locked or handed over."""
        with self.store.read() as txn:
            found = [
                (bytes(k), v)
                for k, v in txn.items(CHANNELS)
                if v["role"] == PAYER
                and v["peer"] == peer
                and v["state"] == OPENING
                and v["open"]["payee_sig"]
            ]
        for cid, rec in found:
            full = ch.OpenMessage.from_obj(rec["open"])
            if full.terms.backend != self.backend.name:
                continue
            try:
                return await self._lock_and_hand_over(peer, cid, rec, full)
            except PaymentError as exc:
                if exc.code == "mint_unreachable":
                    raise  # retry later: the same channel, nothing locked twice
                logger.warning("abandoning the opening of channel %s: %s", cid.hex(), exc)
                # a locked deposit comes back by refund; with nothing locked it is just over
                locked = await self.backend.escrow(cid) is not None
                rec["state"] = ch.CLOSING if locked else ch.CLOSED

                def abandon(txn: Txn, c: bytes = cid, r: dict[str, Any] = rec) -> None:
                    txn.put(CHANNELS, c, r)

                await self.store.run(abandon)
        return None

    async def _channel_for(self, peer: str, need: int) -> bytes:
        with self.store.read() as txn:
            cid = txn.get(PEER_CHANNEL, peer)
            rec = None if cid is None else txn.get(CHANNELS, cid)
        if rec is not None and rec["state"] == ch.OPEN:
            if channel_state(rec).remaining >= need:
                return bytes(cid)
        new = await self._open_locked(peer, max(self.default_capacity, need))
        if rec is not None and rec["state"] == ch.OPEN:
            # the old channel is too small now: close it so its rest returns to us
            try:
                await self._close_locked(bytes(cid), unilateral=False)
            except (PaymentError, NetworkError) as exc:
                logger.info("could not close the used-up channel %s: %s", bytes(cid).hex(), exc)
        return new

    def _sign_and_record(
        self,
        cid: bytes,
        amount: int,
        ref: bytes,
        bought: dict[str, Any],
        also: Callable[[Txn], None] | None = None,
    ) -> ch.Voucher:
        """Sign the next voucher and persist it with the purchase (and ``also``), atomically."""

        def fn(txn: Txn) -> ch.Voucher:
            if also is not None:
                also(txn)
            rec = txn.get(CHANNELS, cid)
            payer = ch.PayerChannel(channel_state(rec), self.identity)
            voucher = payer.pay(amount, ref)
            extra = self.backend.voucher_extra(txn, voucher)  # e.g. Cashu proof signatures
            rec.update(nonce=voucher.nonce, amount=voucher.amount, voucher=voucher.to_obj())
            txn.put(CHANNELS, cid, rec)
            pending = {**bought, "voucher": voucher.to_obj(), "state": "pending", "cashu": extra}
            txn.put(BOUGHT, ref, pending)
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
                price = (await self.quote_skill(peer, skill))["price"]
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

    async def quote_skill(self, peer: str, skill: str) -> dict[str, Any]:
        """Price, version range, publisher and revenue shares, to show before buying."""
        quote = await self.request(peer, {"t": "quote", "skill": skill})
        price = quote.get("price")
        if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
            raise PaymentError("the seller quoted no valid price")
        share = quote.get("publisher_share", price)
        if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= price:
            raise PaymentError("the seller quoted an invalid publisher share")
        return {
            "price": price,
            "publisher_share": share,
            "splits": quote.get("splits", []),
            "versions": quote.get("versions"),
            "publisher": quote.get("publisher"),
        }

    async def _finish_pending(self, peer: str, skip: bytes = b"") -> None:
        """Resend what was signed for ``peer`` but never acknowledged (a crash, a lost reply).

        Runs before any new voucher to ``peer`` is signed: vouchers are cumulative, so the
        payee must have taken every earlier one before the next one prices correctly.
        """
        with self.store.read() as txn:
            pending = [
                (k, v)
                for k, v in txn.items(BOUGHT)
                if v["peer"] == peer and v["state"] == "pending" and k != skip
            ]
        for pid, rec in pending:
            if rec["kind"] == "skill":
                await self._complete(pid, rec)
            elif rec["kind"] == "call":
                await self._send_call(pid, rec)
            else:
                await self._resend_plain(pid, rec)

    async def _resend_plain(self, ref: bytes, rec: dict[str, Any]) -> None:
        voucher = ch.Voucher.from_obj(rec["voucher"])
        try:
            await self.send_voucher(rec["peer"], voucher, rec.get("cashu"))
        except (ch.ReplayedVoucherError, ch.LowerCumulativeError):
            pass  # the payee took it (or a later one covering it) before the reply was lost
        await self.store.run(lambda txn: txn.delete(BOUGHT, ref))

    async def _complete(self, pid: bytes, rec: dict[str, Any]) -> Purchase:
        voucher = ch.Voucher.from_obj(rec["voucher"])
        req = {
            "t": "buy",
            "skill": rec["skill"],
            "version": rec["version"],
            "purchase": pid,
            "voucher": voucher.to_obj(),
        }
        reply = await self.request(
            rec["peer"], _with_extra(req, rec.get("cashu")), after_send="voucher_sent"
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
        return find_license(self.store, self.me, skill, version, publisher)

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
            await self._finish_pending(peer)
            cid = await self._channel_for(peer, price)
            bought = {"kind": "call", "peer": peer, "service": service, "price": price}
            bought["input"] = data
            await trio.to_thread.run_sync(self._sign_and_record, cid, price, call_id, bought)
            rec = self.bought(call_id)
            assert rec is not None
            return await self._send_call(call_id, rec)

    async def _send_call(self, call_id: bytes, rec: dict[str, Any]) -> bytes:
        req = {
            "t": "call",
            "service": rec["service"],
            "id": call_id,
            "voucher": rec["voucher"],
            "input": rec["input"],
        }
        output = (await self.request(rec["peer"], _with_extra(req, rec.get("cashu")))).get("output")
        if not isinstance(output, bytes):
            raise PaymentError("the service returned no output")
        await self.store.run(lambda txn: txn.delete(BOUGHT, call_id))
        return output

    async def send_voucher(
        self, peer: str, voucher: ch.Voucher, extra: dict[str, Any] | None = None
    ) -> int:
        """Send a plain voucher (no purchase); returns the increment the payee accepted.
        ``extra``: the rail's material signed with it (``bought(ref)["cashu"]``)."""
        req = _with_extra({"t": "pay", "voucher": voucher.to_obj()}, extra)
        reply = await self.request(peer, req)
        amount = reply.get("amount")
        return amount if isinstance(amount, int) else 0

    async def pay(self, peer: str, amount: int) -> ch.Voucher:
        """Pay ``amount`` to ``peer`` over its channel (a tip, or what a caller metered)."""
        async with self._locks[peer]:
            await self._finish_pending(peer)
            cid = await self._channel_for(peer, amount)
            ref = os.urandom(16)
            voucher = await trio.to_thread.run_sync(
                self._sign_and_record, cid, amount, ref, {"kind": "pay", "peer": peer}
            )
            await self.send_voucher(peer, voucher, (self.bought(ref) or {}).get("cashu"))
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
            raise PaymentError(
                "this node is the payee of that channel", hint="a payee settles instead"
            )
        async with self._locks[rec["peer"]]:
            if not unilateral:
                await self._finish_pending(rec["peer"])  # the payee must hold the final total
            return await self._close_locked(cid, unilateral=unilateral)

    async def _close_locked(self, cid: bytes, *, unilateral: bool) -> dict[str, Any]:
        rec = self.channel_record(cid)
        if rec is None or rec["state"] != ch.OPEN:
            raise ch.ChannelClosedError(f"channel is {rec['state'] if rec else 'unknown'}")
        proposal = ch.PayerChannel(channel_state(rec), self.identity).propose_close()
        if unilateral:
            escrow = await self.backend.request_close(proposal, self.clock_ms())
            state = ch.CLOSING
            result: dict[str, Any] = {"refund_after_ms": escrow.deadline_ms}
        else:
            extra = await self.backend.close_extra(proposal)
            req = _with_extra({"t": "close", "close": proposal.to_obj()}, extra or None)
            reply = await self.request(rec["peer"], req)
            signed = ch.CloseMessage.from_obj(reply.get("close"))
            signed.verify(channel_state(rec).terms)
            await self.backend.note_close_reply(signed, reply.get("cashu"))
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


def _with_extra(req: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """A request with the rail's material beside it (SPEC 12.4), when there is some."""
    return req if extra is None else {**req, "cashu": extra}


def find_license(
    store: Store, buyer: bytes, skill: str, version: str, publisher: bytes | None = None
) -> Purchase:
    """The valid license and content key held in ``store`` for ``buyer`` (a node key).

    Usable without a running node (``bitterbot skill run`` in-process opens the store and
    calls this); raises ``license_missing`` when there is none.
    """
    open_databases(store, (BOUGHT,))
    with store.read() as txn:
        done = [(k, v) for k, v in txn.items(BOUGHT) if v.get("license") is not None]
    for pid, rec in done:
        if rec["skill"] != skill:
            continue
        try:
            license_ = lic.verify_license(
                rec["license"], buyer=buyer, skill=skill, version=version, publisher=publisher
            )
        except lic.LicenseError:
            continue
        return Purchase(pid, skill, version, rec["price"], license_, rec["content_key"])
    raise NoLicenseError(
        f"no valid license for {skill} {version} on this node",
        hint=f"buy it: bitterbot skill install {skill}",
    )
