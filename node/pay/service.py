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

import logging
import os
from pathlib import Path
from typing import Any

import trio

from bitterbot.node.p2p.peer_id import peer_id_from_public_key
from bitterbot.node.pay.buyer import BuyerSide, find_license
from bitterbot.node.pay.cashu import CASHU_FOLDER, CashuBackend, parse_backend
from bitterbot.node.pay.core import (
    BOUGHT,
    CHANNELS,
    OFFERS,
    OWED,
    PAYER,
    PEER_CHANNEL,
    PROTOCOL_ID,
    SOLD,
    DepositMissingError,
    GroupCommitter,
    NoLicenseError,
    PriceError,
    PriceTooHighError,
    Purchase,
    Service,
    SkillOffer,
    channel_state,
    channel_summary,
    open_databases,
    purchase_id_for,
    remote_error,
)
from bitterbot.node.pay.ledger import LedgerBackend
from bitterbot.node.pay.seller import SellerSide
from bitterbot.node.store import Txn
from bitterbot.protocol import channel as ch
from bitterbot.protocol import paidpkg
from bitterbot.protocol.errors import ConfigError, NetworkError, PaymentError
from bitterbot.protocol.identity import Identity

logger = logging.getLogger(__name__)


class Payments(SellerSide, BuyerSide):
    """One node's payments: payee (serves the protocol) and payer (opens, buys, calls, closes)."""

    #: seconds between rounds of watching escrows and forwarding owed revenue shares; must
    #: stay well below the dispute window
    watch_interval_s: float = 60.0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the protocol (when a P2PHost is attached), run group commits, forward shares."""
        if self.p2p is not None:
            self.p2p.set_stream_handler(PROTOCOL_ID, self.handle_stream)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.committer.run)
            nursery.start_soon(self._watch_loop)
            task_status.started()

    def load_publisher_key(self, home: Any) -> None:
        """Sign licenses with the home's separate publisher key (``bitterbot key new``), if
        it has one: offers persist across restarts, and so must the key that serves them."""
        ident = home.publisher_identity()
        if ident is not None:
            self.publishers[ident.public_key] = ident

    # --- paid packages: the two calls the market needs ---------------------------------
    def sell_package(
        self,
        skill: str,
        package: bytes,
        price: int,
        *,
        version_min: str = "0.0.0",
        version_below: str = "999999999.0.0",
        publisher: Identity | None = None,
        splits: list[tuple[bytes, int]] | None = None,
    ) -> bytes:
        """Encrypt ``package`` under a new content key and offer it; returns the bytes to
        publish and seed (their hash is what the manifest and catalog pin)."""
        key = paidpkg.new_content_key(os.urandom(paidpkg.KEY_SIZE))
        blob = paidpkg.encrypt_package(package, key, nonce=os.urandom(paidpkg.NONCE_SIZE))
        self.offer_skill(
            skill,
            price,
            key,
            version_min=version_min,
            version_below=version_below,
            publisher=publisher,
            splits=splits,
        )
        return blob

    def unlock_package(
        self, skill: str, version: str, blob: bytes, publisher: bytes | None = None
    ) -> bytes:
        """The package inside a downloaded paid ``blob``, with this node's license for it
        (``license_missing`` without one: buy first with :meth:`purchase`)."""
        return paidpkg.decrypt_package(
            blob, self.license_for(skill, version, publisher).content_key
        )

    async def close_channel(self, target: str, *, unilateral: bool = False) -> dict[str, Any]:
        """Close a channel: as payer cooperatively (or alone); as payee by settling."""
        cid, rec = self._find_channel(target)
        if rec["role"] == PAYER:
            return await super().close_channel(target, unilateral=unilateral)
        paid = await self.settle(cid)
        return {"channel": cid.hex(), "settled": paid, "state": ch.CLOSING}

    async def forward_shares(self) -> dict[str, int]:
        """Pay every owed revenue share to its holder over a channel; returns what was paid.

        The owed amount drops in the same transaction that signs the voucher, and the
        voucher is resent until acknowledged, so a share is paid once, crash or not. A
        holder that cannot be reached keeps its share owed for the next round.
        """
        paid: dict[str, int] = {}
        for key, amount in self.owed().items():
            peer = peer_id_from_public_key(key)

            def take(txn: Txn, key: bytes = key, amount: int = amount) -> None:
                txn.put(OWED, key, int(txn.get(OWED, key, 0)) - amount)

            try:
                async with self._locks[peer]:
                    await self._finish_pending(peer)
                    cid = await self._channel_for(peer, amount)
                    ref = os.urandom(16)
                    rec = {"kind": "share", "peer": peer}
                    voucher = await trio.to_thread.run_sync(
                        self._sign_and_record, cid, amount, ref, rec, take
                    )
                    await self.send_voucher(peer, voucher, (self.bought(ref) or {}).get("cashu"))

                    def forget(txn: Txn, ref: bytes = ref) -> None:
                        txn.delete(BOUGHT, ref)

                    await self.store.run(forget)
            except (NetworkError, PaymentError) as exc:
                logger.info("revenue share for %s not forwarded yet: %s", peer, exc)
                continue
            paid[peer] = amount
        return paid

    async def _watch_loop(self) -> None:
        while True:
            await trio.sleep(self.watch_interval_s)
            await self.watch_closing()
            if self.p2p is not None and self.owed():
                await self.forward_shares()


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
    configured = str(settings["pay.ledger_path"] or "")
    return Path(configured).expanduser() if configured else home_path / "ledger"


def open_backend(
    settings: Any, home_path: Path, store: Any = None, identity: Identity | None = None
) -> Any:
    """The settlement backend ``pay.backend`` names: ``ledger`` (TEST MONEY, shared LMDB
    folder) or ``cashu:<mint URL>`` (ecash on that mint; wallet in HOME/cashu, channel
    records in the node's ``store``)."""
    backend = str(settings["pay.backend"])
    mint = parse_backend(backend)
    if mint is not None:
        if store is None or identity is None:
            raise PaymentError("the Cashu backend needs the node's store and identity")
        return CashuBackend(store, identity, home_path / CASHU_FOLDER, mint)
    if backend != "ledger":
        raise ConfigError(
            f"unknown settlement backend {backend!r}",
            hint="pay.backend = 'ledger' (TEST MONEY) or 'cashu:<mint URL>' (SPEC 12.6)",
        )
    return LedgerBackend.open(ledger_path(settings, home_path))


async def start_payments(ctx: Any, nursery: trio.Nursery) -> None:
    """Start payments for a running node and set ``ctx.payments``; serves on ``ctx.p2p``.

    The test-money ledger lives in its own LMDB folder (``pay.ledger_path``, default
    HOME/ledger) and is closed when the node's nursery ends; the Cashu backend keeps its
    wallet in HOME/cashu and its channel records in the node's store.
    """
    settings = ctx.settings
    backend = open_backend(settings, ctx.home.path, ctx.store, ctx.identity)
    payments = Payments(
        ctx.identity,
        ctx.store,
        backend,
        p2p=ctx.p2p,
        default_capacity=int(settings["pay.default_capacity"]),
        dispute_window_ms=int(settings["pay.dispute_window_ms"]),
        require_deposit=bool(settings["pay.require_deposit"]),
        max_batch=int(settings["pay.group_commit_max"]),
    )
    payments.load_publisher_key(ctx.home)
    grant = int(settings["pay.test_grant"])
    if grant > 0 and backend.test_money:
        await trio.to_thread.run_sync(backend.grant_once_sync, ctx.identity.public_key, grant)

    async def serve(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await payments.run(task_status=task_status)
        finally:
            backend.shutdown()

    await nursery.start(serve)
    if isinstance(backend, CashuBackend):
        nursery.start_soon(backend.warm)
    ctx.payments = payments


__all__ = [
    "BOUGHT",
    "CHANNELS",
    "DepositMissingError",
    "GroupCommitter",
    "NoLicenseError",
    "OFFERS",
    "OWED",
    "PEER_CHANNEL",
    "PROTOCOL_ID",
    "Payments",
    "PriceError",
    "PriceTooHighError",
    "Purchase",
    "SOLD",
    "Service",
    "SkillOffer",
    "attempt_cheats",
    "find_license",
    "channel_summary",
    "ledger_path",
    "open_backend",
    "open_databases",
    "purchase_id_for",
    "remote_error",
    "start_payments",
]
