"""Publisher catalogs and discovery keys for the skill market (sans-IO).

A publisher announces its skills with a signed catalog stored as a DHT value record under
:func:`catalog_key` (``/bitterbot/cat-<hash of the publisher key>``). The record is an envelope of kind ``catalog``::

    payload = {"seq": int, "skills": [entry, ...]}
    entry   = {"name": str, "version": str, "package_id": str, "size": int,
               "price": int, "tags": [str, ...], "description": str,
               "seller"?: str}     # paid skills: the peer that sells licenses

For a paid skill, ``package_id`` is the CID of the *encrypted* package (what providers
serve and downloaders verify); the package inside is verified again once unlocked.

Validation (what every DHT node and every reader applies):
- the record is at most :data:`MAX_CATALOG_BYTES`, checked before parsing;
- the key is the one derived from the signer's public key;
- ``seq`` is higher than the highest seen for that publisher (rollback protection; the
  caller persists the highest seen); among several records the highest ``seq`` wins.

Discovery keys are the 32-byte SHA-256 of a domain-separated string; provider records
for a package use the multihash bytes of its CID, so any libp2p implementation can look
them up with a standard Kademlia GET_PROVIDERS.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from .codec import expect_map
from .envelope import Envelope, open_envelope, seal
from .errors import BitterbotError, DecodeError, StaleError, TooLargeError, ValidationError
from .identity import Identity

CATALOG_KIND = "catalog"
NAMESPACE = "bitterbot"
MAX_CATALOG_BYTES = 32 * 1024
MAX_SKILLS = 128
MAX_TAGS = 16
MAX_TEXT = 280


MAX_DHT_KEY_BYTES = 50  # py-libp2p's Kademlia refuses longer (non-multihash) lookup keys


def catalog_key(publisher: bytes) -> str:
    """DHT value-record key of a publisher's catalog (47 bytes).

    ``/bitterbot/cat-`` + base32 of the first 20 bytes of
    ``sha256("bitterbot/v1/catalog/" + publisher key)``: short enough for Kademlia lookups,
    and a record can only be stored under the key of the publisher that signed it.
    """
    digest = hashlib.sha256(b"bitterbot/v1/catalog/" + publisher).digest()[:20]
    return f"/{NAMESPACE}/cat-" + base64.b32encode(digest).decode().lower()


def package_key(package_id: str) -> bytes:
    """Provider-record key of a package: the multihash bytes inside its CIDv1.

    This is what any libp2p implementation looks up for a CID, so standard Kademlia
    clients find our providers.
    """
    body = package_id[1:].upper() if package_id.startswith("b") else ""
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8)) if body else b""
    except ValueError as exc:
        raise ValidationError(f"not a package ID: {package_id!r}") from exc
    # CIDv1 = varint(1) varint(codec) multihash; we only issue raw (0x55) + sha2-256
    if len(raw) != 36 or raw[0] != 0x01 or raw[1] != 0x55 or raw[2:4] != b"\x12\x20":
        raise ValidationError(f"not a package ID: {package_id!r}", hint="IDs look like bafkrei...")
    return raw[2:]


def name_key(name: str) -> bytes:
    """Provider-record key for discovery by skill name."""
    return hashlib.sha256(b"bitterbot/v1/skill-name/" + name.strip().lower().encode()).digest()


def tag_key(tag: str) -> bytes:
    """Provider-record key for discovery by tag or capability."""
    return hashlib.sha256(b"bitterbot/v1/skill-tag/" + tag.strip().lower().encode()).digest()


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    version: str
    package_id: str
    size: int
    price: int
    tags: tuple[str, ...]
    description: str
    seller: str = ""  # peer ID that sells licenses (paid skills only)

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "package_id": self.package_id,
            "size": self.size,
            "price": self.price,
            "tags": list(self.tags),
            "description": self.description,
        }
        if self.seller:
            obj["seller"] = self.seller
        return obj


@dataclass(frozen=True)
class Catalog:
    publisher: bytes
    seq: int
    entries: tuple[CatalogEntry, ...]
    envelope: Envelope

    def to_bytes(self) -> bytes:
        return self.envelope.to_bytes()

    def find(self, name: str) -> CatalogEntry | None:
        for entry in self.entries:
            if entry.name == name:
                return entry
        return None


def make_catalog(identity: Identity, seq: int, entries: list[CatalogEntry], now_ms: int) -> Catalog:
    if seq < 1:
        raise ValidationError("catalog sequence numbers start at 1")
    if len(entries) > MAX_SKILLS:
        raise ValidationError(f"a catalog lists at most {MAX_SKILLS} skills")
    payload = {"seq": seq, "skills": [e.to_obj() for e in entries]}
    env = seal(CATALOG_KIND, payload, identity, now_ms)
    if len(env.to_bytes()) > MAX_CATALOG_BYTES:
        raise TooLargeError(
            f"catalog is over {MAX_CATALOG_BYTES} bytes",
            hint="shorten descriptions or split skills across publisher keys",
        )
    return parse_catalog(env.to_bytes())


def _entry(obj: Any) -> CatalogEntry:
    m = expect_map(
        obj,
        "catalog entry",
        {
            "name": str,
            "version": str,
            "package_id": str,
            "size": int,
            "price": int,
            "tags": list,
            "description": str,
        },
    )
    if not 0 < len(m["name"]) <= 64 or len(m["version"]) > 32 or len(m["package_id"]) > 128:
        raise DecodeError("catalog entry: name, version or package_id out of bounds")
    if m["size"] < 0 or m["price"] < 0:
        raise DecodeError("catalog entry: negative size or price")
    tags = m["tags"]
    if len(tags) > MAX_TAGS or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
        raise DecodeError("catalog entry: bad tags")
    if len(m["description"]) > MAX_TEXT:
        raise DecodeError("catalog entry: description too long")
    seller = m.get("seller", "")
    if not isinstance(seller, str) or len(seller) > 64 or (seller and m["price"] == 0):
        raise DecodeError("catalog entry: seller must be a peer ID, for paid skills only")
    return CatalogEntry(
        m["name"],
        m["version"],
        m["package_id"],
        m["size"],
        m["price"],
        tuple(tags),
        m["description"],
        seller,
    )


def parse_catalog(data: bytes, *, key: str | None = None, min_seq: int = 0) -> Catalog:
    """Check a catalog record; ``key`` binds it to a publisher, ``min_seq`` refuses rollbacks."""
    env = open_envelope(data, max_size=MAX_CATALOG_BYTES, kinds={CATALOG_KIND})
    if key is not None and catalog_key(env.signer) != key:
        raise ValidationError("catalog signed by a key other than the publisher it is stored under")
    payload = expect_map(env.payload, "catalog", {"seq": int, "skills": list})
    if payload["seq"] < 1:
        raise DecodeError("catalog: seq must be positive")
    if len(payload["skills"]) > MAX_SKILLS:
        raise DecodeError(f"catalog: more than {MAX_SKILLS} skills")
    entries = tuple(_entry(e) for e in payload["skills"])
    if payload["seq"] <= min_seq:
        raise StaleError(
            f"catalog sequence {payload['seq']} is not newer than {min_seq} already seen (rollback)"
        )
    return Catalog(env.signer, payload["seq"], entries, env)


def select_newest(key: str, records: list[bytes]) -> int:
    """Index of the valid record with the highest sequence number (a DHT validator's
    ``select(key, values)``, in that argument order)."""
    best, best_seq = -1, -1
    for i, data in enumerate(records):
        try:
            seq = parse_catalog(data, key=key).seq
        except BitterbotError:
            continue  # invalid records never win
        if seq > best_seq:
            best, best_seq = i, seq
    if best < 0:
        raise ValidationError("no valid catalog record")
    return best
