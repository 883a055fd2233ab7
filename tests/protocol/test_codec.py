"""Canonical msgpack: round trips, canonical-only decoding, and typed errors for any bytes."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.protocol.codec import MAX_DEPTH, decode, encode, expect_map
from bitterbot.protocol.errors import DecodeError, TooLargeError, WireError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip_gives_the_same_value_and_bytes(value: object) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.dictionaries(st.text(max_size=6), st.integers(0, 9), min_size=2, max_size=6))
def test_map_key_order_does_not_change_the_encoding(mapping: dict[str, int]) -> None:
    reversed_map = dict(reversed(list(mapping.items())))
    assert encode(mapping) == encode(reversed_map)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_our_typed_error(data: bytes) -> None:
    try:
        decode(data)
    except WireError:
        pass


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(TooLargeError) as info:
        decode(b"\xc4" + b"\x00" * 100, max_size=10)
    assert info.value.code == "too_large"


def test_non_canonical_map_order_is_refused() -> None:
    unsorted = msgpack.packb({"b": 1, "a": 2})
    with pytest.raises(DecodeError, match="canonical"):
        decode(unsorted)


def test_non_shortest_integer_is_refused() -> None:
    with pytest.raises(DecodeError, match="canonical"):
        decode(b"\xcd\x00\x01")  # uint16 holding 1: shortest form is the fixint 0x01


def test_floats_are_refused_in_both_directions() -> None:
    with pytest.raises(DecodeError, match="float"):
        encode({"amount": 1.5})
    with pytest.raises(DecodeError):
        decode(msgpack.packb(1.5))


def test_non_string_map_keys_are_refused() -> None:
    with pytest.raises(DecodeError):
        decode(msgpack.packb({1: 2}))


def test_deep_nesting_is_refused() -> None:
    value: object = 1
    for _ in range(MAX_DEPTH + 2):
        value = [value]
    with pytest.raises(DecodeError, match="nested"):
        encode(value)
    raw = b"\x91" * (MAX_DEPTH + 2) + b"\x01"
    with pytest.raises(DecodeError):
        decode(raw)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(DecodeError):
        decode(encode(1) + b"\x00")


def test_expect_map_checks_fields_and_rejects_bool_for_int() -> None:
    assert expect_map({"n": 3}, "thing", {"n": int})["n"] == 3
    with pytest.raises(DecodeError, match="missing field 'n'"):
        expect_map({}, "thing", {"n": int})
    with pytest.raises(DecodeError, match="bool"):
        expect_map({"n": True}, "thing", {"n": int})
    with pytest.raises(DecodeError, match="expected a map"):
        expect_map([1], "thing", {"n": int})
