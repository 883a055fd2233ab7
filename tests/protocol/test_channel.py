"""Payment channel state machine and escrow rules (sans-IO), with hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitterbot.protocol import channel as ch
from bitterbot.protocol import settlement as st_
from bitterbot.protocol.envelope import signing_bytes
from bitterbot.protocol.errors import PaymentError, WireError
from bitterbot.protocol.identity import Identity

PAYER = Identity.from_seed(b"\x01" * 32)
PAYEE = Identity.from_seed(b"\x02" * 32)
MALLORY = Identity.from_seed(b"\x03" * 32)
NOW = 1_700_000_000_000


def make_channel(capacity: int = 1000, window: int = 60_000) -> ch.OpenMessage:
    terms = ch.new_terms(
        PAYER.public_key,
        PAYEE.public_key,
        capacity,
        backend="ledger",
        dispute_window_ms=window,
        now_ms=NOW,
        salt=b"s" * 16,
    )
    return ch.open_channel(terms, PAYER).countersign(PAYEE)


def pair(capacity: int = 1000) -> tuple[ch.PayerChannel, ch.PayeeChannel, ch.OpenMessage]:
    msg = make_channel(capacity)
    payer = ch.PayerChannel(ch.ChannelState(msg.terms), PAYER)
    payee = ch.PayeeChannel.from_open(msg, PAYEE.public_key)
    return payer, payee, msg


def test_open_message_round_trips_and_fixes_the_channel_id() -> None:
    msg = make_channel()
    again = ch.OpenMessage.from_bytes(msg.to_bytes())
    assert again == msg
    again.verify()
    other = make_channel(capacity=1001)
    assert other.channel_id != msg.channel_id


def test_open_message_with_a_forged_payee_signature_is_refused() -> None:
    terms = make_channel().terms
    msg = ch.open_channel(terms, PAYER)
    forged = ch.OpenMessage(terms, msg.payer_sig, MALLORY.sign(terms.signed_bytes()))
    with pytest.raises(ch.BadOpenError):
        forged.verify()
    with pytest.raises(ch.BadOpenError):
        msg.countersign(MALLORY)


def test_vouchers_accumulate_and_return_the_increment() -> None:
    payer, payee, _ = pair()
    got = [payee.accept(payer.pay(n)).increment for n in (10, 5, 100)]
    assert got == [10, 5, 100]
    assert payee.state.amount == 115 and payee.state.nonce == 3


def test_forged_voucher_signature_is_rejected() -> None:
    _, payee, msg = pair()
    forged = ch.sign_voucher(MALLORY, msg.channel_id, 1, 10)
    with pytest.raises(ch.ForgedVoucherError) as info:
        payee.accept(forged)
    assert info.value.code == "voucher_forged"
    assert payee.state.amount == 0


def test_replayed_voucher_is_rejected() -> None:
    payer, payee, _ = pair()
    v = payer.pay(10)
    payee.accept(v)
    with pytest.raises(ch.ReplayedVoucherError) as info:
        payee.accept(v)
    assert info.value.code == "voucher_replayed"


def test_lower_cumulative_amount_is_rejected() -> None:
    _, payee, msg = pair()
    payee.accept(ch.sign_voucher(PAYER, msg.channel_id, 1, 50))
    with pytest.raises(ch.LowerCumulativeError) as info:
        payee.accept(ch.sign_voucher(PAYER, msg.channel_id, 2, 40))
    assert info.value.code == "voucher_rolled_back"
    with pytest.raises(ch.LowerCumulativeError):
        payee.accept(ch.sign_voucher(PAYER, msg.channel_id, 3, 50))


def test_amount_over_capacity_is_rejected() -> None:
    payer, payee, msg = pair(capacity=100)
    with pytest.raises(ch.OverCapacityError):
        payee.accept(ch.sign_voucher(PAYER, msg.channel_id, 1, 101))
    with pytest.raises(ch.OverCapacityError):
        payer.pay(101)
    assert payee.accept(payer.pay(100)).increment == 100


def test_voucher_for_unknown_or_closed_channel_is_rejected() -> None:
    payer, payee, msg = pair()
    stray = ch.sign_voucher(PAYER, b"\x09" * 32, 1, 1)
    with pytest.raises(ch.UnknownChannelError):
        payee.accept(stray)
    with pytest.raises(ch.UnknownChannelError):
        ch.check_voucher(None, stray)
    payee.accept(payer.pay(7))
    final = payee.close(payer.propose_close(), PAYEE)
    final.verify(msg.terms)
    with pytest.raises(ch.ChannelClosedError) as info:
        payee.accept(payer.pay(1))
    assert info.value.code == "channel_closed"


def test_close_for_a_different_total_is_refused() -> None:
    payer, payee, msg = pair()
    payee.accept(payer.pay(30))
    cheat = ch.sign_close(PAYER, msg.channel_id, 1, 10)
    with pytest.raises(ch.BadCloseError):
        payee.close(cheat, PAYEE)


def test_voucher_signature_is_domain_separated_from_close() -> None:
    """A close signature over the same numbers is no voucher."""
    _, payee, msg = pair()
    close = ch.sign_close(PAYER, msg.channel_id, 1, 10)
    as_voucher = ch.Voucher(msg.channel_id, 1, 10, b"", close.payer_sig)
    with pytest.raises(ch.ForgedVoucherError):
        payee.accept(as_voucher)


# --- properties -------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=12))
def test_honest_payments_are_accepted_until_capacity(payments: list[int]) -> None:
    payer, payee, _ = pair(capacity=1000)
    paid = 0
    for p in payments:
        if paid + p > 1000:
            with pytest.raises(ch.OverCapacityError):
                payer.pay(p)
            continue
        assert payee.accept(payer.pay(p)).increment == p
        paid += p
    assert payee.state.amount == paid == payer.state.amount


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=20),
            st.integers(min_value=0, max_value=1500),
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_accepted_total_never_decreases_or_exceeds_capacity(
    attempts: list[tuple[int, int, bool]],
) -> None:
    """Arbitrary (nonce, amount, forged?) vouchers: only valid ones move the state, upward."""
    _, payee, msg = pair(capacity=1000)
    for nonce, amount, forged in attempts:
        signer = MALLORY if forged else PAYER
        v = ch.sign_voucher(signer, msg.channel_id, nonce, amount)
        before = payee.state
        valid = not forged and nonce > before.nonce and before.amount < amount <= 1000
        try:
            acc = payee.accept(v)
        except PaymentError:
            assert not valid
            assert payee.state == before
            continue
        assert valid
        assert acc.increment == amount - before.amount > 0
        assert payee.state.amount <= 1000 and payee.state.nonce == nonce


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_voucher_decoder(data: bytes) -> None:
    for parse in (ch.Voucher.from_bytes, ch.OpenMessage.from_bytes):
        try:
            parse(data)
        except WireError:
            pass


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.binary(max_size=32),
)
def test_voucher_round_trips(nonce: int, amount: int, ref: bytes) -> None:
    v = ch.sign_voucher(PAYER, b"c" * 32, nonce, amount, ref)
    again = ch.Voucher.from_bytes(v.to_bytes())
    assert again == v
    again.verify(PAYER.public_key)
    # the fast signing bytes are exactly the generic canonical ones
    assert v.signed_bytes() == signing_bytes(ch.VOUCHER_KIND, v.body())


def test_voucher_with_a_float_or_oversize_ref_is_refused() -> None:
    v = ch.sign_voucher(PAYER, b"c" * 32, 1, 1)
    obj = v.to_obj()
    with pytest.raises(WireError):
        ch.Voucher.from_obj({**obj, "amount": 1.5})
    with pytest.raises(WireError):
        ch.Voucher.from_obj({**obj, "ref": b"x" * 33})
    with pytest.raises(WireError):
        ch.Voucher.from_bytes(b"\x00" * 5000)


# --- escrow (settlement rules) ---------------------------------------------------------


def test_cooperative_close_pays_both_sides_at_once() -> None:
    payer, payee, msg = pair(capacity=1000)
    e = st_.escrow_lock(msg)
    payee.accept(payer.pay(300))
    close = payee.close(payer.propose_close(), PAYEE)
    e, transfers = st_.escrow_close(e, close)
    assert transfers == [
        st_.Transfer(PAYEE.public_key, 300),
        st_.Transfer(PAYER.public_key, 700),
    ]
    assert e.state == st_.CLOSED
    with pytest.raises(ch.ChannelClosedError):
        st_.escrow_settle(e, payer.pay(1), NOW)


def test_unilateral_close_settles_highest_voucher_then_refunds_after_window() -> None:
    payer, payee, msg = pair(capacity=1000)
    e = st_.escrow_lock(msg)
    v1 = payer.pay(100)
    v2 = payer.pay(150)
    e, t = st_.escrow_settle(e, v1, NOW)
    assert t == [st_.Transfer(PAYEE.public_key, 100)] and e.state == st_.CLOSING
    with pytest.raises(st_.DisputeWindowOpenError):
        st_.escrow_refund(e, NOW + 59_999)
    e, t = st_.escrow_settle(e, v2, NOW + 1000)  # a higher voucher inside the window
    assert t == [st_.Transfer(PAYEE.public_key, 150)]
    with pytest.raises(ch.LowerCumulativeError):
        st_.escrow_settle(e, v1, NOW + 2000)  # rolled back voucher pays nothing
    e, t = st_.escrow_refund(e, NOW + 60_000)
    assert t == [st_.Transfer(PAYER.public_key, 750)] and e.state == st_.CLOSED


def test_payer_close_request_opens_window_and_payee_can_still_settle() -> None:
    payer, _, msg = pair(capacity=500)
    e = st_.escrow_lock(msg)
    v = payer.pay(200)
    e, _ = st_.escrow_request_close(e, payer.propose_close(), NOW)
    assert e.deadline_ms == NOW + 60_000
    e, t = st_.escrow_settle(e, v, NOW + 10)
    assert t[0].amount == 200
    with pytest.raises(ch.ChannelClosedError):
        st_.escrow_settle(e, payer.pay(1), NOW + 60_000)
    e, t = st_.escrow_refund(e, NOW + 60_000)
    assert t[0].amount == 300


def test_escrow_refuses_forged_settlement_and_close_request() -> None:
    _, _, msg = pair()
    e = st_.escrow_lock(msg)
    with pytest.raises(ch.ForgedVoucherError):
        st_.escrow_settle(e, ch.sign_voucher(MALLORY, msg.channel_id, 1, 999), NOW)
    with pytest.raises(ch.BadCloseError):
        st_.escrow_request_close(e, ch.sign_close(MALLORY, msg.channel_id, 0, 0), NOW)
    with pytest.raises(st_.SettlementError):
        st_.escrow_refund(e, NOW + 10**9)  # still open: no refund without a close


_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40)
_values = st.recursive(
    _leaf | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["v", "channel", "nonce", "amount", "ref", "sig", "terms", "payer_sig", "payee_sig"]
            ),
            inner,
            max_size=8,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_arbitrary_decoded_values_only_raise_wire_errors(obj: object) -> None:
    for parse in (
        ch.Voucher.from_obj,
        ch.OpenMessage.from_obj,
        ch.CloseMessage.from_obj,
        ch.ChannelTerms.from_obj,
    ):
        try:
            parse(obj)
        except WireError:
            pass
