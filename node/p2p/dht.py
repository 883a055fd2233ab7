"""The DHT half of :class:`~bitterbot.node.p2p.host.P2PHost`: namespaced value records, providers.

A mixin: it uses the host's ``_dht``, ``_host``, ``_namespaces``, ``config``, ``observer``
and ``_require_running``. See SPEC.md 4.2-4.4.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bitterbot.node.p2p.errors import ignore_libp2p_errors, libp2p_errors
from bitterbot.node.p2p.peers import PeerAddr, parse_multiaddr
from bitterbot.protocol.errors import BitterbotError, NetworkError, TooLargeError, ValidationError

logger = logging.getLogger(__name__)

MAX_VALUE_BYTES = 64 * 1024
MAX_KEY_BYTES = 64  # provider keys (we announce 32-byte hashes)
VALUE_QUERY_TIMEOUT_S = 5.0


PROVIDERS_DB = "dht.providers"  # len(key) + key + provider peer ID -> {"addrs", "ts" (ms)}
PROVIDER_TTL_S = 48 * 3600  # py-libp2p's provider record expiry
PROVIDER_FLUSH_S = 1.0  # records received are written this often (one transaction)
#: expired rows are deleted this often while the node runs (and once at start): a node up
#: for months would otherwise keep every (key, provider) pair nobody announces any more
PROVIDER_PRUNE_S = 3600.0

FAST_LOOKUP_PEERS = 8  # closest known peers asked at once before a full lookup
FAST_LOOKUP_GRACE_S = 0.2  # after the first provider answers, wait this long for more


class DhtMixin:
    _dht: Any
    _host: Any
    _namespaces: dict[str, Any]
    config: Any
    observer: Callable[[str, float, bool], None] | None

    def _require_running(self) -> None:
        raise NotImplementedError

    # --- provider records survive restarts (py-libp2p keeps them in memory only) --------
    def _keep_provider_records(self, store: Any) -> None:
        """Load the provider records this node held before a restart, and queue every new
        one for :meth:`_flush_provider_records`. Without this, a node that restarts
        forgets the records it stored for others, and under churn a key's records vanish
        from the peers closest to it until the providers announce again."""
        from libp2p.kad_dht.provider_store import ProviderRecord
        from libp2p.peer.peerinfo import PeerInfo

        self._provider_queue: list[tuple[bytes, dict[str, Any]]] = []
        providers = self._dht.provider_store
        prune_provider_rows(store, time.time())
        with store.read() as txn:
            rows = [(bytes(k), v) for k, v in txn.items(PROVIDERS_DB)]
        for db_key, value in rows:
            key, peer, ts, addrs = _provider_row(db_key, value)
            record = ProviderRecord(provider_info=PeerInfo(peer, addrs), timestamp=ts)
            providers.providers.setdefault(key, {})[str(peer)] = record
        original = providers.add_provider

        def add_provider(key: bytes, provider: Any) -> None:
            original(key, provider)
            if provider and provider.peer_id and 1 <= len(key) <= MAX_KEY_BYTES:
                db_key = bytes([len(key)]) + key + provider.peer_id.to_bytes()
                value = {"addrs": [str(a) for a in provider.addrs], "ts": int(time.time() * 1000)}
                self._provider_queue.append((db_key, value))

        providers.add_provider = add_provider

    async def _flush_provider_records(self, store: Any) -> None:
        """Write queued provider records every PROVIDER_FLUSH_S (and once more when
        cancelled): a node killed meanwhile loses at most that much, which the providers'
        next announcement restores. Every PROVIDER_PRUNE_S, delete expired rows."""
        pruned_at = trio.current_time()
        try:
            while True:
                await trio.sleep(PROVIDER_FLUSH_S)
                await self._write_provider_records(store)
                if trio.current_time() - pruned_at >= PROVIDER_PRUNE_S:
                    pruned_at = trio.current_time()
                    try:
                        await trio.to_thread.run_sync(prune_provider_rows, store, time.time())
                    except BitterbotError as exc:  # retried at the next round
                        logger.warning("could not prune provider records: %s", exc)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self._write_provider_records(store)

    async def _write_provider_records(self, store: Any) -> None:
        batch, self._provider_queue = self._provider_queue, []
        if not batch:
            return

        def write(txn: Any) -> None:
            for db_key, value in batch:
                txn.put(PROVIDERS_DB, db_key, value)

        try:
            await trio.to_thread.run_sync(store.transact, write)
        except BitterbotError as exc:  # a full disk, say: records stay in memory
            logger.warning("could not save provider records: %s", exc)

    def register_namespace(
        self,
        name: str,
        validate: Callable[[str, bytes], None],
        select: Callable[[str, list[bytes]], int],
        *,
        max_value_bytes: int | None = None,
    ) -> None:
        """Accept value records under ``/<name>/``: ``validate`` raises to refuse a record,
        ``select`` returns the index of the best of several. Records over the size limit
        are dropped before ``validate`` sees them. Without a namespace, records are refused
        (strict validation)."""
        from libp2p.records.validator import Validator

        if not name or "/" in name:
            raise ValidationError(f"bad namespace name {name!r}")
        limit = max_value_bytes or self.config.max_value_bytes

        class _Checked(Validator):
            def validate(self, key: str, value: bytes) -> None:
                if len(value) > limit:
                    raise TooLargeError(f"record of {len(value)} bytes under {key!r}")
                validate(key, value)

            def select(self, key: str, values: list[bytes]) -> int:
                return select(key, values)

        self._namespaces[name] = _Checked()
        if self._dht is not None:
            self._dht.register_validator(name, self._namespaces[name])

    async def provide(self, key: bytes) -> None:
        """Announce that this node provides ``key`` (e.g. a 32-byte content hash)."""
        check_key(key)
        ok = await self._query("provide", self._dht.provider_store.provide(key))
        if not ok:
            raise NetworkError(
                "provider announcement reached no peer (kept locally)",
                hint="announce again once the node has joined the network",
            )

    def has_local_providers(self, key: bytes) -> bool:
        """True when this node's own provider store holds a record for ``key``."""
        check_key(key)
        return bool(self._dht.provider_store.get_providers(key))

    async def find_providers(self, key: bytes, count: int = 20) -> list[PeerAddr]:
        """Peers providing ``key`` (at most ``count``; ``count=1`` returns at the first)."""
        check_key(key)
        infos = await self._query("find_providers", self._find_providers(key, count))
        out = []
        for info in infos[:count]:
            addrs = tuple(_without_p2p(str(a)) for a in info.addrs)
            if addrs:  # so open_stream can dial it
                self._host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
            out.append(PeerAddr(info.peer_id.to_base58(), addrs))
        return out

    async def _find_providers(self, key: bytes, count: int) -> list[Any]:
        """Local records, then the closest peers this node knows, then the whole network.

        Providers are stored at the peers closest to the key, which a joined node usually
        has in its routing table (dialable). Asking them in parallel and returning once
        providers answer (plus a short grace for more) avoids py-libp2p's full lookup,
        which first walks FIND_NODE and then waits for whole batches of ten peers. Only
        when none of them knows a provider does the full lookup run.
        """
        store = self._dht.provider_store
        local = store.get_providers(key)
        if len(local) >= count:
            return list(local[:count])
        nearby = self._dht.routing_table.find_local_closest_peers(key, FAST_LOOKUP_PEERS)
        # a local copy may list only some providers (say one seeder, not the publisher):
        # it counts as a first answer, and the closest peers get the grace period to add more
        found: dict[Any, Any] = {info.peer_id: info for info in local}
        first = trio.Event()
        if found:
            first.set()

        async def ask(peer: Any, nursery: trio.Nursery) -> None:
            with trio.move_on_after(self.config.query_timeout_s):
                answered = False  # one peer's failure is not the lookup's
                with ignore_libp2p_errors(f"providers from {peer}"):
                    providers, _closer = await store._get_providers_from_peer_with_closers(
                        peer, key
                    )
                    answered = True
                if not answered:
                    return
                for info in providers or []:
                    store.add_provider(key, info)
                    found.setdefault(info.peer_id, info)
                if found:
                    first.set()
                if len(found) >= count:
                    nursery.cancel_scope.cancel()

        async with trio.open_nursery() as outer:

            async def ask_all() -> None:
                async with trio.open_nursery() as nursery:
                    for peer in nearby:
                        nursery.start_soon(ask, peer, nursery)
                outer.cancel_scope.cancel()  # every peer answered or timed out

            async def grace() -> None:
                await first.wait()
                await trio.sleep(FAST_LOOKUP_GRACE_S)  # more providers, briefly
                outer.cancel_scope.cancel()

            outer.start_soon(ask_all)
            outer.start_soon(grace)
        if found:
            return list(found.values())[:count]
        return list(await store.find_providers(key, count))

    async def put_value(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (``/<namespace>/...``) locally and at the closest peers."""
        self._check_record(key, value)
        try:
            await self._query("put_value", self._dht.put_value(key, value))
        except ValueError as exc:  # "Refusing to replace newer value with the older one"
            raise ValidationError(f"record for {key!r} refused: {exc}") from exc

    async def get_value(self, key: str) -> bytes | None:
        """The best valid record under ``key`` among our copy and the closest peers' copies.

        Unlike py-libp2p's ``get_value`` (which returns a local copy without asking anyone),
        this asks the network every time, so a newer record (say a catalog with a higher
        sequence number) replaces an old local copy. The winner is stored locally.
        """
        validator = self._namespaces[self._namespace_of(key)]
        value: bytes | None = await self._query("get_value", self._fresh_value(key, validator))
        return value

    async def _fresh_value(self, key: str, validator: Any) -> bytes | None:
        key_bytes = key.encode("utf-8")
        candidates: list[bytes] = []
        local = self._dht.value_store.get(key_bytes)
        if local is not None:
            candidates.append(bytes(local.value))
        if self._host.get_connected_peers():
            peers = await self._dht.peer_routing.find_closest_peers_network(key_bytes)

            async def ask(peer: Any) -> None:
                with trio.move_on_after(VALUE_QUERY_TIMEOUT_S):
                    # a bad record or a failed peer: skip it
                    with ignore_libp2p_errors(f"get_value {key} from {peer}", also=(ValueError,)):
                        value = await self._dht.value_store._get_from_peer(peer, key_bytes)
                        if isinstance(value, bytes) and value:
                            try:
                                validator.validate(key, value)
                            except BitterbotError as exc:
                                logger.debug("get_value %s from %s: %s", key, peer, exc)
                                return
                            candidates.append(value)

            async with trio.open_nursery() as nursery:
                for peer in peers:
                    if peer != self._host.get_id():
                        nursery.start_soon(ask, peer)
        if not candidates:
            return None
        best: bytes = candidates[validator.select(key, candidates)]
        if local is None or bytes(local.value) != best:
            self._dht.value_store.put(key_bytes, best)
        return best

    def _namespace_of(self, key: str) -> str:
        parts = key.split("/")
        if len(parts) < 3 or parts[0] != "" or parts[1] not in self._namespaces:
            raise ValidationError(
                f"no validator for DHT key {key!r}",
                hint="keys look like /<namespace>/...; register_namespace() first",
            )
        return parts[1]

    def _check_record(self, key: str, value: bytes) -> None:
        validator = self._namespaces[self._namespace_of(key)]
        try:
            validator.validate(key, value)
        except BitterbotError:
            raise
        except Exception as exc:  # a validator's own ValueError & co
            raise ValidationError(f"record for {key!r} is invalid: {exc}") from exc

    async def _query(self, op: str, work: Awaitable[Any]) -> Any:
        self._require_running()
        started = time.perf_counter()
        ok = False
        try:
            with libp2p_errors(f"DHT {op} failed"):
                result = await work
            ok = True
            return result
        finally:
            if self.observer is not None:
                self.observer(op, time.perf_counter() - started, ok)


def _provider_row(db_key: bytes, value: Any) -> tuple[bytes, Any, float, list[Any]]:
    """(key, provider peer ID, timestamp in s, addresses) of a ``dht.providers`` row;
    ValidationError when it cannot be read."""
    from libp2p.peer.id import ID

    key, peer_bytes = db_key[1 : 1 + db_key[0]], db_key[1 + db_key[0] :]
    if not key or not peer_bytes:
        raise ValidationError("unreadable provider row: empty key or peer")
    try:
        peer = ID(peer_bytes)
        ts = float(value["ts"]) / 1000
        addrs = [parse_multiaddr(a) for a in value["addrs"]]
    except (BitterbotError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValidationError(f"unreadable provider row: {exc}") from exc
    return key, peer, ts, addrs


def prune_provider_rows(store: Any, now: float) -> int:
    """Delete ``dht.providers`` rows older than PROVIDER_TTL_S, or unreadable (their
    providers announce again); returns how many."""
    stale: list[bytes] = []
    with store.read() as txn:
        for db_key, value in txn.items(PROVIDERS_DB):
            try:
                _key, _peer, ts, _addrs = _provider_row(bytes(db_key), value)
            except ValidationError:
                stale.append(bytes(db_key))
                continue
            if now - ts >= PROVIDER_TTL_S:
                stale.append(bytes(db_key))
    if stale:
        store.transact(lambda txn: [txn.delete(PROVIDERS_DB, k) for k in stale])
    return len(stale)


def check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or not 1 <= len(key) <= MAX_KEY_BYTES:
        raise ValidationError(f"DHT keys are 1-{MAX_KEY_BYTES} bytes")


def _without_p2p(addr: str) -> str:
    """``/ip4/../tcp/../p2p/<id>`` -> ``/ip4/../tcp/..`` (other implementations announce
    provider addresses with their peer ID; PeerAddr.addrs never carries it)."""
    head, sep, _tail = addr.partition("/p2p/")
    return head if sep else addr
