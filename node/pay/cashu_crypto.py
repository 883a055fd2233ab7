"""secp256k1 for Cashu channels (coincurve): channel keys, Schnorr witnesses, blinding, DLEQ.

Only what cdk-python cannot do for us: it signs P2PK witnesses (``proof_sign_p2pk``) and
swaps proofs, but it splits locked outputs in powers of two once each, while a channel
deposit needs many proofs of one unit (protocol/cashu.py); so the node blinds the deposit's
outputs itself (NUT-00 BDHKE) and checks the mint's DLEQ proofs (NUT-12). Verifying a
payer's witness signature is the payee's hot path (one per newly signed proof).
"""

from __future__ import annotations

import hashlib

from coincurve import PrivateKey, PublicKey, PublicKeyXOnly

from bitterbot.protocol.cashu import CashuError

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_DOMAIN = b"Secp256k1_HashToCurve_Cashu_"


def channel_key(seed: bytes, salt: bytes) -> PrivateKey:
    """This node's secp256k1 key for one channel: from its node seed and the channel salt,
    so nothing new needs storing, and the mint cannot link one channel's keys to another's."""
    counter = 0
    while True:
        digest = hashlib.sha256(
            b"bitterbot/v1/cashu-channel-key\x00" + seed + salt + bytes([counter])
        ).digest()
        if 0 < int.from_bytes(digest, "big") < CURVE_ORDER:
            return PrivateKey(digest)
        counter += 1


def public_key(key: PrivateKey) -> bytes:
    return bytes(key.public_key.format(compressed=True))


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def sign_secret(key: PrivateKey, secret: str) -> bytes:
    """A NUT-11 witness signature: BIP-340 Schnorr over SHA-256 of the secret string."""
    return bytes(key.sign_schnorr(secret_hash(secret)))


class SchnorrVerifier:
    """Verifies one key's witness signatures (the x-only key is parsed once)."""

    def __init__(self, pubkey: bytes) -> None:
        try:
            self._key = PublicKeyXOnly(pubkey[1:])
        except ValueError as exc:
            raise CashuError("not a secp256k1 public key") from exc

    def verify(self, secret: str, sig: bytes) -> bool:
        try:
            return bool(self._key.verify(sig, secret_hash(secret)))
        except ValueError:
            return False


# --- NUT-00 blinding and NUT-12 DLEQ -------------------------------------------------------


def hash_to_curve(message: bytes) -> PublicKey:
    msg = hashlib.sha256(_DOMAIN + message).digest()
    for counter in range(2**16):
        digest = hashlib.sha256(msg + counter.to_bytes(4, "little")).digest()
        try:
            return PublicKey(b"\x02" + digest)
        except ValueError:
            continue
    raise CashuError("hash_to_curve found no point")  # probability ~2^-65536


def _point(data: bytes) -> PublicKey:
    try:
        return PublicKey(data)
    except ValueError as exc:
        raise CashuError("not a point on secp256k1") from exc


def _neg(scalar: int) -> bytes:
    return ((-scalar) % CURVE_ORDER).to_bytes(32, "big")


def blind(secret: str, r: bytes) -> bytes:
    """B_ = hash_to_curve(secret) + r*G, compressed."""
    y = hash_to_curve(secret.encode())
    return bytes(PublicKey.combine_keys([y, PrivateKey(r).public_key]).format())


def unblind(c_blind: bytes, r: bytes, mint_key: bytes) -> bytes:
    """C = C_ - r*K, compressed."""
    minus_rk = _point(mint_key).multiply(_neg(int.from_bytes(r, "big")))
    return bytes(PublicKey.combine_keys([_point(c_blind), minus_rk]).format())


def _hash_e(*points: PublicKey) -> bytes:
    text = "".join(p.format(compressed=False).hex() for p in points)
    return hashlib.sha256(text.encode()).digest()


def verify_dleq(secret: str, c: bytes, e: bytes, s: bytes, r: bytes, mint_key: bytes) -> bool:
    """NUT-12 (as a receiver, "Carol"): the mint's key ``mint_key`` signed this proof."""
    try:
        a = _point(mint_key)
        y = hash_to_curve(secret.encode())
        c_blind = PublicKey.combine_keys([_point(c), a.multiply(r)])
        b_blind = PublicKey.combine_keys([y, PrivateKey(r).public_key])
        e_int = int.from_bytes(e, "big")
        r1 = PublicKey.combine_keys([PrivateKey(s).public_key, a.multiply(_neg(e_int))])
        r2 = PublicKey.combine_keys([b_blind.multiply(s), c_blind.multiply(_neg(e_int))])
    except (ValueError, CashuError):
        return False
    return _hash_e(r1, r2, a, c_blind) == e
