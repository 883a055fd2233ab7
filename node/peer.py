"""libp2p peer IDs derived from the node's ed25519 identity."""

from __future__ import annotations

from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from bitterbot.protocol.identity import Identity


def libp2p_keypair(identity: Identity) -> KeyPair:
    """The libp2p key pair of ``identity`` (same ed25519 key, so the same peer ID everywhere)."""
    private = Ed25519PrivateKey.from_bytes(identity.seed)
    return KeyPair(private, private.get_public_key())


def peer_id_of(identity: Identity) -> str:
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(identity.public_key)).to_base58()


def peer_id_from_public_key(public_key: bytes) -> str:
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58()
