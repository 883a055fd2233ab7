"""Encrypted paid packages: bytes any peer can seed, useless without the content key.

Format: ``b"BBPAID1\\n"`` + 24-byte nonce + ``SecretBox`` ciphertext (XSalsa20-Poly1305)
of the package bytes. The key is 32 random bytes per package; buyers receive it sealed to
their key with a license (:mod:`bitterbot.protocol.license`). The package ID the manifest
pins is the hash of the *encrypted* bytes, so seeders and downloaders verify transfers
without the key.

API for the skills and market code::

    key = new_content_key(random_bytes)      # caller passes os.urandom(32)
    blob = encrypt_package(package_bytes, key, nonce=os.urandom(24))
    is_paid_package(blob)                    # True
    package_bytes = decrypt_package(blob, key)
"""

from __future__ import annotations

import nacl.exceptions
import nacl.secret

from .errors import PaymentError

MAGIC = b"BBPAID1\n"
NONCE_SIZE = nacl.secret.SecretBox.NONCE_SIZE
KEY_SIZE = nacl.secret.SecretBox.KEY_SIZE


class PaidPackageError(PaymentError):
    code = "paid_package_invalid"


def new_content_key(random_bytes: bytes) -> bytes:
    """A content key from 32 bytes of the caller's randomness (sans-IO: no RNG here)."""
    if len(random_bytes) != KEY_SIZE:
        raise PaidPackageError(f"a content key is {KEY_SIZE} random bytes")
    return bytes(random_bytes)


def is_paid_package(blob: bytes) -> bool:
    return blob[: len(MAGIC)] == MAGIC


def encrypt_package(data: bytes, key: bytes, *, nonce: bytes) -> bytes:
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise PaidPackageError("content key must be 32 bytes and nonce 24 bytes")
    box = nacl.secret.SecretBox(key)
    return MAGIC + bytes(box.encrypt(data, nonce))


def decrypt_package(blob: bytes, key: bytes) -> bytes:
    if not is_paid_package(blob):
        raise PaidPackageError("not an encrypted paid package")
    if len(key) != KEY_SIZE:
        raise PaidPackageError("content key must be 32 bytes")
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(blob[len(MAGIC) :]))
    except nacl.exceptions.CryptoError as exc:
        raise PaidPackageError(
            "cannot decrypt the package: wrong key or altered bytes",
            hint="the license's content key does not open this package; fetch it again",
        ) from exc
