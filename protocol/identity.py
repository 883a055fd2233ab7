"""ed25519 identities (pynacl): one key signs envelopes, manifests, vouchers and licenses."""

from __future__ import annotations

import base64

import nacl.exceptions
import nacl.signing

from .errors import SignatureError, ValidationError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


class Identity:
    """A signing key pair. ``public_key`` is the raw 32-byte ed25519 key."""

    __slots__ = ("_signing_key",)

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key

    @classmethod
    def generate(cls) -> Identity:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if len(seed) != 32:
            raise ValidationError(f"an ed25519 seed is 32 bytes, got {len(seed)}")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signing_key.sign(message).signature)

    def __repr__(self) -> str:
        return f"Identity({short_key(self.public_key)})"


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is ``public_key``'s over ``message``."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError(f"public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError) as exc:
        raise SignatureError("signature does not verify") from exc


def encode_key(public_key: bytes) -> str:
    """Text form of a public key: ``ed25519:`` + unpadded base32 (lower case)."""
    return "ed25519:" + base64.b32encode(public_key).decode().rstrip("=").lower()


def decode_key(text: str) -> bytes:
    prefix = "ed25519:"
    if not text.startswith(prefix):
        raise ValidationError(f"not a public key: {text!r}", hint="keys look like ed25519:abc...")
    body = text[len(prefix) :].upper()
    body += "=" * (-len(body) % 8)
    try:
        raw = base64.b32decode(body)
    except ValueError as exc:
        raise ValidationError(f"not a public key: {text!r}") from exc
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValidationError(f"not a public key: {text!r} (wrong length)")
    return raw


def short_key(public_key: bytes) -> str:
    return encode_key(public_key)[:20]
