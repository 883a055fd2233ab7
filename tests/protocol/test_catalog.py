"""Publisher catalogs: signatures bound to the key, rollback refusal, size limits, selection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.protocol.catalog import (
    MAX_CATALOG_BYTES,
    CatalogEntry,
    catalog_key,
    make_catalog,
    name_key,
    parse_catalog,
    select_newest,
    tag_key,
)
from bitterbot.protocol.errors import BitterbotError, StaleError, TooLargeError, ValidationError
from bitterbot.protocol.identity import Identity

NOW = 1_800_000_000_000
PUB = Identity.from_seed(b"p" * 32)
OTHER = Identity.from_seed(b"o" * 32)


def entry(name: str = "calc", version: str = "1.0.0", price: int = 0) -> CatalogEntry:
    return CatalogEntry(name, version, "bafy" + name, 1234, price, ("math",), "a calculator")


def test_catalog_round_trips_and_is_bound_to_its_publisher_key() -> None:
    cat = make_catalog(PUB, 3, [entry(), entry("units")], NOW)
    parsed = parse_catalog(cat.to_bytes(), key=catalog_key(PUB.public_key))
    assert parsed.seq == 3 and parsed.publisher == PUB.public_key
    assert parsed.find("units") is not None and parsed.find("nope") is None
    with pytest.raises(ValidationError, match="other than the publisher"):
        parse_catalog(cat.to_bytes(), key=catalog_key(OTHER.public_key))


def test_replayed_older_catalog_is_refused() -> None:
    old = make_catalog(PUB, 1, [entry(version="1.0.0")], NOW)
    new = make_catalog(PUB, 2, [entry(version="1.1.0")], NOW + 1)
    seen = parse_catalog(new.to_bytes()).seq
    with pytest.raises(StaleError, match="rollback"):
        parse_catalog(old.to_bytes(), min_seq=seen)
    with pytest.raises(StaleError):
        parse_catalog(new.to_bytes(), min_seq=seen)  # same seq is not newer either


def test_select_prefers_the_highest_valid_sequence() -> None:
    key = catalog_key(PUB.public_key)
    records = [
        make_catalog(PUB, 4, [entry()], NOW).to_bytes(),
        make_catalog(OTHER, 99, [entry()], NOW).to_bytes(),  # wrong signer for this key
        b"\x00garbage",
        make_catalog(PUB, 7, [entry()], NOW).to_bytes(),
        make_catalog(PUB, 5, [entry()], NOW).to_bytes(),
    ]
    assert select_newest(key, records) == 3
    with pytest.raises(ValidationError):
        select_newest(key, [b"junk"])


def test_oversize_record_is_refused_before_parsing() -> None:
    with pytest.raises(TooLargeError):
        parse_catalog(b"\x00" * (MAX_CATALOG_BYTES + 1))
    too_many = [
        CatalogEntry(f"s{i}", "1.0.0", "bafy" + "x" * 100, 1, 0, ("t",) * 16, "d" * 280)
        for i in range(100)
    ]
    with pytest.raises(TooLargeError):
        make_catalog(PUB, 1, too_many, NOW)


def test_catalog_key_fits_kademlia_lookups_and_differs_per_publisher() -> None:
    from bitterbot.protocol.catalog import MAX_DHT_KEY_BYTES

    key = catalog_key(PUB.public_key)
    assert key.startswith("/bitterbot/") and len(key.encode()) <= MAX_DHT_KEY_BYTES
    assert key != catalog_key(OTHER.public_key)


def test_discovery_keys_are_normalized_and_separated() -> None:
    assert name_key("Calc") == name_key(" calc ")
    assert name_key("calc") != tag_key("calc")
    assert len(name_key("calc")) == 32


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_arbitrary_records_only_raise_our_errors(data: bytes) -> None:
    try:
        parse_catalog(data, key=catalog_key(PUB.public_key))
    except BitterbotError:
        pass


def test_package_key_is_the_cid_multihash() -> None:
    import hashlib

    from bitterbot.protocol.catalog import package_key
    from bitterbot.protocol.skillpkg import content_id

    data = b"some archive bytes"
    key = package_key(content_id(data))
    assert key == b"\x12\x20" + hashlib.sha256(data).digest()
    for bad in ["", "bafy", "Qm123", "b" + "a" * 58]:
        with pytest.raises(ValidationError):
            package_key(bad)
