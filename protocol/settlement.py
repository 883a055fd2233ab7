"""Settlement: where channel money really sits. The interface, and the escrow rules.

A settlement backend (a rail) holds each channel's deposit in escrow and pays it out. Three
operations make a rail, whatever its technology:

- ``lock_deposit(open)``: take ``capacity`` from the payer into escrow for a channel whose
  open message both parties signed;
- ``settle(channel, voucher | close)``: pay the payee what the payer signed for;
- ``refund(channel)``: return the rest to the payer once the channel is closed
  cooperatively or the dispute window after a unilateral close has passed.

:class:`Escrow` and the ``escrow_*`` functions are the rules every backend applies; they
are pure (time is an argument), so the test ledger, simnet and the Cashu backend (whose
escrow is a node's own view: there is no shared ledger) agree on them. Amounts are ints in
the smallest unit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from .channel import (
    BadCloseError,
    ChannelClosedError,
    ChannelError,
    ChannelTerms,
    CloseMessage,
    LowerCumulativeError,
    OpenMessage,
    OverCapacityError,
    UnknownChannelError,
    Voucher,
)
from .errors import PaymentError

LOCKED = "locked"
CLOSING = "closing"
CLOSED = "closed"


class SettlementError(PaymentError):
    code = "settlement_error"


class InsufficientFundsError(SettlementError):
    code = "insufficient_funds"


class DisputeWindowOpenError(SettlementError):
    code = "dispute_window_open"


@dataclass(frozen=True, slots=True)
class Transfer:
    """Money leaving escrow: ``amount`` to the account ``to`` (a public key)."""

    to: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class Escrow:
    terms: ChannelTerms
    settled: int = 0  # paid out to the payee so far
    settled_nonce: int = 0
    state: str = LOCKED
    deadline_ms: int = 0  # end of the dispute window while CLOSING
    refunded: int = 0

    @property
    def channel_id(self) -> bytes:
        return self.terms.channel_id

    def to_obj(self) -> dict[str, object]:
        return {
            "terms": self.terms.body(),
            "settled": self.settled,
            "settled_nonce": self.settled_nonce,
            "state": self.state,
            "deadline_ms": self.deadline_ms,
            "refunded": self.refunded,
        }


def escrow_lock(msg: OpenMessage) -> Escrow:
    """A new escrow for a fully signed open message (the payer's funds are taken by the caller)."""
    msg.verify(require_payee=True)
    return Escrow(msg.terms)


def _require(escrow: Escrow | None) -> Escrow:
    if escrow is None:
        raise UnknownChannelError("no deposit is locked for this channel")
    if escrow.state == CLOSED:
        raise ChannelClosedError("the channel is settled and closed")
    return escrow


def escrow_settle(
    escrow: Escrow | None, voucher: Voucher, now_ms: int
) -> tuple[Escrow, list[Transfer]]:
    """Unilateral settle by the payee with its highest voucher; opens the dispute window."""
    e = _require(escrow)
    if voucher.channel != e.channel_id:
        raise UnknownChannelError("voucher names another channel")
    if e.state == CLOSING and now_ms >= e.deadline_ms:
        raise ChannelClosedError("the dispute window is over; the payer may refund the rest")
    voucher.verify(e.terms.payer)
    if voucher.amount > e.terms.capacity:
        raise OverCapacityError("voucher is over the channel's capacity")
    if voucher.amount <= e.settled:
        raise LowerCumulativeError(
            f"voucher total {voucher.amount} is not above the settled {e.settled}"
        )
    paid = voucher.amount - e.settled
    deadline = e.deadline_ms if e.state == CLOSING else now_ms + e.terms.dispute_window_ms
    e = replace(
        e,
        settled=voucher.amount,
        settled_nonce=voucher.nonce,
        state=CLOSING,
        deadline_ms=deadline,
    )
    return e, [Transfer(e.terms.payee, paid)]


def escrow_request_close(
    escrow: Escrow | None, request: CloseMessage, now_ms: int
) -> tuple[Escrow, list[Transfer]]:
    """The payer asks to close alone (request signed by the payer): the dispute window opens."""
    e = _require(escrow)
    request.verify(e.terms, require_payee=False)
    if e.state == CLOSING:
        return e, []
    return replace(e, state=CLOSING, deadline_ms=now_ms + e.terms.dispute_window_ms), []


def escrow_close(escrow: Escrow | None, close: CloseMessage) -> tuple[Escrow, list[Transfer]]:
    """Cooperative close: both signed the final total; pay it out and refund the rest now."""
    e = _require(escrow)
    close.verify(e.terms, require_payee=True)
    if close.amount < e.settled:
        raise BadCloseError(f"close total {close.amount} is below the settled {e.settled}")
    to_payee = close.amount - e.settled
    refund = e.terms.capacity - close.amount
    e = replace(
        e,
        settled=close.amount,
        settled_nonce=max(close.nonce, e.settled_nonce),
        state=CLOSED,
        refunded=refund,
    )
    return e, [
        t for t in (Transfer(e.terms.payee, to_payee), Transfer(e.terms.payer, refund)) if t.amount
    ]


def escrow_refund(escrow: Escrow | None, now_ms: int) -> tuple[Escrow, list[Transfer]]:
    """After the dispute window, return what was not settled to the payer and close."""
    e = _require(escrow)
    if e.state != CLOSING:
        raise SettlementError(
            "the channel is still open", hint="request a close first; refunds follow the window"
        )
    if now_ms < e.deadline_ms:
        raise DisputeWindowOpenError(
            f"the dispute window ends in {e.deadline_ms - now_ms} ms",
            hint="retry after the window, when the payee can no longer settle",
        )
    refund = e.terms.capacity - e.settled
    e = replace(e, state=CLOSED, refunded=refund)
    return e, [Transfer(e.terms.payer, refund)] if refund else []


class SettlementBackend(Protocol):
    """What a rail implements. Async: real rails (mints, Lightning nodes) are remote."""

    name: str
    test_money: bool

    async def balance(self, account: bytes) -> int: ...

    async def lock_deposit(self, msg: OpenMessage, now_ms: int) -> Escrow: ...

    async def escrow(self, channel_id: bytes) -> Escrow | None: ...

    async def settle(self, voucher: Voucher, now_ms: int) -> int:
        """Pay the payee up to ``voucher``; return what this call paid."""
        ...

    async def close(self, close: CloseMessage, now_ms: int) -> Escrow: ...

    async def request_close(self, request: CloseMessage, now_ms: int) -> Escrow: ...

    async def refund(self, channel_id: bytes, now_ms: int) -> int:
        """Return the unsettled rest to the payer after the window; return the amount."""
        ...

    # Rail material beside the channel messages (SPEC 12.4). A rail without a shared
    # ledger (Cashu) moves its deposit and its per-voucher proof of payment between the two
    # nodes; a shared ledger returns nothing and checks nothing. ``txn`` is the node's
    # write transaction that also stores the voucher, so both are durable together.

    def open_extra(self, terms: ChannelTerms) -> dict[str, Any] | None:
        """Payee: material added to the countersigned open (Cashu: its channel key)."""
        ...

    async def note_open(self, msg: OpenMessage, extra: Any) -> None:
        """Payer: keep the payee's open material before locking."""
        ...

    def deposit_message(self, channel_id: bytes) -> dict[str, Any] | None:
        """Payer, after locking: the deposit to hand the payee (a ``deposit`` request)."""
        ...

    async def accept_deposit(self, terms: ChannelTerms, raw: Any, now_ms: int) -> None:
        """Payee: check and keep a deposit handed over by the payer."""
        ...

    def voucher_extra(self, txn: Any, voucher: Voucher) -> dict[str, Any] | None:
        """Payer, in the transaction signing ``voucher``: what travels beside it."""
        ...

    def check_voucher_extra(self, terms: ChannelTerms, voucher: Voucher, raw: Any) -> Any:
        """Payee, before the commit (no writes): parse and verify; returns what to apply."""
        ...

    def apply_voucher_extra(self, txn: Any, voucher: Voucher, checked: Any) -> None:
        """Payee, in the voucher's commit: apply (raise before writing to refuse)."""
        ...

    async def close_extra(self, close: CloseMessage) -> dict[str, Any]:
        """Payer: material beside a cooperative close request."""
        ...

    async def accept_close(self, close: CloseMessage, raw: Any, now_ms: int) -> dict[str, Any]:
        """Payee, after countersigning a close: act on it; returns material for the reply."""
        ...

    async def note_close_reply(self, close: CloseMessage, raw: Any) -> None:
        """Payer: keep the reply's material before :meth:`close`."""
        ...


__all__ = [
    "CLOSED",
    "CLOSING",
    "LOCKED",
    "ChannelError",
    "DisputeWindowOpenError",
    "Escrow",
    "InsufficientFundsError",
    "SettlementBackend",
    "SettlementError",
    "Transfer",
    "UnknownChannelError",
    "escrow_close",
    "escrow_lock",
    "escrow_refund",
    "escrow_request_close",
    "escrow_settle",
]
