"""The node's libp2p host: TCP + Noise + yamux, identify, ping, Kademlia, gossipsub.

Other subsystems use only the small API of :class:`P2PHost` (see SPEC.md section 4)::

    p2p = P2PHost(identity, P2PConfig(listen=[...], seeds=[...]), store=store)
    await nursery.start(p2p.run)          # returns once listening; bootstrap continues
    p2p.status()                          # peer id, addrs, peers, routing table, network
    p2p.register_namespace("bitterbot", validate, select)
    await p2p.provide(key) / find_providers(key, count) / put_value(k, v) / get_value(k)
    p2p.set_stream_handler("/bitterbot/x/1.0.0", handler)     # handler(P2PStream)
    stream = await p2p.open_stream(peer_id, "/bitterbot/x/1.0.0")
    async with p2p.subscribe(topic, validator) as sub: async for msg in sub: ...
    await p2p.publish(topic, data)
    await p2p.stop()

Choices that differ from py-libp2p's defaults (measured; see shared notes on py-libp2p):
Noise is the only security transport (no plaintext, no secio, no TLS); one connection per
peer (avoids a 250 ms dial delay); strict DHT record validation; gossipsub heartbeat 1 s;
bootstrap in small batches with retries and exponential backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from bitterbot.node.p2p.dht import MAX_VALUE_BYTES, PROVIDERS_DB, DhtMixin
from bitterbot.node.p2p.errors import describe_error, ignore_libp2p_errors, libp2p_errors
from bitterbot.node.p2p.gossip import (
    GOSSIP_HEARTBEAT_S,
    GOSSIP_RATE_PER_TOPIC,
    MAX_GOSSIP_BYTES,
    GossipMessage,
    GossipMixin,
    flood_publishing_router,
)
from bitterbot.node.p2p.peer_id import libp2p_keypair, peer_id_of
from bitterbot.node.p2p.peers import (
    PeerAddr,
    PeerBook,
    parse_listen_addr,
    parse_multiaddr,
    parse_peer_addr,
)
from bitterbot.node.p2p.stream import P2PStream, find_bitterbot_error, quietly, to_peer_id
from bitterbot.node.store import Store
from bitterbot.protocol.errors import BitterbotError, NetworkError, ValidationError
from bitterbot.protocol.identity import Identity

__all__ = ["NET_PROTOCOL", "GossipMessage", "P2PConfig", "P2PHost", "P2PStream", "PeerAddr"]

logger = logging.getLogger(__name__)

#: Marker protocol: a peer that speaks it (seen through identify) is a Bitterbot node.
#: Only such peers stay in our Kademlia routing table (SPEC.md 4.2).
NET_PROTOCOL = "/bitterbot/net/1.0.0"

IDENTIFY_WAIT_S = 5.0  # how long a peer of unknown protocols may sit in the routing table
HEALTHY_TABLE = 20  # routing-table size (Kademlia's k) above which refreshes walk less often
WALK_EVERY = 10  # ... only every this many refresh rounds

QueryObserver = Callable[[str, float, bool], None]
StreamHandler = Callable[[P2PStream], Awaitable[None]]


@dataclass
class P2PConfig:
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    seeds: list[str] = field(default_factory=list)
    max_peers: int = 64
    # Low-water mark: after each routing-table refresh, dial peers from the table until this
    # many are connected. Gossipsub meshes form only among connected peers; a node connected
    # to its seeds alone is pruned by their full meshes and waits for gossip (SPEC.md 4.6).
    min_peers: int = 8
    bootstrap_batch: int = 4  # seeds dialled at once (a seed resets bursts of joins)
    dial_timeout_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    refresh_interval_s: float = 30.0
    max_value_bytes: int = MAX_VALUE_BYTES
    max_gossip_bytes: int = MAX_GOSSIP_BYTES
    # py-libp2p waits for a whole batch of 10 peers, each up to a hard-coded 10 s, before a
    # lookup moves on: one stalled peer stalls every lookup that asks it.
    query_timeout_s: float = 3.0


class P2PHost(DhtMixin, GossipMixin):
    """One libp2p host for one node identity. Start with ``await nursery.start(p2p.run)``."""

    def __init__(
        self,
        identity: Identity,
        config: P2PConfig | None = None,
        *,
        store: Store | None = None,
        observer: QueryObserver | None = None,
    ) -> None:
        self.identity = identity
        self.config = config or P2PConfig()
        self.peer_id = peer_id_of(identity)
        self.book = PeerBook(store)
        self._store = store
        if store is not None:  # open it in a write transaction first (see PeerBook)
            store.transact(lambda txn: txn.count(PROVIDERS_DB))
        self.observer = observer
        # validate user input before anything starts
        self._listen = [parse_listen_addr(a) for a in self.config.listen]
        self._seeds = [parse_peer_addr(s) for s in self.config.seeds]
        self._host: Any = None
        self._dht: Any = None
        self._pubsub: Any = None
        self._gossip: Any = None
        self._nursery: trio.Nursery | None = None
        self._stop = trio.Event()
        self._stopping = False
        self._ready = trio.Event()
        self._handlers: dict[str, StreamHandler] = {}
        self._namespaces: dict[str, Any] = {}
        self.seed_errors: dict[str, str] = {}
        self._last_walk = float("-inf")
        self.bootstrapped = trio.Event()
        self.first_round_done = trio.Event()  # the first bootstrap attempt finished
        self.upkeep_rounds = 0  # refresh + connection fill rounds done (tests wait on it)
        self.stopped = trio.Event()

    # --- lifecycle --------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, start DHT and gossipsub, report ``started``, bootstrap; run until stop()."""
        from libp2p.tools.anyio_service import background_trio_service

        self._build()
        try:
            async with self._host.run(listen_addrs=self._listen):
                self._check_listening()
                async with (
                    background_trio_service(self._dht),
                    background_trio_service(self._pubsub),
                    background_trio_service(self._gossip),
                ):
                    await self._pubsub.wait_until_ready()
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        self._ready.set()
                        nursery.start_soon(self._maintain)
                        if self._store is not None:
                            nursery.start_soon(self._flush_provider_records, self._store)
                        task_status.started(self)
                        await self._stop.wait()
                        self._stopping = True
                        self._remember_connected()
                        _silence_libp2p()
                        nursery.cancel_scope.cancel()
                    await self._close_host()
        except BitterbotError:
            raise
        except Exception as exc:
            ours = find_bitterbot_error(exc)
            if ours is not None:  # raised by us inside libp2p's nurseries
                raise ours from exc
            if self._stopping:
                logger.debug("libp2p teardown error (ignored)", exc_info=True)
                return
            raise NetworkError(f"the libp2p host failed: {describe_error(exc)}") from exc
        finally:
            self._nursery = None
            self.stopped.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Shut :meth:`run` down and wait (at most ``timeout`` s) until it has exited."""
        self._stopping = True
        self._stop.set()
        if self._host is not None:
            with trio.move_on_after(timeout):
                await self.stopped.wait()

    async def _close_host(self) -> None:
        """Close connections and listeners (leaving host.run() alone keeps them open)."""
        with trio.move_on_after(3):
            with ignore_libp2p_errors("closing the host", also=(trio.TrioInternalError,)):
                await self._host.close()

    def _build(self) -> None:
        set_query_timeout(self.config.query_timeout_s)
        from libp2p import new_host
        from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
        from libp2p.custom_types import TProtocol
        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
        from libp2p.network.config import ConnectionConfig
        from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12
        from libp2p.pubsub.pubsub import Pubsub
        from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
        from libp2p.security.noise.transport import Transport as Noise
        from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
        from libp2p.stream_muxer.yamux.yamux import Yamux

        keypair = libp2p_keypair(self.identity)
        max_peers = max(8, self.config.max_peers)
        conn_config = ConnectionConfig(
            max_connections_per_peer=1,
            max_connections=max_peers * 2,
            high_watermark=max_peers,
            low_watermark=min(8, max_peers),
            min_connections=min(4, max_peers),
            dial_timeout=self.config.dial_timeout_s,
        )
        self._host = new_host(
            key_pair=keypair,
            sec_opt={NOISE_ID: Noise(keypair, noise_privkey=new_x25519().private_key)},
            muxer_opt={TProtocol(YAMUX_ID): Yamux},
            listen_addrs=self._listen,
            connection_config=conn_config,
            addrs_factory=_expand_wildcards,
        )
        self._dht = KadDHT(self._host, DHTMode.SERVER, strict_validation=True)
        self._guard_routing_table()
        if self._store is not None:
            self._keep_provider_records(self._store)
        self._gossip = flood_publishing_router(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=GOSSIP_HEARTBEAT_S,
            max_messages_per_topic_per_second=GOSSIP_RATE_PER_TOPIC,
        )
        self._pubsub = Pubsub(
            self._host,
            self._gossip,
            strict_signing=True,
            max_inbound_rpc_size=self.config.max_gossip_bytes + 4096,
        )
        self._host.set_stream_handler(TProtocol(NET_PROTOCOL), self._net_marker)
        for protocol_id, handler in self._handlers.items():
            self._install_handler(protocol_id, handler)
        for name, validator in self._namespaces.items():
            self._dht.register_validator(name, validator)

    def _check_listening(self) -> None:
        bound = self._host.get_transport_addrs()
        if len(bound) >= len(self._listen):
            return
        bound_text = {str(a) for a in bound}
        fixed = [a for a in self._listen if not str(a).endswith("/tcp/0")]
        missing = [a for a in fixed if str(a) not in bound_text] or self._listen
        for addr in missing:
            if str(addr) not in bound_text:
                raise NetworkError(
                    f"cannot listen on {addr}: {_bind_problem(addr)}",
                    hint="pick another address or port with --listen "
                    "(e.g. /ip4/0.0.0.0/tcp/4002; port 0 picks a free one)",
                )

    def _guard_routing_table(self) -> None:
        """Keep only Bitterbot peers (those speaking NET_PROTOCOL) in the routing table.

        py-libp2p adds a peer as soon as it connects or sends a DHT request, often before
        identify has told us its protocols. Such a peer is admitted, and evicted as soon as
        identify shows it is not a Bitterbot node (at most IDENTIFY_WAIT_S later).
        """
        table = self._dht.routing_table
        original = table.add_peer

        async def add_peer(peer_obj: Any, *, skip_server_mode_check: bool = False) -> bool:
            peer_id = getattr(peer_obj, "peer_id", peer_obj)
            protocols = self._protocols_of(peer_id)
            if protocols is not None and NET_PROTOCOL not in protocols:
                return False
            ok: bool = await original(peer_obj, skip_server_mode_check=skip_server_mode_check)
            if ok and protocols is None and self._nursery is not None:
                self._nursery.start_soon(self._evict_if_foreign, peer_id)
            return ok

        table.add_peer = add_peer

    async def _evict_if_foreign(self, peer_id: Any) -> None:
        pause = 0.01
        with trio.move_on_after(IDENTIFY_WAIT_S):
            while (protocols := self._protocols_of(peer_id)) is None:
                await trio.sleep(pause)
                pause = min(pause * 2, 0.5)  # cheap when identify is slow or never comes
            if NET_PROTOCOL not in protocols:
                self._dht.routing_table.remove_peer(peer_id)

    def _protocols_of(self, peer_id: Any) -> set[str] | None:
        """The protocols identify reported for ``peer_id``; None while not known yet."""
        try:
            protocols = self._host.get_peerstore().get_protocols(peer_id)
        except Exception:  # noqa: BLE001 - peerstore raises PeerStoreError for unknown peers
            return None
        return {str(p) for p in protocols} if protocols else None

    def _is_foreign(self, peer_id: Any) -> bool:
        """True when identify told us this peer's protocols and ours are not among them."""
        protocols = self._protocols_of(peer_id)
        return protocols is not None and NET_PROTOCOL not in protocols

    async def _net_marker(self, raw: Any) -> None:
        await quietly(raw.close)

    # --- status -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._ready.is_set() and not self._stopping

    def status(self) -> dict[str, Any]:
        host = self._host
        connected = sorted(p.to_base58() for p in host.get_connected_peers()) if host else []
        if connected:
            network = "joined"
        elif self._seeds or self.book.known(1):
            network = "joining"
        else:
            network = "standalone"
        return {
            "peer_id": self.peer_id,
            "listen_addrs": self.listen_addrs(),
            "connected_peers": connected,
            "routing_table_size": self.routing_table_size(),
            "network": network,
            "seeds": [f"{s.addrs[0]}/p2p/{s.peer_id}" for s in self._seeds],
            "seed_errors": dict(self.seed_errors),
        }

    def routing_table_size(self) -> int:
        return int(self._dht.get_routing_table_size()) if self._dht is not None else 0

    def routing_table_peers(self) -> list[str]:
        if self._dht is None:
            return []
        return sorted(p.to_base58() for p in self._dht.routing_table.get_peer_ids())

    def connected_peers(self) -> list[str]:
        if self._host is None:
            return []
        return sorted(p.to_base58() for p in self._host.get_connected_peers())

    def peer_addrs(self, peer_id: str) -> list[str]:
        """Known addresses of ``peer_id`` (text multiaddrs without /p2p)."""
        try:
            return [str(a) for a in self._host.get_peerstore().addrs(to_peer_id(peer_id))]
        except Exception:  # noqa: BLE001 - PeerStoreError: nothing known
            return []

    def deny_ips(self, ips: list[str]) -> None:
        """Refuse connections to and from these IP addresses (the swarm's connection gate)."""
        gate = self._host.get_network().connection_gate
        for ip in ips:
            gate.add_to_deny_list(ip)

    def allow_ips(self, ips: list[str]) -> None:
        """Undo :meth:`deny_ips` for these addresses."""
        gate = self._host.get_network().connection_gate
        for ip in ips:
            gate.remove_from_deny_list(ip)

    async def disconnect(self, peer_id: str, timeout: float = 2.0) -> None:
        """Close every connection to ``peer_id`` (it may dial again unless denied)."""
        with trio.move_on_after(timeout):
            await self._host.get_network().close_peer(to_peer_id(peer_id))

    def listen_addrs(self) -> list[str]:
        """Dialable addresses with /p2p/<id> (wildcards expanded to this machine's)."""
        return [str(a) for a in self._host.get_addrs()] if self._host is not None else []

    # --- connections ------------------------------------------------------------------
    async def connect(self, addr: str | PeerAddr) -> str:
        """Dial a peer (``/ip4/../tcp/../p2p/<id>`` or a PeerAddr); returns its peer ID."""
        peer = parse_peer_addr(addr) if isinstance(addr, str) else addr
        await self._dial(peer)
        return peer.peer_id

    async def _dial(self, peer: PeerAddr) -> None:
        from libp2p.peer.peerinfo import PeerInfo

        self._require_running()
        if peer.peer_id == self.peer_id:
            raise ValidationError("refusing to dial this node itself")
        info = PeerInfo(to_peer_id(peer.peer_id), [parse_multiaddr(a) for a in peer.addrs])
        # our bootstrap backoff decides when to retry, not the swarm's 60 s negative cache
        unblock = getattr(self._host.get_network(), "unblock_peer", None)
        if unblock is not None:
            unblock(info.peer_id)
        with trio.move_on_after(self.config.dial_timeout_s) as scope:
            with libp2p_errors(
                f"cannot reach {peer.peer_id} at {', '.join(peer.addrs)}",
                hint="check the address and that the peer is running",
            ):
                await self._host.connect(info)
        if scope.cancelled_caught:
            raise NetworkError(
                f"cannot reach {peer.peer_id}: no answer within {self.config.dial_timeout_s:g} s",
                hint="check the address, firewall, and that the peer is running",
            )
        await self._dht.add_peer(info.peer_id)  # the guard evicts it if identify says foreign

    # --- bootstrap and upkeep -------------------------------------------------------
    async def _maintain(self) -> None:
        backoff = self.config.backoff_initial_s
        while True:
            joined = await self._bootstrap_round()
            self.first_round_done.set()
            if joined:
                self.bootstrapped.set()
                backoff = self.config.backoff_initial_s
                await self._refresh()
                await self._fill_connections()
                self._remember_connected()
                self.upkeep_rounds += 1
                # jitter: nodes started together must not all refresh at the same moment
                await trio.sleep(self.config.refresh_interval_s * random.uniform(0.8, 1.2))
            else:
                # no peers at all: retry seeds and known peers with exponential backoff
                await trio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.config.backoff_max_s)

    async def _bootstrap_round(self) -> bool:
        """Dial seeds and known peers in small batches until one connection stands."""
        if self._host.get_connected_peers():
            return True
        targets = list(self._seeds)
        seen = {p.peer_id for p in targets} | {self.peer_id}
        for peer in self.book.known(32):
            if peer.peer_id not in seen:
                targets.append(peer)
                seen.add(peer.peer_id)
        if not targets:
            self.bootstrapped.set()  # standalone: nothing to join
            return False
        batch = max(1, self.config.bootstrap_batch)
        for start in range(0, len(targets), batch):
            async with trio.open_nursery() as nursery:
                for peer in targets[start : start + batch]:
                    nursery.start_soon(self._try_dial, peer)
            if self._host.get_connected_peers():
                return True
        return False

    async def _try_dial(self, peer: PeerAddr) -> None:
        try:
            await self._dial(peer)
            self.seed_errors.pop(peer.peer_id, None)
        except NetworkError as exc:
            self.seed_errors[peer.peer_id] = exc.message
            logger.info("bootstrap: %s", exc.message)

    async def _refresh(self) -> None:
        """Look up our own ID and random keys: fills the routing table; drop foreign peers."""
        for peer_id in list(self._dht.routing_table.get_peer_ids()):
            if self._is_foreign(peer_id):
                self._dht.routing_table.remove_peer(peer_id)
        for peer_id in self._host.get_connected_peers():
            await self._dht.add_peer(peer_id)
        now = time.monotonic()
        if (
            self.routing_table_size() >= HEALTHY_TABLE
            and now - self._last_walk < WALK_EVERY * self.config.refresh_interval_s
        ):
            return  # a full table needs no walk every round (it costs dozens of lookups)
        self._last_walk = now
        with trio.move_on_after(30):
            with ignore_libp2p_errors("routing table refresh failed"):
                await self._dht.peer_routing.find_closest_peers_network(
                    self._host.get_id().to_bytes()
                )
                if self.routing_table_size() < HEALTHY_TABLE:  # far buckets: one walk each
                    await self._dht.refresh_routing_table()

    async def _fill_connections(self) -> None:
        """Dial routing-table peers (random order) until ``min_peers`` are connected."""
        connected = set(self._host.get_connected_peers())
        want = min(self.config.min_peers, self.config.max_peers) - len(connected)
        if want <= 0:
            return
        candidates = [p for p in self._dht.routing_table.get_peer_ids() if p not in connected]
        random.shuffle(candidates)
        targets = []
        for peer_id in candidates[:want]:
            addrs = tuple(a for a in self.peer_addrs(peer_id.to_base58()) if "/tcp/" in a)
            if addrs:
                targets.append(PeerAddr(peer_id.to_base58(), addrs))
        async with trio.open_nursery() as nursery:
            for peer in targets:
                nursery.start_soon(self._dial_quietly, peer)

    async def _dial_quietly(self, peer: PeerAddr) -> None:
        try:
            await self._dial(peer)
        except NetworkError as exc:  # a stale routing-table entry: the next refresh retries
            logger.debug("upkeep dial: %s", exc.message)

    def _remember_connected(self) -> None:
        if self._host is None:
            return
        peers = []
        for peer_id in self._host.get_connected_peers():
            addrs = tuple(a for a in self.peer_addrs(peer_id.to_base58()) if "/tcp/" in a)
            if addrs:
                peers.append(PeerAddr(peer_id.to_base58(), addrs))
        try:
            self.book.remember(peers, int(time.time() * 1000))
        except BitterbotError as exc:
            logger.warning("could not save known peers: %s", exc)

    # --- streams ----------------------------------------------------------------------
    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve ``protocol_id``: ``handler(P2PStream)`` runs per inbound stream.

        Errors the handler raises are logged and reset the stream; they never reach the
        host. Register before or after :meth:`run` starts.
        """
        if not protocol_id.startswith("/"):
            raise ValidationError(f"protocol IDs start with '/': {protocol_id!r}")
        self._handlers[protocol_id] = handler
        if self._host is not None:
            self._install_handler(protocol_id, handler)

    def _install_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        from libp2p.custom_types import TProtocol

        async def serve(raw: Any) -> None:
            stream = P2PStream(raw)
            try:
                await handler(stream)
            except BitterbotError as exc:
                logger.info("%s from %s: %s", protocol_id, stream.peer_id, exc)
                await stream.reset()
            except Exception:
                logger.exception("handler for %s failed", protocol_id)
                await stream.reset()
            else:
                await stream.close()

        self._host.set_stream_handler(TProtocol(protocol_id), serve)

    async def open_stream(
        self, peer_id: str, protocol_id: str, *, timeout: float = 10.0
    ) -> P2PStream:
        """Open a stream to ``peer_id`` (dialling known addresses if needed)."""
        from libp2p.custom_types import TProtocol

        self._require_running()
        with trio.move_on_after(timeout) as scope:
            with libp2p_errors(
                f"cannot open {protocol_id} to {peer_id}",
                hint="the peer may be offline or not serve this protocol",
            ):
                raw = await self._host.new_stream(to_peer_id(peer_id), [TProtocol(protocol_id)])
            return P2PStream(raw)
        assert scope.cancelled_caught
        raise NetworkError(f"opening {protocol_id} to {peer_id} timed out after {timeout:g} s")

    # --- helpers ------------------------------------------------------------------------
    def _require_running(self) -> None:
        if not self._ready.is_set() or self._stopping:
            raise NetworkError("the p2p host is not running", hint="start the node first")


def _bind_problem(addr: Any) -> str:
    """Why the OS refuses to bind ``addr`` (the swarm only says 'failed')."""
    import socket

    host = addr.value_for_protocol("ip4") or addr.value_for_protocol("ip6")
    port = int(addr.value_for_protocol("tcp"))
    family = socket.AF_INET6 if ":" in str(host) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((str(host), port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return "the transport refused it"


def _expand_wildcards(addrs: list[Any]) -> list[Any]:
    """Advertise concrete addresses: 0.0.0.0 / :: become this machine's interfaces."""
    from libp2p.utils.address_validation import expand_wildcard_address
    from multiaddr import Multiaddr

    out: list[Any] = []
    seen: set[str] = set()
    for addr in addrs:
        text = str(addr)
        expanded = [addr]
        if text.startswith(("/ip4/0.0.0.0/", "/ip6/::/")):
            loopback = "/ip4/127.0.0.1/" if text.startswith("/ip4/") else "/ip6/::1/"
            rest = text.split("/", 3)[3]
            expanded = [Multiaddr(loopback + rest), *expand_wildcard_address(addr)]
        for item in expanded:
            if str(item) not in seen:
                seen.add(str(item))
                out.append(item)
    return out


def _silence_libp2p() -> None:
    """py-libp2p logs tracebacks while tearing down connections; users never see them."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("libp2p").setLevel(logging.CRITICAL + 1)


def set_query_timeout(seconds: float) -> None:
    """Set py-libp2p's per-peer Kademlia query timeout (process-wide: a module constant it
    imports by name into three modules)."""
    from libp2p.kad_dht import kad_dht, peer_routing, provider_store

    for module in (kad_dht, peer_routing, provider_store):
        module.QUERY_TIMEOUT = seconds  # type: ignore[attr-defined]
