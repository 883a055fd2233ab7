"""Peer addresses: parsing user-given multiaddrs, and the book of known peers in LMDB.

The book (Store database ``peers``) remembers peers this node was connected to, with their
addresses and when they were last seen, so a restarted node reconnects without its seeds.
It keeps at most :data:`MAX_KNOWN_PEERS` entries, dropping the least recently seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multiaddr import Multiaddr
from multiaddr.exceptions import ProtocolLookupError

from bitterbot.node.store import Store
from bitterbot.protocol.errors import ConfigError

PEERS_DB = "peers"
MAX_KNOWN_PEERS = 256
MAX_ADDRS_PER_PEER = 8


@dataclass(frozen=True)
class PeerAddr:
    """A peer ID (base58 text) and the multiaddrs (text, without ``/p2p``) it listens on."""

    peer_id: str
    addrs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "addrs": list(self.addrs)}


def parse_multiaddr(text: str, *, what: str = "address") -> Multiaddr:
    """Parse ``text`` as a multiaddr, or raise :class:`ConfigError` saying what a good one is."""
    try:
        addr = Multiaddr(text)
    except Exception as exc:  # multiaddr raises assorted ValueError/StringParseError types
        raise ConfigError(
            f"malformed {what} {text!r}: {exc}",
            hint="a multiaddr looks like /ip4/127.0.0.1/tcp/4001",
        ) from exc
    return addr


def parse_listen_addr(text: str) -> Multiaddr:
    addr = parse_multiaddr(text, what="listen address")
    names = [p.name for p in addr.protocols()]
    if len(names) != 2 or names[0] not in {"ip4", "ip6"} or names[1] != "tcp":
        raise ConfigError(
            f"unsupported listen address {text!r}",
            hint="listen on TCP, e.g. /ip4/0.0.0.0/tcp/4001 (port 0 picks a free port)",
        )
    return addr


def parse_peer_addr(text: str) -> PeerAddr:
    """Parse a dialable peer address ending in ``/p2p/<peer id>`` (a seed, or ``connect``)."""
    from libp2p.peer.id import ID

    addr = parse_multiaddr(text, what="peer address")
    try:
        peer_text = addr.value_for_protocol("p2p")
    except ProtocolLookupError:  # no /p2p part
        peer_text = None
    if not peer_text:
        raise ConfigError(
            f"peer address {text!r} has no /p2p/<peer id> part",
            hint="seeds look like /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW... "
            "(`bitterbot node status` on the seed prints it)",
        )
    try:
        peer_id = ID.from_base58(str(peer_text)).to_base58()
    except Exception as exc:
        raise ConfigError(f"peer address {text!r} has a malformed peer ID") from exc
    transport = addr.decapsulate(Multiaddr(f"/p2p/{peer_text}"))
    if not str(transport):
        raise ConfigError(f"peer address {text!r} has no transport part", hint="add /ip4/../tcp/..")
    return PeerAddr(peer_id, (str(transport),))


class PeerBook:
    """Known peers persisted in LMDB (database ``peers``): peer id -> addrs, last seen."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        if store is not None:
            # open the database in a write transaction first: a handle first opened in a
            # read transaction is cached by Store but invalid once that transaction ends
            store.transact(lambda txn: txn.count(PEERS_DB))

    def remember(self, peers: list[PeerAddr], now_ms: int) -> None:
        if self.store is None or not peers:
            return

        def write(txn: Any) -> None:
            for peer in peers:
                if not peer.addrs:
                    continue
                txn.put(
                    PEERS_DB,
                    peer.peer_id,
                    {"addrs": list(peer.addrs[:MAX_ADDRS_PER_PEER]), "seen_ms": now_ms},
                )
            rows = sorted(((v.get("seen_ms", 0), k) for k, v in txn.items(PEERS_DB)), reverse=True)
            for _seen, key in rows[MAX_KNOWN_PEERS:]:
                txn.delete(PEERS_DB, key)

        self.store.transact(write)

    def forget(self, peer_id: str) -> None:
        if self.store is not None:
            self.store.transact(lambda txn: txn.delete(PEERS_DB, peer_id))

    def known(self, limit: int = 32) -> list[PeerAddr]:
        """Known peers, most recently seen first."""
        if self.store is None:
            return []
        with self.store.read() as txn:
            rows = [(v, k) for k, v in txn.items(PEERS_DB)]
        rows.sort(key=lambda row: row[0].get("seen_ms", 0) if isinstance(row[0], dict) else 0)
        out = []
        for value, key in reversed(rows):
            if not isinstance(value, dict) or not isinstance(value.get("addrs"), list):
                continue
            addrs = tuple(str(a) for a in value["addrs"][:MAX_ADDRS_PER_PEER])
            out.append(PeerAddr(key.decode(), addrs))
            if len(out) >= limit:
                break
        return out
