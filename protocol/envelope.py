"""Signed envelopes: the one way any signed statement travels between nodes.

Wire form (canonical msgpack map)::

    {"v": 1, "kind": str, "signer": bin32, "ts": int (ms since epoch),
     "payload": any, "sig": bin64}

The signature covers ``b"bitterbot/v1/" + kind + b"\\x00" + encode(body)`` where ``body``
is the map without ``sig``. The kind inside the signed bytes is the domain separation: a
signature made for one kind can never be replayed as another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec import DEFAULT_MAX_SIZE, decode, encode, expect_map
from .errors import DecodeError, StaleError, UnknownVersionError
from .identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity, verify

VERSION = 1
DOMAIN = b"bitterbot/v1/"
MAX_KIND_LEN = 64


def signing_bytes(kind: str, body: dict[str, Any]) -> bytes:
    return DOMAIN + kind.encode("utf-8") + b"\x00" + encode(body)


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: str
    signer: bytes
    ts: int
    payload: Any
    sig: bytes

    def body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "kind": self.kind,
            "signer": self.signer,
            "ts": self.ts,
            "payload": self.payload,
        }

    def to_bytes(self) -> bytes:
        return encode({**self.body(), "sig": self.sig})

    def to_obj(self) -> dict[str, Any]:
        return {**self.body(), "sig": self.sig}


def seal(kind: str, payload: Any, identity: Identity, now_ms: int) -> Envelope:
    """Sign ``payload`` as ``kind`` at time ``now_ms``."""
    _check_kind(kind)
    body = {
        "v": VERSION,
        "kind": kind,
        "signer": identity.public_key,
        "ts": now_ms,
        "payload": payload,
    }
    return Envelope(
        kind, identity.public_key, now_ms, payload, identity.sign(signing_bytes(kind, body))
    )


def from_obj(obj: Any, *, kinds: set[str] | None = None) -> Envelope:
    """Check shape, version, kind and signature of an already decoded envelope map."""
    m = expect_map(
        obj, "envelope", {"v": int, "kind": str, "signer": bytes, "ts": int, "sig": bytes}
    )
    if "payload" not in m:
        raise DecodeError("envelope: missing field 'payload'")
    if m["v"] != VERSION:
        raise UnknownVersionError(
            f"envelope version {m['v']} is not supported (this node speaks {VERSION})"
        )
    _check_kind(m["kind"])
    if kinds is not None and m["kind"] not in kinds:
        raise UnknownVersionError(f"unexpected envelope kind {m['kind']!r}")
    if len(m["signer"]) != PUBLIC_KEY_SIZE or len(m["sig"]) != SIGNATURE_SIZE:
        raise DecodeError("envelope: signer or signature has the wrong length")
    extra = set(m) - {"v", "kind", "signer", "ts", "payload", "sig"}
    if extra:
        raise DecodeError(f"envelope: unknown fields {sorted(extra)}")
    env = Envelope(m["kind"], m["signer"], m["ts"], m["payload"], m["sig"])
    verify(env.signer, signing_bytes(env.kind, env.body()), env.sig)
    return env


def open_envelope(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    kinds: set[str] | None = None,
    now_ms: int | None = None,
    max_age_ms: int | None = None,
    max_skew_ms: int = 5 * 60 * 1000,
) -> Envelope:
    """Decode and verify an envelope. With ``now_ms``, also refuse stale or future ones."""
    env = from_obj(decode(data, max_size), kinds=kinds)
    if now_ms is not None:
        check_freshness(env.ts, now_ms, max_age_ms=max_age_ms, max_skew_ms=max_skew_ms)
    return env


def check_freshness(ts: int, now_ms: int, *, max_age_ms: int | None, max_skew_ms: int) -> None:
    if ts > now_ms + max_skew_ms:
        raise StaleError(
            f"timestamp is {ts - now_ms} ms in the future", hint="check this machine's clock"
        )
    if max_age_ms is not None and ts < now_ms - max_age_ms:
        raise StaleError(f"timestamp is {now_ms - ts} ms old (limit {max_age_ms} ms)")


def _check_kind(kind: str) -> None:
    if not kind or len(kind) > MAX_KIND_LEN or not all(c.isalnum() or c in "-_./" for c in kind):
        raise DecodeError(f"invalid envelope kind {kind!r}")
