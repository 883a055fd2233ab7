"""Attestations: signed statements about skills and peers, the input of the trust computation.

Every attestation is a signed envelope (:mod:`bitterbot.protocol.envelope`) whose kind is one
of :data:`KINDS` and whose payload always carries ``seq``: the attester's own sequence
number (1, 2, 3, ... per attester key). The envelope supplies the attester key
(``signer``) and the timestamp (``ts``, ms). Payloads by kind::

    rep.rating  {"seq", "skill", "stars": 1..5, "text": str (<= 280 bytes), "publisher"?}
    rep.audit   {"seq", "skill", "verdict": "pass"|"fail", "findings": [str] (<= 16),
                 "report_hash": bin32, "publisher"?}
    rep.flag    {"seq", "skill", "reason": str, "evidence_hash": bin32, "publisher"?}
    rep.revoke  {"seq", "skill", "reason": str, "publisher": bin32}
    rep.trust   {"seq", "peer": bin32, "stance": "vouch"|"distrust"}

A skill is named by a string (for now: the package ID, i.e. the content hash, or any
stable name; see SPEC.md section 11). ``publisher`` is the publisher's key when the
attester knows it. Unknown payload fields are refused: every byte of an attestation means
something, so two nodes never disagree about what it says.

This module is sans-IO: time comes in as ``now_ms``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from .codec import decode, encode, expect_map
from .envelope import VERSION, Envelope, check_freshness, from_obj, seal
from .errors import DecodeError, UnknownVersionError, ValidationError
from .identity import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Identity

RATING: Final = "rep.rating"
AUDIT: Final = "rep.audit"
FLAG: Final = "rep.flag"
REVOKE: Final = "rep.revoke"
TRUST: Final = "rep.trust"
KINDS: Final = frozenset({RATING, AUDIT, FLAG, REVOKE, TRUST})

#: Largest encoded attestation (envelope) accepted anywhere.
MAX_ATTESTATION_BYTES: Final = 2048
MAX_SKILL_LEN: Final = 256
MAX_TEXT_BYTES: Final = 280
MAX_REASON_BYTES: Final = 280
MAX_FINDINGS: Final = 16
MAX_FINDING_BYTES: Final = 200
HASH_SIZE: Final = 32
MAX_SEQ: Final = 2**63 - 1
#: Attestations dated further than this into the future are refused everywhere.
MAX_SKEW_MS: Final = 5 * 60 * 1000
STANCES: Final = ("vouch", "distrust")
VERDICTS: Final = ("pass", "fail")

_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required fields, optional fields)
    RATING: ({"seq", "skill", "stars", "text"}, {"publisher"}),
    AUDIT: ({"seq", "skill", "verdict", "findings", "report_hash"}, {"publisher"}),
    FLAG: ({"seq", "skill", "reason", "evidence_hash"}, {"publisher"}),
    REVOKE: ({"seq", "skill", "reason", "publisher"}, set()),
    TRUST: ({"seq", "peer", "stance"}, set()),
}


@dataclass(frozen=True, slots=True)
class Attestation:
    """A verified attestation. ``data`` is the exact signed envelope bytes."""

    envelope: Envelope
    data: bytes

    @property
    def kind(self) -> str:
        return self.envelope.kind

    @property
    def attester(self) -> bytes:
        return self.envelope.signer

    @property
    def ts(self) -> int:
        return self.envelope.ts

    @property
    def seq(self) -> int:
        seq: int = self.envelope.payload["seq"]
        return seq

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.envelope.payload
        return payload

    @property
    def id(self) -> bytes:
        """Content address: sha256 of the signed bytes."""
        return hashlib.sha256(self.data).digest()

    @property
    def skill(self) -> str | None:
        skill = self.payload.get("skill")
        return skill if isinstance(skill, str) else None

    @property
    def peer(self) -> bytes | None:
        peer = self.payload.get("peer")
        return peer if isinstance(peer, bytes) else None

    @property
    def subject(self) -> str:
        """What this attestation is about: ``skill:<name>`` or ``peer:<hex key>``."""
        if self.kind == TRUST:
            peer: bytes = self.payload["peer"]
            return "peer:" + peer.hex()
        skill: str = self.payload["skill"]
        return "skill:" + skill

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary (keys hex-encoded) for CLIs and APIs."""
        out: dict[str, Any] = {
            "id": self.id.hex(),
            "kind": self.kind,
            "attester": self.attester.hex(),
            "seq": self.seq,
            "ts": self.ts,
        }
        for key, value in self.payload.items():
            if key != "seq":
                out[key] = value.hex() if isinstance(value, bytes) else value
        return out


# --- validation ---------------------------------------------------------------


def _text(payload: dict[str, Any], key: str, max_bytes: int, *, allow_empty: bool) -> None:
    _check_str(payload[key], key, max_bytes, allow_empty=allow_empty)


def _check_str(value: Any, key: str, max_bytes: int, *, allow_empty: bool) -> None:
    if not isinstance(value, str):
        raise DecodeError(f"attestation: {key!r} must be a string")
    if len(value.encode("utf-8")) > max_bytes:
        raise ValidationError(f"attestation: {key!r} is longer than {max_bytes} bytes")
    if not allow_empty and not value.strip():
        raise ValidationError(f"attestation: {key!r} is empty")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise ValidationError(f"attestation: {key!r} contains control characters")


def _hash(payload: dict[str, Any], key: str, size: int) -> None:
    value = payload[key]
    if not isinstance(value, bytes) or len(value) != size:
        raise DecodeError(f"attestation: {key!r} must be {size} bytes")


def validate_payload(kind: str, payload: Any) -> None:
    """Raise a typed error unless ``payload`` is a valid payload of ``kind``."""
    if kind not in _FIELDS:
        raise ValidationError(f"unknown attestation kind {kind!r}")
    if not isinstance(payload, dict):
        raise DecodeError("attestation: payload must be a map")
    required, optional = _FIELDS[kind]
    missing = required - set(payload)
    if missing:
        raise DecodeError(f"attestation {kind}: missing fields {sorted(missing)}")
    extra = set(payload) - required - optional
    if extra:
        raise DecodeError(f"attestation {kind}: unknown fields {sorted(extra)}")
    seq = payload["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise ValidationError("attestation: 'seq' must be an integer from 1")
    if "skill" in payload:
        _text(payload, "skill", MAX_SKILL_LEN, allow_empty=False)
        if payload["skill"] != payload["skill"].strip() or "\n" in payload["skill"]:
            raise ValidationError("attestation: 'skill' has surrounding or inner line space")
    if "publisher" in payload:
        _hash(payload, "publisher", PUBLIC_KEY_SIZE)
    if kind == RATING:
        stars = payload["stars"]
        if isinstance(stars, bool) or not isinstance(stars, int) or not 1 <= stars <= 5:
            raise ValidationError("rating: 'stars' must be an integer from 1 to 5")
        _text(payload, "text", MAX_TEXT_BYTES, allow_empty=True)
    elif kind == AUDIT:
        if payload["verdict"] not in VERDICTS:
            raise ValidationError("audit: 'verdict' must be 'pass' or 'fail'")
        findings = payload["findings"]
        if not isinstance(findings, list) or len(findings) > MAX_FINDINGS:
            raise ValidationError(f"audit: 'findings' must be a list of at most {MAX_FINDINGS}")
        for finding in findings:
            _check_str(finding, "findings", MAX_FINDING_BYTES, allow_empty=False)
        _hash(payload, "report_hash", HASH_SIZE)
    elif kind == FLAG:
        _text(payload, "reason", MAX_REASON_BYTES, allow_empty=True)
        _hash(payload, "evidence_hash", HASH_SIZE)
    elif kind == REVOKE:
        _text(payload, "reason", MAX_REASON_BYTES, allow_empty=True)
    elif kind == TRUST:
        _hash(payload, "peer", PUBLIC_KEY_SIZE)
        if payload["stance"] not in STANCES:
            raise ValidationError("trust: 'stance' must be 'vouch' or 'distrust'")


def check_semantics(env: Envelope) -> None:
    """Rules that involve the signer: no self-vouching, revocation only by the publisher."""
    payload = env.payload
    if env.kind == TRUST and payload["peer"] == env.signer:
        raise ValidationError("trust: a peer cannot vouch for or distrust itself")
    if env.kind == REVOKE and payload["publisher"] != env.signer:
        raise ValidationError(
            "revoke: only the skill's publisher can revoke it",
            hint="auditors flag a skill instead (rep flag)",
        )


def parse(
    data: bytes,
    *,
    now_ms: int | None = None,
    max_age_ms: int | None = None,
    max_skew_ms: int = MAX_SKEW_MS,
) -> Attestation:
    """Decode, verify and validate one attestation.

    With ``now_ms``, attestations dated more than ``max_skew_ms`` ahead are refused, and with
    ``max_age_ms`` also those older than that (gossip refuses old news; sync accepts history).
    Arbitrary bytes only ever raise :class:`~bitterbot.protocol.errors.BitterbotError`
    subclasses.
    """
    env = from_obj(decode(data, MAX_ATTESTATION_BYTES), kinds=set(KINDS))
    validate_payload(env.kind, env.payload)
    check_semantics(env)
    if now_ms is not None:
        check_freshness(env.ts, now_ms, max_age_ms=max_age_ms, max_skew_ms=max_skew_ms)
    if env.ts < 0:
        raise ValidationError("attestation: negative timestamp")
    return Attestation(env, bytes(data))


def parse_stored(data: bytes) -> Attestation:
    """Re-read an attestation this node verified before storing it.

    Every check of :func:`parse` except the signature, which costs about 90% of the time
    and was checked when the attestation entered the node's own store. Never use this for
    bytes from the network.
    """
    m = expect_map(
        decode(data, MAX_ATTESTATION_BYTES),
        "stored attestation",
        {"v": int, "kind": str, "signer": bytes, "ts": int, "sig": bytes, "payload": dict},
    )
    if set(m) != {"v", "kind", "signer", "ts", "payload", "sig"} or m["v"] != VERSION:
        raise DecodeError("stored attestation: not an envelope of this version")
    if m["kind"] not in KINDS:
        raise UnknownVersionError(f"stored attestation: unknown kind {m['kind']!r}")
    if len(m["signer"]) != PUBLIC_KEY_SIZE or len(m["sig"]) != SIGNATURE_SIZE:
        raise DecodeError("stored attestation: signer or signature has the wrong length")
    env = Envelope(m["kind"], m["signer"], m["ts"], m["payload"], m["sig"])
    validate_payload(env.kind, env.payload)
    check_semantics(env)
    return Attestation(env, bytes(data))


def _make(identity: Identity, kind: str, payload: dict[str, Any], now_ms: int) -> Attestation:
    validate_payload(kind, payload)
    env = seal(kind, payload, identity, now_ms)
    check_semantics(env)
    data = env.to_bytes()
    if len(data) > MAX_ATTESTATION_BYTES:
        raise ValidationError(
            f"attestation is {len(data)} bytes, over the limit of {MAX_ATTESTATION_BYTES}",
            hint="shorten the text",
        )
    return Attestation(env, data)


def _with_publisher(payload: dict[str, Any], publisher: bytes | None) -> dict[str, Any]:
    if publisher is not None:
        payload["publisher"] = publisher
    return payload


def rating(
    identity: Identity,
    seq: int,
    now_ms: int,
    skill: str,
    stars: int,
    text: str = "",
    publisher: bytes | None = None,
) -> Attestation:
    payload = {"seq": seq, "skill": skill, "stars": stars, "text": text}
    return _make(identity, RATING, _with_publisher(payload, publisher), now_ms)


def audit(
    identity: Identity,
    seq: int,
    now_ms: int,
    skill: str,
    passed: bool,
    report_hash: bytes,
    findings: list[str] | None = None,
    publisher: bytes | None = None,
) -> Attestation:
    payload = {
        "seq": seq,
        "skill": skill,
        "verdict": "pass" if passed else "fail",
        "findings": list(findings or []),
        "report_hash": report_hash,
    }
    return _make(identity, AUDIT, _with_publisher(payload, publisher), now_ms)


def flag(
    identity: Identity,
    seq: int,
    now_ms: int,
    skill: str,
    evidence_hash: bytes,
    reason: str = "",
    publisher: bytes | None = None,
) -> Attestation:
    payload = {"seq": seq, "skill": skill, "reason": reason, "evidence_hash": evidence_hash}
    return _make(identity, FLAG, _with_publisher(payload, publisher), now_ms)


def revoke(identity: Identity, seq: int, now_ms: int, skill: str, reason: str = "") -> Attestation:
    payload = {"seq": seq, "skill": skill, "reason": reason, "publisher": identity.public_key}
    return _make(identity, REVOKE, payload, now_ms)


def trust(identity: Identity, seq: int, now_ms: int, peer: bytes, vouch: bool) -> Attestation:
    payload = {"seq": seq, "peer": peer, "stance": "vouch" if vouch else "distrust"}
    return _make(identity, TRUST, payload, now_ms)


# --- batches (the gossip message) ---------------------------------------------

BATCH_VERSION: Final = 1
MAX_BATCH: Final = 32
#: A batch stays under the node's 64 KiB gossip message limit.
MAX_BATCH_BYTES: Final = 63 * 1024


def encode_batch(items: list[Attestation]) -> bytes:
    """A gossip message: up to :data:`MAX_BATCH` attestations of one attester."""
    if not 1 <= len(items) <= MAX_BATCH:
        raise ValidationError(f"a batch holds 1 to {MAX_BATCH} attestations, got {len(items)}")
    if len({a.attester for a in items}) != 1:
        raise ValidationError("a batch holds the attestations of one attester")
    data = encode({"v": BATCH_VERSION, "atts": [a.data for a in items]})
    if len(data) > MAX_BATCH_BYTES:
        raise ValidationError(f"batch of {len(data)} bytes is over {MAX_BATCH_BYTES}")
    return data


def split_batches(items: list[Attestation]) -> list[list[Attestation]]:
    """Group attestations of one attester into batches that :func:`encode_batch` accepts."""
    batches: list[list[Attestation]] = []
    size = 0
    for att in items:
        if (
            not batches
            or len(batches[-1]) >= MAX_BATCH
            or size + len(att.data) + 8 > MAX_BATCH_BYTES - 16
        ):
            batches.append([])
            size = 0
        batches[-1].append(att)
        size += len(att.data) + 8
    return batches


def decode_batch(
    data: bytes,
    *,
    now_ms: int | None = None,
    max_age_ms: int | None = None,
    max_skew_ms: int = MAX_SKEW_MS,
) -> list[Attestation]:
    """Decode and fully validate a batch; any bad entry rejects the whole batch."""
    obj = decode(data, MAX_BATCH_BYTES)
    if not isinstance(obj, dict) or set(obj) != {"v", "atts"}:
        raise DecodeError("batch: expected a map with 'v' and 'atts'")
    if obj["v"] != BATCH_VERSION:
        raise UnknownVersionError(f"batch version {obj['v']!r} is not supported")
    raw = obj["atts"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BATCH:
        raise DecodeError(f"batch: 'atts' must list 1 to {MAX_BATCH} attestations")
    out: list[Attestation] = []
    for item in raw:
        if not isinstance(item, bytes):
            raise DecodeError("batch: each attestation is a byte string")
        out.append(parse(item, now_ms=now_ms, max_age_ms=max_age_ms, max_skew_ms=max_skew_ms))
    if len({a.attester for a in out}) != 1:
        raise ValidationError("batch: attestations of more than one attester")
    if len({a.seq for a in out}) != len(out):
        raise ValidationError("batch: repeated sequence number")
    return out
