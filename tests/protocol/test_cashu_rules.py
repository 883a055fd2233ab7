"""Cashu deposit rules: denominations, the nested cover, deposit decoding (protocol/cashu.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.protocol import cashu
from bitterbot.protocol.errors import BitterbotError, DecodeError


@given(st.integers(1, 10**9))
def test_denominations_sum_to_the_capacity_in_few_powers_of_two(capacity: int) -> None:
    amounts = cashu.denominations(capacity)
    assert sum(amounts) == capacity
    assert all(a & (a - 1) == 0 for a in amounts)
    assert len(amounts) <= 2 * 40 + cashu.PIECES_PER_UNIT + 40 <= cashu.MAX_PROOFS
    unit = cashu.cover_unit(capacity)
    assert unit * cashu.PIECES_PER_UNIT >= capacity and max(amounts) <= max(unit, 1)


@settings(max_examples=300)
@given(
    capacity=st.integers(1, 200_000),
    steps=st.lists(st.integers(1, 5_000), min_size=1, max_size=60),
)
def test_the_cover_nests_never_overpays_and_stays_within_one_unit(
    capacity: int, steps: list[int]
) -> None:
    amounts = cashu.denominations(capacity)
    unit = cashu.cover_unit(capacity)
    signed: set[int] = set()
    owed = 0
    for step in steps:
        if owed + step > capacity:
            break
        owed += step
        new = cashu.extend_cover(amounts, signed, owed)
        total = cashu.check_cover(amounts, signed, new, owed)  # the payee's rule agrees
        before = set(signed)
        signed |= set(new)
        assert before <= signed  # nested: a later set contains the earlier one
        assert total == sum(amounts[i] for i in signed) <= owed
        assert owed - total < unit


def test_the_payee_refuses_a_cover_that_overpays_reuses_or_falls_short() -> None:
    amounts = cashu.denominations(10_000)  # unit 128
    assert cashu.cover_unit(10_000) == 128
    exact = cashu.extend_cover(amounts, set(), 250)
    assert sum(amounts[i] for i in exact) == 250
    with pytest.raises(cashu.CashuError, match="exceed"):
        cashu.check_cover(amounts, set(), exact, 249)
    with pytest.raises(cashu.CashuError, match="signed already"):
        cashu.check_cover(amounts, set(exact), exact[:1], 500)
    with pytest.raises(cashu.CashuError, match="below 128"):
        cashu.check_cover(amounts, set(), [], 128)
    assert cashu.check_cover(amounts, set(), [], 127) == 0


def _deposit_obj(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "mint": "http://127.0.0.1:3338",
        "keyset": "00ab",
        "payer_key": b"\x02" * 33,
        "payee_key": b"\x03" * 33,
        "locktime": 1_800_000_000,
        "proofs": [[1, b"n" * 32, b"\x02" * 33, b"e" * 32, b"s" * 32, b"r" * 32]],
    }
    obj.update(over)
    return obj


def test_deposit_round_trip_and_offline_checks() -> None:
    deposit = cashu.Deposit.from_obj(_deposit_obj())
    assert cashu.Deposit.from_obj(deposit.to_obj()) == deposit
    assert '"locktime","1800000000"' in deposit.secret(0)
    assert '["sigflag","SIG_INPUTS"]' in deposit.secret(0)
    cashu.check_deposit(deposit, capacity=1, payee_key=b"\x03" * 33, locktime=1_800_000_000)
    for kw, match in (
        ({"payee_key": b"\x02" * 33}, "payee and payer keys"),
        ({"locktime": 1}, "locktime"),
        ({"capacity": 2}, "denominations"),
    ):
        args: dict[str, Any] = {
            "capacity": 1,
            "payee_key": b"\x03" * 33,
            "locktime": 1_800_000_000,
            **kw,
        }
        with pytest.raises(cashu.CashuError, match=match):
            cashu.check_deposit(deposit, **args)


@pytest.mark.parametrize(
    "over",
    [
        {"proofs": []},
        {"proofs": [[3, b"n" * 32, b"\x02" * 33, b"e" * 32, b"s" * 32, b"r" * 32]]},
        {"proofs": [[True, b"n" * 32, b"\x02" * 33, b"e" * 32, b"s" * 32, b"r" * 32]]},
        {"proofs": [[1, b"n" * 31, b"\x02" * 33, b"e" * 32, b"s" * 32, b"r" * 32]]},
        {"keyset": "ZZ"},
        {"payer_key": b"\x02" * 32},
        {"locktime": 0},
        {"mint": ""},
    ],
)
def test_malformed_deposits_are_decode_errors(over: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        cashu.Deposit.from_obj(_deposit_obj(**over))


@given(st.recursive(st.none() | st.integers() | st.binary(max_size=40) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=9), inner, max_size=6),
                    max_leaves=20))  # fmt: skip
def test_arbitrary_material_only_raises_our_errors(obj: Any) -> None:
    for parse in (cashu.Deposit.from_obj, lambda o: cashu.parse_signatures(o, 10)):
        try:
            parse(obj)
        except BitterbotError:
            pass
