"""Licenses for paid skills, and the content key sealed to the buyer.

A license is a signed envelope of kind ``pay/license`` from the publisher::

    {"skill": str, "publisher": bin(32), "buyer": bin(32),
     "versions": {"min": "1.0.0", "below": "2.0.0"},   # min <= version < below
     "amount": int, "voucher": bin(32) (hash of the paying voucher),
     "purchase": bin(<=32), "key_check": bin(16)}

``key_check`` commits to the content key, so a buyer knows the sealed key it received is
the one the publisher licensed. The key itself travels sealed (pynacl ``SealedBox``) to the
buyer's ed25519 key converted to curve25519: only the buyer can open it.

:func:`verify_license` refuses a license for another buyer, one whose bytes were changed
after signing, one from another publisher or for another skill, and a version outside the
range: each with its own :class:`LicenseError` code.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing

from .codec import expect_map
from .envelope import Envelope, open_envelope, seal
from .errors import DecodeError, PaymentError, SignatureError, UnknownVersionError
from .identity import PUBLIC_KEY_SIZE, Identity

LICENSE_KIND = "pay/license"
MAX_LICENSE_SIZE = 4096
KEY_SIZE = 32
MAX_NAME_LEN = 128
_VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}$")


class LicenseError(PaymentError):
    code = "license_invalid"


class LicenseTamperedError(LicenseError):
    code = "license_tampered"


class LicenseWrongBuyerError(LicenseError):
    code = "license_wrong_buyer"


class LicenseWrongSkillError(LicenseError):
    code = "license_wrong_skill"


class LicenseVersionError(LicenseError):
    code = "license_version_out_of_range"


class SealedKeyError(LicenseError):
    code = "sealed_key_invalid"


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.2.3"`` -> ``(1, 2, 3)``, padded to 4 parts. Only dotted decimal numbers."""
    if not isinstance(text, str) or not _VERSION_RE.match(text):
        raise DecodeError(f"not a version: {text!r}", hint="versions look like 1.2.3")
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (4 - len(parts))


@dataclass(frozen=True, slots=True)
class License:
    skill: str
    publisher: bytes
    buyer: bytes
    version_min: str
    version_below: str
    amount: int
    voucher: bytes
    purchase: bytes
    key_check: bytes
    issued_ms: int = 0
    envelope: Envelope | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "skill": self.skill,
            "publisher": self.publisher,
            "buyer": self.buyer,
            "versions": {"min": self.version_min, "below": self.version_below},
            "amount": self.amount,
            "voucher": self.voucher,
            "purchase": self.purchase,
            "key_check": self.key_check,
        }

    def covers(self, version: str) -> bool:
        v = parse_version(version)
        return parse_version(self.version_min) <= v < parse_version(self.version_below)

    def to_bytes(self) -> bytes:
        if self.envelope is None:
            raise LicenseError("license is not signed")
        return self.envelope.to_bytes()

    @classmethod
    def from_envelope(cls, env: Envelope) -> License:
        m = expect_map(
            env.payload,
            "license",
            {
                "skill": str,
                "publisher": bytes,
                "buyer": bytes,
                "versions": dict,
                "amount": int,
                "voucher": bytes,
                "purchase": bytes,
                "key_check": bytes,
            },
        )
        versions = expect_map(m["versions"], "license versions", {"min": str, "below": str})
        for key in ("publisher", "buyer"):
            if len(m[key]) != PUBLIC_KEY_SIZE:
                raise DecodeError(f"license: {key} key has the wrong length")
        if m["publisher"] != env.signer:
            raise LicenseTamperedError("license is not signed by the publisher it names")
        if not m["skill"] or len(m["skill"]) > MAX_NAME_LEN:
            raise DecodeError("license: skill name must be 1..128 characters")
        if m["amount"] < 0 or len(m["voucher"]) != 32 or len(m["key_check"]) != 16:
            raise DecodeError("license: amount, voucher or key_check is malformed")
        if len(m["purchase"]) > 32:
            raise DecodeError("license: purchase ID is over 32 bytes")
        parse_version(versions["min"])
        parse_version(versions["below"])
        return cls(
            m["skill"],
            m["publisher"],
            m["buyer"],
            versions["min"],
            versions["below"],
            m["amount"],
            m["voucher"],
            m["purchase"],
            m["key_check"],
            env.ts,
            env,
        )


def key_check(content_key: bytes) -> bytes:
    return hashlib.sha256(b"bitterbot/v1/key-check\x00" + content_key).digest()[:16]


def issue_license(
    publisher: Identity,
    *,
    skill: str,
    buyer: bytes,
    version_min: str,
    version_below: str,
    amount: int,
    voucher: bytes,
    purchase: bytes,
    content_key: bytes,
    now_ms: int,
) -> License:
    """Sign a license for ``buyer``. ``voucher`` is the paying voucher's ID (32 bytes)."""
    if parse_version(version_min) >= parse_version(version_below):
        raise LicenseError(f"empty version range {version_min} .. {version_below}")
    draft = License(
        skill,
        publisher.public_key,
        buyer,
        version_min,
        version_below,
        amount,
        voucher,
        purchase,
        key_check(content_key),
    )
    env = seal(LICENSE_KIND, draft.payload(), publisher, now_ms)
    return License.from_envelope(env)


def verify_license(
    data: bytes,
    *,
    buyer: bytes,
    skill: str,
    version: str,
    publisher: bytes | None = None,
) -> License:
    """Decode and check a license for ``buyer`` running ``skill`` at ``version``."""
    try:
        env = open_envelope(data, max_size=MAX_LICENSE_SIZE, kinds={LICENSE_KIND})
    except SignatureError as exc:
        raise LicenseTamperedError(
            "license signature does not verify: it was changed after signing",
            hint="fetch the license again from the publisher",
        ) from exc
    except (DecodeError, UnknownVersionError) as exc:
        raise LicenseTamperedError(f"license is malformed: {exc.message}") from exc
    try:
        lic = License.from_envelope(env)
    except DecodeError as exc:
        raise LicenseError(f"license is malformed: {exc.message}") from exc
    if publisher is not None and lic.publisher != publisher:
        raise LicenseWrongSkillError("license is from another publisher than the skill's")
    if lic.buyer != buyer:
        raise LicenseWrongBuyerError(
            "license was issued to another buyer's key", hint="buy the skill with this node's key"
        )
    if lic.skill != skill:
        raise LicenseWrongSkillError(f"license is for {lic.skill!r}, not {skill!r}")
    if not lic.covers(version):
        raise LicenseVersionError(
            f"license covers {lic.version_min} up to (not including) {lic.version_below}, "
            f"not {version}",
            hint="this version needs a new purchase",
        )
    return lic


# --- sealed content keys ----------------------------------------------------------


def seal_key(content_key: bytes, buyer: bytes) -> bytes:
    """Encrypt ``content_key`` so only the holder of ed25519 key ``buyer`` can open it."""
    if len(content_key) != KEY_SIZE:
        raise SealedKeyError(f"content key must be {KEY_SIZE} bytes")
    try:
        curve = nacl.signing.VerifyKey(buyer).to_curve25519_public_key()
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise SealedKeyError("buyer key cannot receive sealed keys") from exc
    return bytes(nacl.public.SealedBox(curve).encrypt(content_key))


def open_sealed_key(sealed: bytes, me: Identity, lic: License | None = None) -> bytes:
    """Open a sealed content key with our identity; check it against the license."""
    private = nacl.signing.SigningKey(me.seed).to_curve25519_private_key()
    try:
        key = bytes(nacl.public.SealedBox(private).decrypt(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise SealedKeyError(
            "the content key is not sealed to this node's key", hint="buy with this node"
        ) from exc
    if len(key) != KEY_SIZE:
        raise SealedKeyError("the sealed content key has the wrong length")
    if lic is not None and key_check(key) != lic.key_check:
        raise SealedKeyError("the content key is not the one the license names")
    return key


# --- revenue splits -----------------------------------------------------------------

BPS = 10_000  # shares are in basis points: 10,000 = 100%


def revenue_split(
    amount: int, publisher: bytes, shares: list[tuple[bytes, int]]
) -> list[tuple[bytes, int]]:
    """Split ``amount`` between declared co-authors/auditors (basis points) and the publisher.

    Integer arithmetic; each share is rounded down and the publisher gets the remainder, so
    the parts always add up to ``amount``. The publisher's part comes first.
    """
    if amount < 0:
        raise LicenseError("amount must not be negative")
    total_bps = 0
    parts: list[tuple[bytes, int]] = []
    for key, bps in shares:
        if len(key) != PUBLIC_KEY_SIZE or not 0 < bps <= BPS:
            raise LicenseError("a revenue share needs a 32-byte key and 1..10000 basis points")
        total_bps += bps
        parts.append((key, amount * bps // BPS))
    if total_bps > BPS:
        raise LicenseError(f"revenue shares add up to {total_bps} basis points, over 10000")
    return [(publisher, amount - sum(a for _, a in parts)), *parts]
