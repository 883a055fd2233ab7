"""libp2p peer IDs derived from the node's ed25519 identity."""

from __future__ import annotations

from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from bitterbot.protocol.errors import ValidationError
from bitterbot.protocol.identity import Identity


def libp2p_keypair(identity: Identity) -> KeyPair:
    """The libp2p key pair of ``identity`` (same ed25519 key, so the same peer ID everywhere)."""
    private = Ed25519PrivateKey.from_bytes(identity.seed)
    return KeyPair(private, private.get_public_key())


def peer_id_of(identity: Identity) -> str:
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(identity.public_key)).to_base58()


def peer_id_from_public_key(public_key: bytes) -> str:
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58()


def parse_peer(text: str) -> bytes:
    """A peer as ``ed25519:...``, 64 hex digits, or a libp2p peer ID (12D3Koo...)."""
    from bitterbot.protocol.identity import decode_key

    text = text.strip()
    if text.startswith("ed25519:"):
        return decode_key(text)
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    try:
        key = ID.from_base58(text).extract_public_key()
    except ValueError as exc:
        raise ValidationError(f"not a peer: {text!r}", hint=_PEER_HINT) from exc
    if key is None or key.get_type().name != "Ed25519":
        raise ValidationError(f"peer ID {text!r} does not embed an ed25519 key", hint=_PEER_HINT)
    return bytes(key.to_bytes())


_PEER_HINT = "give a peer ID (12D3Koo...) or a key (ed25519:...)"
