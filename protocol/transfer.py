"""Skill package transfer, ``/bitterbot/skill/1.0.0`` (sans-IO).

One stream per request. Every message is a canonical msgpack map in one length-prefixed
frame of at most :data:`MAX_FRAME` bytes::

    client -> provider   {"t": "find", "name": str}  or  {"t": "find", "tag": str}
    provider -> client   {"t": "catalogs", "records": [bin, ...]}   (signed catalogs, <= 8)

    client -> provider   {"t": "get", "id": str, "offset": int}
    provider -> client   {"t": "meta", "size": int}
                         {"t": "data", "offset": int, "data": bin}    (repeated, in order)
                         {"t": "end"}
                or       {"t": "error", "code": str, "message": str}

The client knows the package ID (a content hash) and its size limit from the publisher's
signed catalog, so a provider cannot make it accept other bytes: :class:`Download` checks
order, offsets and size as data arrives and, at the end, that the bytes hash to the ID
(through the ``verify`` function the caller passes: for skill packages, the CID of the
archive inside the package file). A download resumes at ``offset`` with another provider after a disconnect; if the
final hash does not match, every provider that contributed is reported and the download
restarts from zero with single-source providers only (see :meth:`Download.verdict`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .codec import decode, encode, expect_map
from .errors import DecodeError, ValidationError, WireError

PROTOCOL_ID = "/bitterbot/skill/1.0.0"
CHUNK_SIZE = 256 * 1024
MAX_FRAME = CHUNK_SIZE + 1024
MAX_ID_LEN = 128


class TransferError(WireError):
    code = "transfer_error"


class BadProviderError(TransferError):
    """The provider broke the protocol or sent bytes that do not match the signed hash."""

    code = "bad_provider"


def encode_get(package_id: str, offset: int = 0) -> bytes:
    return encode({"t": "get", "id": package_id, "offset": offset})


def decode_get(data: bytes) -> tuple[str, int]:
    m = expect_map(
        decode(data, MAX_FRAME), "transfer request", {"t": str, "id": str, "offset": int}
    )
    if m["t"] != "get":
        raise DecodeError(f"transfer request: unknown type {m['t']!r}")
    if not 0 < len(m["id"]) <= MAX_ID_LEN or m["offset"] < 0:
        raise DecodeError("transfer request: bad id or offset")
    return m["id"], m["offset"]


MAX_FIND_RECORDS = 8


def encode_find(*, name: str | None = None, tag: str | None = None) -> bytes:
    if (name is None) == (tag is None):
        raise ValidationError("find takes exactly one of name or tag")
    return encode({"t": "find", "name": name} if name is not None else {"t": "find", "tag": tag})


def decode_request(data: bytes) -> dict[str, Any]:
    """Provider side: decode any client request (``get`` or ``find``), validated."""
    msg = expect_map(decode(data, MAX_FRAME), "transfer request", {"t": str})
    if msg["t"] == "get":
        package_id, offset = decode_get(data)
        return {"t": "get", "id": package_id, "offset": offset}
    if msg["t"] == "find":
        query = msg.get("name", msg.get("tag"))
        if (
            not isinstance(query, str)
            or not 0 < len(query) <= 64
            or ("name" in msg) == ("tag" in msg)
        ):
            raise DecodeError("find request: exactly one of name or tag, 1-64 characters")
        return {"t": "find", "name": msg.get("name"), "tag": msg.get("tag")}
    raise DecodeError(f"transfer request: unknown type {msg['t']!r}")


def encode_catalogs(records: list[bytes]) -> bytes:
    return encode({"t": "catalogs", "records": records[:MAX_FIND_RECORDS]})


def decode_catalogs(data: bytes) -> list[bytes]:
    """Client side: the raw catalog records; each must still be checked with parse_catalog."""
    try:
        m = expect_map(decode(data, MAX_FRAME), "catalogs", {"t": str, "records": list})
    except WireError as exc:
        raise BadProviderError(f"malformed catalogs answer: {exc.message}") from exc
    if m["t"] == "error":
        raise TransferError(f"provider refused: {m.get('code')}: {m.get('message')}")
    if m["t"] != "catalogs" or len(m["records"]) > MAX_FIND_RECORDS:
        raise BadProviderError("unexpected answer to find")
    if not all(isinstance(r, bytes) for r in m["records"]):
        raise BadProviderError("catalog records must be bytes")
    return list(m["records"])


def encode_meta(size: int) -> bytes:
    return encode({"t": "meta", "size": size})


def encode_data(offset: int, data: bytes) -> bytes:
    if len(data) > CHUNK_SIZE:
        raise ValidationError(f"chunks are at most {CHUNK_SIZE} bytes")
    return encode({"t": "data", "offset": offset, "data": data})


def encode_end() -> bytes:
    return encode({"t": "end"})


def encode_error(code: str, message: str) -> bytes:
    return encode({"t": "error", "code": code[:64], "message": message[:512]})


def iter_response(package: bytes, offset: int) -> list[bytes]:
    """Provider side: the frames that answer ``get`` at ``offset`` for ``package``."""
    if offset > len(package):
        return [encode_error("bad_offset", f"offset {offset} is past the end ({len(package)})")]
    frames = [encode_meta(len(package))]
    for start in range(offset, len(package), CHUNK_SIZE):
        frames.append(encode_data(start, package[start : start + CHUNK_SIZE]))
    frames.append(encode_end())
    return frames


@dataclass
class Download:
    """Client side of one package download, possibly across several providers."""

    package_id: str
    verify: Callable[[bytes], bool]  # True when the bytes are the package the ID names
    max_size: int
    received: bytearray = field(default_factory=bytearray)
    contributors: list[str] = field(default_factory=list)
    size: int | None = None
    done: bool = False
    _provider: str | None = None

    def start(self, provider: str) -> bytes:
        """Begin (or resume) with ``provider``; returns the request frame to send."""
        if self.done:
            raise ValidationError("download already complete")
        self._provider = provider
        if provider not in self.contributors:
            self.contributors.append(provider)
        return encode_get(self.package_id, len(self.received))

    def receive(self, frame: bytes) -> bool:
        """Feed one frame. Returns True when the package is complete and verified.

        Raises :class:`BadProviderError` for protocol violations or wrong bytes (drop and
        penalize the provider), :class:`TransferError` for an error answer (try another).
        """
        if self._provider is None:
            raise ValidationError("call start() before receive()")
        try:
            msg: Any = decode(frame, MAX_FRAME)
            kind = expect_map(msg, "transfer response", {"t": str})["t"]
        except WireError as exc:
            raise BadProviderError(f"malformed frame: {exc.message}") from exc
        if kind == "error":
            m = expect_map(msg, "transfer error", {"code": str, "message": str})
            raise TransferError(f"provider refused: {m['code']}: {m['message']}")
        if kind == "meta":
            size = expect_map(msg, "meta", {"size": int})["size"]
            if size > self.max_size or size < len(self.received):
                raise BadProviderError(f"announced size {size} is outside 0..{self.max_size}")
            if self.size is not None and size != self.size:
                raise BadProviderError("providers disagree on the package size")
            self.size = size
            return False
        if self.size is None:
            raise BadProviderError("data before meta")
        if kind == "data":
            m = expect_map(msg, "data", {"offset": int, "data": bytes})
            if m["offset"] != len(self.received):
                raise BadProviderError(
                    f"chunk at offset {m['offset']}, expected {len(self.received)}"
                )
            if len(self.received) + len(m["data"]) > self.size:
                raise BadProviderError("more bytes than announced")
            self.received.extend(m["data"])
            return False
        if kind == "end":
            if len(self.received) != self.size:
                raise BadProviderError(f"ended at {len(self.received)} of {self.size} bytes")
            if not self.verify(bytes(self.received)):
                raise BadProviderError("package bytes do not match the signed hash")
            self.done = True
            return True
        raise BadProviderError(f"unknown message type {kind!r}")

    def verdict(self) -> list[str]:
        """After a hash mismatch: providers to penalize; resets to restart from zero."""
        suspects = list(self.contributors)
        self.received.clear()
        self.contributors.clear()
        self.size = None
        return suspects

    @property
    def data(self) -> bytes:
        if not self.done:
            raise ValidationError("download not complete")
        return bytes(self.received)
