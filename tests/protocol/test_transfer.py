"""Transfer protocol: verified downloads, resumption across providers, cheating providers."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.protocol.codec import encode
from bitterbot.protocol.errors import BitterbotError
from bitterbot.protocol.transfer import (
    CHUNK_SIZE,
    BadProviderError,
    Download,
    TransferError,
    decode_get,
    encode_data,
    encode_end,
    encode_error,
    encode_meta,
    iter_response,
)

PACKAGE = os.urandom(3 * CHUNK_SIZE + 77)
DIGEST = hashlib.sha256(PACKAGE).digest()


def new_download(max_size: int = 10 * CHUNK_SIZE) -> Download:
    return Download("bafypkg", lambda data: hashlib.sha256(data).digest() == DIGEST, max_size)


def serve(
    dl: Download, provider: str, package: bytes = PACKAGE, stop_after: int | None = None
) -> bool:
    package_id, offset = decode_get(dl.start(provider))
    assert package_id == "bafypkg"
    frames = iter_response(package, offset)
    if stop_after is not None:
        frames = frames[:stop_after]
    done = False
    for frame in frames:
        done = dl.receive(frame)
    return done


def test_honest_provider_delivers_verified_bytes() -> None:
    dl = new_download()
    assert serve(dl, "A")
    assert dl.data == PACKAGE


def test_download_resumes_with_another_provider_after_a_disconnect() -> None:
    dl = new_download()
    assert not serve(dl, "A", stop_after=3)  # meta + 2 chunks, then the stream dies
    assert len(dl.received) == 2 * CHUNK_SIZE
    _, offset = decode_get(dl.start("B"))
    assert offset == 2 * CHUNK_SIZE
    for frame in iter_response(PACKAGE, offset):
        dl.receive(frame)
    assert dl.done and dl.data == PACKAGE and dl.contributors == ["A", "B"]


def test_altered_bytes_are_detected_and_all_contributors_reported() -> None:
    altered = bytearray(PACKAGE)
    altered[12345] ^= 0xFF
    dl = new_download()
    with pytest.raises(BadProviderError, match="signed hash"):
        serve(dl, "evil", bytes(altered))
    assert dl.verdict() == ["evil"]
    assert len(dl.received) == 0
    assert serve(dl, "honest") and dl.data == PACKAGE


def test_protocol_violations_are_the_providers_fault() -> None:
    cases = [
        [encode_data(0, b"x")],  # data before meta
        [encode_meta(11 * CHUNK_SIZE)],  # bigger than the signed limit
        [encode_meta(len(PACKAGE)), encode_data(5, b"x")],  # gap
        [encode_meta(4), encode_data(0, b"12345")],  # more than announced
        [encode_meta(len(PACKAGE)), encode_end()],  # short
        [b"\xc1"],  # not msgpack
        [encode({"t": "surprise"})],
    ]
    for frames in cases:
        dl = new_download()
        dl.start("p")
        with pytest.raises(BadProviderError):
            for frame in frames:
                dl.receive(frame)


def test_error_answer_is_not_a_violation() -> None:
    dl = new_download()
    dl.start("p")
    with pytest.raises(TransferError) as info:
        dl.receive(encode_error("not_found", "no such package"))
    assert not isinstance(info.value, BadProviderError)


def test_offset_past_the_end_gets_an_error_frame() -> None:
    dl = new_download()
    dl.start("p")
    [frame] = iter_response(b"abc", 10)
    with pytest.raises(TransferError, match="bad_offset"):
        dl.receive(frame)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_arbitrary_frames_only_raise_our_errors(frames: list[bytes]) -> None:
    dl = new_download()
    dl.start("p")
    try:
        for frame in frames:
            dl.receive(frame)
    except BitterbotError:
        pass


def test_find_requests_round_trip_and_answers_are_checked() -> None:
    from bitterbot.protocol.transfer import (
        decode_catalogs,
        decode_request,
        encode_catalogs,
        encode_find,
    )

    assert decode_request(encode_find(name="calc")) == {"t": "find", "name": "calc", "tag": None}
    assert decode_request(encode_find(tag="math"))["tag"] == "math"
    assert decode_request(encode({"t": "get", "id": "bafy", "offset": 3}))["offset"] == 3
    with pytest.raises(BitterbotError):
        decode_request(encode({"t": "find", "name": "a", "tag": "b"}))
    with pytest.raises(BitterbotError):
        decode_request(encode({"t": "find", "name": "x" * 65}))
    assert decode_catalogs(encode_catalogs([b"r1", b"r2"])) == [b"r1", b"r2"]
    with pytest.raises(BadProviderError):
        decode_catalogs(encode({"t": "catalogs", "records": ["not bytes"]}))
    with pytest.raises(BadProviderError):
        decode_catalogs(b"\xc1")
