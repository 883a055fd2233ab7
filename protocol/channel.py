"""Unidirectional payment channels: open, vouchers, close. Sans-IO, integers only.

A channel moves money one way, from ``payer`` to ``payee``, up to ``capacity`` (smallest
unit). The life of a channel::

    payer                                   payee
      |-- open (terms, payer_sig) ------------>|   payee checks terms, countersigns
      |<------------------------- payee_sig ---|
      |   payer locks ``capacity`` on the settlement backend
      |-- voucher(nonce=1, amount=10) -------->|   accept: persist, then acknowledge
      |-- voucher(nonce=2, amount=25) -------->|   amounts are cumulative
      |-- close(amount=25, payer_sig) -------->|   cooperative close: payee countersigns
      |<--------------------------- payee_sig -|   backend pays 25 to payee, 75 back to payer

Unilateral close: the payee settles its highest voucher on the backend at any time; the
payer may ask to close, and after the dispute window refunds whatever was not settled
(:mod:`bitterbot.protocol.settlement` holds those rules).

Every signature is ed25519 over ``b"bitterbot/v1/" + kind + b"\\x00" + canonical(body)``
(the envelope rule of SPEC 2.2), with its own kind per message, so a voucher signature can
never be replayed as an open or close.

Payee acceptance (:meth:`PayeeChannel.accept`): the voucher names a known channel that is
open, its signature is the payer's, its nonce is above every nonce seen, its cumulative
amount is above the highest accepted amount and within capacity. Each failure has its own
:class:`PaymentError` subclass with a stable code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from .codec import decode, encode, expect_map
from .envelope import signing_bytes
from .errors import DecodeError, PaymentError, SignatureError, UnknownVersionError
from .identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, verify

VERSION = 1
OPEN_KIND = "pay/open"
VOUCHER_KIND = "pay/voucher"
CLOSE_KIND = "pay/close"
CHANNEL_ID_SIZE = 32
SALT_SIZE = 16
MAX_REF_SIZE = 32
MAX_BACKEND_LEN = 32
MAX_AMOUNT = 2**63 - 1
MAX_MESSAGE_SIZE = 2048  # an open message is about 400 bytes, a voucher about 180
_VOUCHER_PREFIX = signing_bytes(VOUCHER_KIND, {})[: -len(encode({}))]

# --- errors -----------------------------------------------------------------


class ChannelError(PaymentError):
    """Something is wrong with a channel message or its use."""

    code = "channel_error"


class BadOpenError(ChannelError):
    code = "channel_open_invalid"


class ForgedVoucherError(ChannelError):
    code = "voucher_forged"

    def __init__(self, message: str = "voucher signature is not the payer's", **kw: Any) -> None:
        kw.setdefault("hint", "the voucher was not signed by this channel's payer; refuse it")
        super().__init__(message, **kw)


class ReplayedVoucherError(ChannelError):
    code = "voucher_replayed"


class LowerCumulativeError(ChannelError):
    code = "voucher_rolled_back"


class OverCapacityError(ChannelError):
    code = "over_capacity"


class UnknownChannelError(ChannelError):
    code = "unknown_channel"


class ChannelClosedError(ChannelError):
    code = "channel_closed"


class BadCloseError(ChannelError):
    code = "channel_close_invalid"


# --- messages ---------------------------------------------------------------


def _check_key(value: bytes, what: str) -> None:
    if len(value) != PUBLIC_KEY_SIZE:
        raise DecodeError(f"{what} must be {PUBLIC_KEY_SIZE} bytes, got {len(value)}")


def _check_amount(value: int, what: str) -> None:
    if not 0 <= value <= MAX_AMOUNT:
        raise DecodeError(f"{what} {value} is outside 0..{MAX_AMOUNT}")


@dataclass(frozen=True, slots=True)
class ChannelTerms:
    """What both parties sign at open. ``channel_id`` is a hash of everything else."""

    payer: bytes
    payee: bytes
    capacity: int
    backend: str
    dispute_window_ms: int
    created_ms: int
    salt: bytes

    def body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "payer": self.payer,
            "payee": self.payee,
            "capacity": self.capacity,
            "backend": self.backend,
            "dispute_window_ms": self.dispute_window_ms,
            "created_ms": self.created_ms,
            "salt": self.salt,
        }

    @property
    def channel_id(self) -> bytes:
        return hashlib.sha256(b"bitterbot/v1/channel-id\x00" + encode(self.body())).digest()

    def signed_bytes(self) -> bytes:
        return signing_bytes(OPEN_KIND, {**self.body(), "channel": self.channel_id})

    @classmethod
    def from_obj(cls, obj: Any) -> ChannelTerms:
        m = expect_map(
            obj,
            "channel terms",
            {
                "v": int,
                "payer": bytes,
                "payee": bytes,
                "capacity": int,
                "backend": str,
                "dispute_window_ms": int,
                "created_ms": int,
                "salt": bytes,
            },
        )
        if m["v"] != VERSION:
            raise UnknownVersionError(f"channel version {m['v']} is not supported")
        _check_key(m["payer"], "payer")
        _check_key(m["payee"], "payee")
        _check_amount(m["capacity"], "capacity")
        _check_amount(m["dispute_window_ms"], "dispute window")
        _check_amount(m["created_ms"], "created_ms")
        if not m["backend"] or len(m["backend"]) > MAX_BACKEND_LEN:
            raise DecodeError("backend name must be 1..32 characters")
        if len(m["salt"]) != SALT_SIZE:
            raise DecodeError(f"salt must be {SALT_SIZE} bytes")
        return cls(
            m["payer"],
            m["payee"],
            m["capacity"],
            m["backend"],
            m["dispute_window_ms"],
            m["created_ms"],
            m["salt"],
        )


def new_terms(
    payer: bytes,
    payee: bytes,
    capacity: int,
    *,
    backend: str,
    dispute_window_ms: int,
    now_ms: int,
    salt: bytes,
) -> ChannelTerms:
    """Terms for a new channel; ``salt`` (16 random bytes from the caller) makes the ID unique."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
        raise BadOpenError(f"capacity must be a positive integer, got {capacity!r}")
    if payer == payee:
        raise BadOpenError("a channel needs two different parties")
    terms = ChannelTerms(payer, payee, capacity, backend, dispute_window_ms, now_ms, salt)
    return ChannelTerms.from_obj(terms.body())  # same checks as a received one


@dataclass(frozen=True, slots=True)
class OpenMessage:
    """Channel terms with the payer's and (once countersigned) the payee's signature."""

    terms: ChannelTerms
    payer_sig: bytes
    payee_sig: bytes = b""

    @property
    def channel_id(self) -> bytes:
        return self.terms.channel_id

    def to_obj(self) -> dict[str, Any]:
        return {
            "terms": self.terms.body(),
            "payer_sig": self.payer_sig,
            "payee_sig": self.payee_sig,
        }

    def to_bytes(self) -> bytes:
        return encode(self.to_obj())

    def countersign(self, payee: Identity) -> OpenMessage:
        if payee.public_key != self.terms.payee:
            raise BadOpenError("only the channel's payee can countersign it")
        self.verify(require_payee=False)
        return replace(self, payee_sig=payee.sign(self.terms.signed_bytes()))

    def verify(self, *, require_payee: bool = True) -> None:
        """Check the payer's signature, and the payee's unless ``require_payee`` is false."""
        msg = self.terms.signed_bytes()
        try:
            verify(self.terms.payer, msg, self.payer_sig)
        except SignatureError as exc:
            raise BadOpenError("open message: payer signature does not verify") from exc
        if require_payee or self.payee_sig:
            try:
                verify(self.terms.payee, msg, self.payee_sig)
            except SignatureError as exc:
                raise BadOpenError("open message: payee signature does not verify") from exc

    @classmethod
    def from_obj(cls, obj: Any) -> OpenMessage:
        m = expect_map(obj, "open message", {"terms": dict, "payer_sig": bytes, "payee_sig": bytes})
        if len(m["payer_sig"]) != SIGNATURE_SIZE or len(m["payee_sig"]) not in (
            0,
            SIGNATURE_SIZE,
        ):
            raise DecodeError("open message: signature has the wrong length")
        return cls(ChannelTerms.from_obj(m["terms"]), m["payer_sig"], m["payee_sig"])

    @classmethod
    def from_bytes(cls, data: bytes) -> OpenMessage:
        return cls.from_obj(decode(data, MAX_MESSAGE_SIZE))


def open_channel(terms: ChannelTerms, payer: Identity) -> OpenMessage:
    if payer.public_key != terms.payer:
        raise BadOpenError("only the channel's payer can sign its opening")
    return OpenMessage(terms, payer.sign(terms.signed_bytes()))


@dataclass(frozen=True, slots=True)
class Voucher:
    """The payer's promise: ``amount`` in total (cumulative) on ``channel``, as of ``nonce``.

    ``ref`` is up to 32 bytes the payer binds to this payment (a purchase or call ID).
    """

    channel: bytes
    nonce: int
    amount: int
    ref: bytes
    sig: bytes

    def body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "channel": self.channel,
            "nonce": self.nonce,
            "amount": self.amount,
            "ref": self.ref,
        }

    def to_obj(self) -> dict[str, Any]:
        return {**self.body(), "sig": self.sig}

    def to_bytes(self) -> bytes:
        return encode(self.to_obj())

    @property
    def voucher_id(self) -> bytes:
        """Hash of the whole signed voucher: how a license refers to its payment."""
        return hashlib.sha256(self.to_bytes()).digest()

    def signed_bytes(self) -> bytes:
        """``signing_bytes(VOUCHER_KIND, body())``, built directly: vouchers are the hot path.

        The keys are written in canonical (sorted) order and msgpack packs ints in their
        shortest form, so this equals the generic canonical encoding (a test checks it).
        """
        body = {
            "amount": self.amount,
            "channel": self.channel,
            "nonce": self.nonce,
            "ref": self.ref,
            "v": VERSION,
        }
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return _VOUCHER_PREFIX + packed

    def verify(self, payer: bytes) -> None:
        try:
            verify(payer, self.signed_bytes(), self.sig)
        except SignatureError as exc:
            raise ForgedVoucherError() from exc

    @classmethod
    def from_obj(cls, obj: Any) -> Voucher:
        m = expect_map(
            obj,
            "voucher",
            {"v": int, "channel": bytes, "nonce": int, "amount": int, "ref": bytes, "sig": bytes},
        )
        if m["v"] != VERSION:
            raise UnknownVersionError(f"voucher version {m['v']} is not supported")
        if len(m["channel"]) != CHANNEL_ID_SIZE:
            raise DecodeError("voucher: channel ID has the wrong length")
        if len(m["sig"]) != SIGNATURE_SIZE:
            raise DecodeError("voucher: signature has the wrong length")
        if len(m["ref"]) > MAX_REF_SIZE:
            raise DecodeError(f"voucher: ref is over {MAX_REF_SIZE} bytes")
        _check_amount(m["nonce"], "nonce")
        _check_amount(m["amount"], "amount")
        return cls(m["channel"], m["nonce"], m["amount"], m["ref"], m["sig"])

    @classmethod
    def from_bytes(cls, data: bytes) -> Voucher:
        return cls.from_obj(decode(data, MAX_MESSAGE_SIZE))


def sign_voucher(
    payer: Identity, channel: bytes, nonce: int, amount: int, ref: bytes = b""
) -> Voucher:
    draft = Voucher(channel, nonce, amount, ref, b"")
    return Voucher(channel, nonce, amount, ref, payer.sign(draft.signed_bytes()))


@dataclass(frozen=True, slots=True)
class CloseMessage:
    """Final balance both sides sign for a cooperative close."""

    channel: bytes
    nonce: int
    amount: int
    payer_sig: bytes
    payee_sig: bytes = b""

    def body(self) -> dict[str, Any]:
        return {"v": VERSION, "channel": self.channel, "nonce": self.nonce, "amount": self.amount}

    def to_obj(self) -> dict[str, Any]:
        return {**self.body(), "payer_sig": self.payer_sig, "payee_sig": self.payee_sig}

    def verify(self, terms: ChannelTerms, *, require_payee: bool = True) -> None:
        if self.channel != terms.channel_id:
            raise BadCloseError("close message names another channel")
        if self.amount > terms.capacity:
            raise BadCloseError("close amount is over the channel's capacity")
        msg = signing_bytes(CLOSE_KIND, self.body())
        try:
            verify(terms.payer, msg, self.payer_sig)
            if require_payee or self.payee_sig:
                verify(terms.payee, msg, self.payee_sig)
        except SignatureError as exc:
            raise BadCloseError("close message: a signature does not verify") from exc

    @classmethod
    def from_obj(cls, obj: Any) -> CloseMessage:
        m = expect_map(
            obj,
            "close message",
            {
                "v": int,
                "channel": bytes,
                "nonce": int,
                "amount": int,
                "payer_sig": bytes,
                "payee_sig": bytes,
            },
        )
        if m["v"] != VERSION:
            raise UnknownVersionError(f"close version {m['v']} is not supported")
        if len(m["channel"]) != CHANNEL_ID_SIZE:
            raise DecodeError("close: channel ID has the wrong length")
        if len(m["payer_sig"]) != SIGNATURE_SIZE or len(m["payee_sig"]) not in (0, SIGNATURE_SIZE):
            raise DecodeError("close: signature has the wrong length")
        _check_amount(m["nonce"], "nonce")
        _check_amount(m["amount"], "amount")
        return cls(m["channel"], m["nonce"], m["amount"], m["payer_sig"], m["payee_sig"])


def sign_close(payer: Identity, channel: bytes, nonce: int, amount: int) -> CloseMessage:
    body = CloseMessage(channel, nonce, amount, b"").body()
    return CloseMessage(channel, nonce, amount, payer.sign(signing_bytes(CLOSE_KIND, body)))


def countersign_close(close: CloseMessage, payee: Identity) -> CloseMessage:
    return replace(close, payee_sig=payee.sign(signing_bytes(CLOSE_KIND, close.body())))


# --- state machines -----------------------------------------------------------

OPEN = "open"
CLOSING = "closing"
CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One side's view of a channel: terms, highest voucher, lifecycle state."""

    terms: ChannelTerms
    nonce: int = 0
    amount: int = 0
    state: str = OPEN

    @property
    def channel_id(self) -> bytes:
        return self.terms.channel_id

    @property
    def remaining(self) -> int:
        return self.terms.capacity - self.amount


@dataclass(frozen=True, slots=True)
class Accepted:
    """Result of accepting a voucher: the new state and what this voucher added."""

    state: ChannelState
    increment: int


def check_voucher(state: ChannelState | None, voucher: Voucher, *, verified: bool = False) -> int:
    """Apply the payee's acceptance rules; return the increment. Raises a typed error.

    ``verified=True`` skips the signature check when the caller already verified it against
    the same payer (the node verifies outside its database transaction).
    """
    if state is None:
        raise UnknownChannelError(
            "voucher for an unknown channel", hint="open a channel with this peer first"
        )
    if voucher.channel != state.channel_id:
        raise UnknownChannelError("voucher names another channel")
    if state.state != OPEN:
        raise ChannelClosedError(
            f"channel is {state.state}",
            hint="open a new channel: this one no longer takes vouchers",
        )
    if not verified:
        voucher.verify(state.terms.payer)
    if voucher.nonce <= state.nonce:
        raise ReplayedVoucherError(
            f"voucher nonce {voucher.nonce} is not above the last accepted nonce {state.nonce}"
        )
    if voucher.amount <= state.amount:
        raise LowerCumulativeError(
            f"cumulative amount {voucher.amount} is not above the accepted {state.amount}",
            hint="vouchers carry the running total; sign the new total",
        )
    if voucher.amount > state.terms.capacity:
        raise OverCapacityError(
            f"cumulative amount {voucher.amount} is over the capacity {state.terms.capacity}",
            hint="open a new channel with more capacity",
        )
    return voucher.amount - state.amount


class PayeeChannel:
    """The payee's side: accepts vouchers and countersigns the final close."""

    def __init__(self, state: ChannelState) -> None:
        self.state = state

    @classmethod
    def from_open(cls, msg: OpenMessage, me: bytes) -> PayeeChannel:
        msg.verify()
        if msg.terms.payee != me:
            raise BadOpenError("this channel is not payable to us")
        return cls(ChannelState(msg.terms))

    def accept(self, voucher: Voucher) -> Accepted:
        inc = check_voucher(self.state, voucher)
        self.state = replace(self.state, nonce=voucher.nonce, amount=voucher.amount)
        return Accepted(self.state, inc)

    def close(self, close: CloseMessage, payee: Identity) -> CloseMessage:
        """Countersign a close for exactly the highest accepted voucher."""
        if self.state.state == CLOSED:
            raise ChannelClosedError("channel is already closed")
        close.verify(self.state.terms, require_payee=False)
        if close.amount != self.state.amount or close.nonce != self.state.nonce:
            raise BadCloseError(
                f"close proposes {close.amount} at nonce {close.nonce}; the payee holds "
                f"{self.state.amount} at nonce {self.state.nonce}"
            )
        self.state = replace(self.state, state=CLOSED)
        return countersign_close(close, payee)


class PayerChannel:
    """The payer's side: signs vouchers with increasing nonce and cumulative amount."""

    def __init__(self, state: ChannelState, identity: Identity) -> None:
        if identity.public_key != state.terms.payer:
            raise BadOpenError("this identity is not the channel's payer")
        self.state = state
        self._identity = identity

    def pay(self, increment: int, ref: bytes = b"") -> Voucher:
        if isinstance(increment, bool) or not isinstance(increment, int) or increment <= 0:
            raise ChannelError(f"a payment must be a positive integer, got {increment!r}")
        if self.state.state != OPEN:
            raise ChannelClosedError(f"channel is {self.state.state}")
        amount = self.state.amount + increment
        if amount > self.state.terms.capacity:
            raise OverCapacityError(
                f"paying {increment} needs {amount}, over the capacity {self.state.terms.capacity}",
                hint="open a new channel with more capacity",
            )
        voucher = sign_voucher(
            self._identity, self.state.channel_id, self.state.nonce + 1, amount, ref
        )
        self.state = replace(self.state, nonce=voucher.nonce, amount=amount)
        return voucher

    def propose_close(self) -> CloseMessage:
        return sign_close(
            self._identity, self.state.channel_id, self.state.nonce, self.state.amount
        )


def cheating_vouchers(
    payer: Identity, forger: Identity, state: ChannelState, last: Voucher | None
) -> dict[str, Voucher]:
    """Vouchers a cheating payer could send on ``state`` (the payee's accepted view).

    For simnet's ``cheaters`` scenario and tests: every one must be refused. ``last`` is the
    most recent accepted voucher (replayed as is). Keys are the attempt kinds.
    """
    cid, nonce, amount = state.channel_id, state.nonce, state.amount
    cap = state.terms.capacity
    out = {
        "forgery": sign_voucher(forger, cid, nonce + 1, min(amount + 1, cap)),
        "over_capacity": sign_voucher(payer, cid, nonce + 1, cap + 1),
        "rollback": sign_voucher(payer, cid, nonce + 1, max(amount - 1, 0)),
        "stale_nonce": sign_voucher(payer, cid, max(nonce - 1, 0), min(amount + 1, cap)),
        "unknown_channel": sign_voucher(
            payer, hashlib.sha256(b"no such channel" + cid).digest(), 1, 1
        ),
    }
    if last is not None:
        out["replay"] = last
    return out
