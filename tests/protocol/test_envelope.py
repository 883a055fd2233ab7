"""Signed envelopes: verification, domain separation, freshness, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.protocol.codec import decode, encode
from bitterbot.protocol.envelope import Envelope, open_envelope, seal
from bitterbot.protocol.errors import (
    DecodeError,
    SignatureError,
    StaleError,
    UnknownVersionError,
    WireError,
)
from bitterbot.protocol.identity import Identity, decode_key, encode_key

NOW = 1_800_000_000_000


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.from_seed(b"a" * 32)


def test_sealed_envelope_opens_with_the_same_content(alice: Identity) -> None:
    env = seal("test.note", {"text": "hello", "n": 3}, alice, NOW)
    opened = open_envelope(env.to_bytes(), kinds={"test.note"}, now_ms=NOW)
    assert opened == env
    assert opened.signer == alice.public_key


def test_any_changed_byte_breaks_the_envelope(alice: Identity) -> None:
    data = bytearray(seal("test.note", {"text": "hello"}, alice, NOW).to_bytes())
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        with pytest.raises(WireError):
            open_envelope(bytes(tampered))


def test_signature_for_one_kind_does_not_verify_as_another(alice: Identity) -> None:
    env = seal("rating", {"stars": 5}, alice, NOW)
    forged = Envelope("flag", env.signer, env.ts, env.payload, env.sig)
    with pytest.raises(SignatureError):
        open_envelope(forged.to_bytes())


def test_another_signer_key_is_refused(alice: Identity) -> None:
    env = seal("test.note", {"x": 1}, alice, NOW)
    mallory = Identity.from_seed(b"m" * 32)
    forged = Envelope(env.kind, mallory.public_key, env.ts, env.payload, env.sig)
    with pytest.raises(SignatureError):
        open_envelope(forged.to_bytes())


def test_unexpected_kind_and_version_are_refused(alice: Identity) -> None:
    env = seal("test.note", {}, alice, NOW)
    with pytest.raises(UnknownVersionError):
        open_envelope(env.to_bytes(), kinds={"other"})
    obj = decode(env.to_bytes())
    obj["v"] = 2
    with pytest.raises(UnknownVersionError):
        open_envelope(encode(obj))


def test_stale_and_future_timestamps_are_refused(alice: Identity) -> None:
    env = seal("test.note", {}, alice, NOW)
    with pytest.raises(StaleError):
        open_envelope(env.to_bytes(), now_ms=NOW + 10_000, max_age_ms=5_000)
    with pytest.raises(StaleError, match="future"):
        open_envelope(env.to_bytes(), now_ms=NOW - 3_600_000)


def test_unknown_fields_are_refused(alice: Identity) -> None:
    obj = seal("test.note", {}, alice, NOW).to_obj()
    obj["extra"] = 1
    with pytest.raises(DecodeError, match="unknown fields"):
        open_envelope(encode(obj))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_open_envelope(data: bytes) -> None:
    try:
        open_envelope(data)
    except WireError:
        pass


def test_public_key_text_form_round_trips(alice: Identity) -> None:
    text = encode_key(alice.public_key)
    assert text.startswith("ed25519:")
    assert decode_key(text) == alice.public_key
