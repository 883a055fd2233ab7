"""Attestations: every kind round-trips; bad input raises only our typed errors."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.protocol import attestation as A
from bitterbot.protocol.codec import decode, encode
from bitterbot.protocol.envelope import seal
from bitterbot.protocol.errors import (
    BitterbotError,
    DecodeError,
    SignatureError,
    StaleError,
    TooLargeError,
    UnknownVersionError,
    ValidationError,
)
from bitterbot.protocol.identity import Identity

NOW = 1_800_000_000_000
H = hashlib.sha256(b"evidence").digest()
alice = Identity.from_seed(b"a" * 32)
bob = Identity.from_seed(b"b" * 32)


def every_kind() -> list[A.Attestation]:
    return [
        A.rating(alice, 1, NOW, "pkg:abc", 4, "works well"),
        A.audit(alice, 2, NOW, "pkg:abc", False, H, ["reads ~/.ssh"], publisher=bob.public_key),
        A.flag(alice, 3, NOW, "pkg:abc", H, "exfiltrates files"),
        A.revoke(bob, 1, NOW, "pkg:abc", "key leaked"),
        A.trust(alice, 4, NOW, bob.public_key, vouch=True),
        A.trust(alice, 5, NOW, bob.public_key, vouch=False),
    ]


@pytest.mark.parametrize("att", every_kind(), ids=lambda a: f"{a.kind}-{a.seq}")
def test_every_kind_round_trips_through_bytes(att: A.Attestation) -> None:
    back = A.parse(att.data, now_ms=NOW)
    assert back == att
    assert back.id == hashlib.sha256(att.data).digest()
    assert back.attester in (alice.public_key, bob.public_key)
    assert back.describe()["kind"] == att.kind


def test_subject_names_the_skill_or_peer() -> None:
    assert A.rating(alice, 1, NOW, "pkg:x", 5).subject == "skill:pkg:x"
    assert A.trust(alice, 1, NOW, bob.public_key, True).subject == "peer:" + bob.public_key.hex()


@pytest.mark.parametrize("stars", [0, 6, -1])
def test_stars_outside_one_to_five_are_refused(stars: int) -> None:
    with pytest.raises(ValidationError):
        A.rating(alice, 1, NOW, "pkg:x", stars)


def test_bool_stars_and_zero_seq_are_refused() -> None:
    with pytest.raises(ValidationError):
        A.rating(alice, 1, NOW, "pkg:x", True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        A.rating(alice, 0, NOW, "pkg:x", 3)


def test_long_text_and_bad_hash_are_refused() -> None:
    with pytest.raises(ValidationError):
        A.rating(alice, 1, NOW, "pkg:x", 3, "x" * 281)
    with pytest.raises(DecodeError):
        A.flag(alice, 1, NOW, "pkg:x", b"short")


def test_self_vouch_and_foreign_revocation_are_refused() -> None:
    with pytest.raises(ValidationError):
        A.trust(alice, 1, NOW, alice.public_key, vouch=True)
    # a revocation that names another key as publisher, signed by alice
    env = seal(
        "rep.revoke",
        {"seq": 1, "skill": "s", "reason": "", "publisher": bob.public_key},
        alice,
        NOW,
    )
    with pytest.raises(ValidationError, match="publisher"):
        A.parse(env.to_bytes())


def test_unknown_kind_and_unknown_field_are_refused() -> None:
    env = seal("rep.gossip", {"seq": 1}, alice, NOW)
    with pytest.raises(UnknownVersionError):
        A.parse(env.to_bytes())
    env = seal("rep.rating", {"seq": 1, "skill": "s", "stars": 3, "text": "", "x": 1}, alice, NOW)
    with pytest.raises(DecodeError, match="unknown fields"):
        A.parse(env.to_bytes())


def test_oversize_attestation_is_refused_before_parsing() -> None:
    with pytest.raises(TooLargeError):
        A.parse(b"\x00" * (A.MAX_ATTESTATION_BYTES + 1))


def test_future_and_stale_timestamps_are_refused() -> None:
    att = A.rating(alice, 1, NOW + A.MAX_SKEW_MS + 1, "pkg:x", 3)
    with pytest.raises(StaleError):
        A.parse(att.data, now_ms=NOW)
    old = A.rating(alice, 1, NOW - 10_000, "pkg:x", 3)
    assert A.parse(old.data, now_ms=NOW).seq == 1  # no age limit: sync accepts history
    with pytest.raises(StaleError):
        A.parse(old.data, now_ms=NOW, max_age_ms=5_000)


def test_tampered_attestation_fails_its_signature() -> None:
    att = A.rating(alice, 1, NOW, "pkg:x", 1)
    obj = decode(att.data)
    obj["payload"]["stars"] = 5
    with pytest.raises(SignatureError):
        A.parse(encode(obj))


def test_batch_round_trips_and_rejects_mixed_or_repeated_entries() -> None:
    atts = [A.rating(alice, i, NOW, f"pkg:{i}", 3) for i in range(1, 6)]
    assert A.decode_batch(A.encode_batch(atts), now_ms=NOW) == atts
    with pytest.raises(ValidationError):
        A.encode_batch([atts[0], A.rating(bob, 1, NOW, "pkg:1", 3)])
    forged = encode({"v": 1, "atts": [atts[0].data, atts[0].data]})
    with pytest.raises(ValidationError):
        A.decode_batch(forged)
    with pytest.raises(ValidationError):
        A.encode_batch([A.rating(alice, 1, NOW, "p", 3)] * (A.MAX_BATCH + 1))


def test_one_bad_entry_rejects_the_whole_batch() -> None:
    good = A.rating(alice, 1, NOW, "pkg:x", 3)
    bad = decode(A.rating(alice, 2, NOW, "pkg:y", 3).data)
    bad["sig"] = bytes([bad["sig"][0] ^ 1]) + bad["sig"][1:]
    with pytest.raises(SignatureError):
        A.decode_batch(encode({"v": 1, "atts": [good.data, encode(bad)]}))
    with pytest.raises(UnknownVersionError):
        A.decode_batch(encode({"v": 2, "atts": [good.data]}))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes) -> None:
    for fn in (A.parse, A.decode_batch):
        try:
            fn(data)
        except BitterbotError:
            pass


@settings(max_examples=100, deadline=None)
@given(
    seq=st.integers(1, 2**63 - 1),
    stars=st.integers(1, 5),
    skill=st.text(min_size=1, max_size=40).filter(lambda s: s == s.strip() and s.isprintable()),
    text=st.text(max_size=60).filter(str.isprintable),
    ts=st.integers(0, NOW),
)
def test_valid_ratings_round_trip(seq: int, stars: int, skill: str, text: str, ts: int) -> None:
    att = A.rating(alice, seq, ts, skill, stars, text)
    back = A.parse(att.data, now_ms=NOW)
    assert (back.seq, back.payload["stars"], back.skill, back.payload["text"]) == (
        seq,
        stars,
        skill,
        text,
    )


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["seq", "skill", "stars", "text", "publisher", "peer", "stance", "zz"]),
        st.one_of(
            st.integers(-3, 7),
            st.text(max_size=5),
            st.binary(max_size=40),
            st.booleans(),
            st.none(),
        ),
        max_size=6,
    ),
    st.sampled_from(sorted(A.KINDS)),
)
def test_arbitrary_payloads_raise_only_typed_errors(payload: dict[str, object], kind: str) -> None:
    try:
        A.parse(seal(kind, payload, alice, NOW).to_bytes())
    except BitterbotError:
        pass


def test_parse_stored_checks_everything_but_the_signature() -> None:
    att = A.rating(alice, 1, NOW, "pkg:x", 4)
    assert A.parse_stored(att.data) == att
    obj = decode(att.data)
    obj["payload"]["stars"] = 9
    with pytest.raises(ValidationError):
        A.parse_stored(encode(obj))
    obj["payload"]["stars"] = 5  # signature now wrong: only parse() notices
    assert A.parse_stored(encode(obj)).payload["stars"] == 5
    with pytest.raises(SignatureError):
        A.parse(encode(obj))
    with pytest.raises(DecodeError):
        A.parse_stored(encode({**obj, "v": 2}))
