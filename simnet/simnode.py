"""One simnet node: the real node parts (identity, LMDB store, P2PHost) in a worker.

The node is the same :class:`~bitterbot.node.p2p.host.P2PHost` a user runs, with its own home
(key file and LMDB environment) so a kill and a restart behave like a crash and a reboot.
What the coordinator can ask a node to do are its ``action_*`` methods; each validates its
arguments (they come over the control channel) and returns plain data.

Partitions: each node listens on its own loopback address, and :meth:`action_deny` puts
the other side's addresses on the swarm's IP connection gate (so neither side dials the
other) and closes the connections already open to them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import trio

from bitterbot.node.home import KEY_FILE, Home, write_private
from bitterbot.protocol.errors import BitterbotError, ValidationError
from bitterbot.protocol.identity import Identity
from bitterbot.simnet.simnode_market import MarketActions
from bitterbot.simnet.simnode_pay import PayActions
from bitterbot.simnet.simnode_rep import RepActions

logger = logging.getLogger("bitterbot.simnet")

STORE_MAP_SIZE = 64 * 1024 * 1024
MAX_LOOKUP_TIMEOUT_S = 120.0
PARTITION_SWEEP_S = 0.05


class SimNode(RepActions, PayActions, MarketActions):
    def __init__(
        self,
        index: int,
        home: Path,
        ip: str,
        identity_seed: bytes,
        seeds: list[str],
        options: dict[str, Any],
        port: int = 0,
    ) -> None:
        self.index = index
        self.home = Home(home)
        self.ip = ip
        self.identity_seed = identity_seed
        self.seeds = seeds
        self.options = options
        self.port = port
        self.p2p: Any = None
        self.rep: Any = None
        self.pay: Any = None
        self.market: Any = None
        self.denied: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._sweeping = False

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> SimNode:
        seed = args["identity_seed"]
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValidationError("identity_seed must be 32 bytes")
        return cls(
            index=int(args["index"]),
            home=Path(str(args["home"])),
            ip=str(args["ip"]),
            identity_seed=seed,
            seeds=[str(s) for s in args.get("seeds") or []],
            options=dict(args.get("options") or {}),
            port=int(args.get("port") or 0),
        )

    def _identity(self) -> Identity:
        self.home.ensure()
        key_path = self.home.path / KEY_FILE
        if not key_path.exists():
            write_private(key_path, self.identity_seed)
        return self.home.identity(create=False)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from bitterbot.node.p2p.host import P2PConfig, P2PHost
        from bitterbot.node.store import Store

        identity = self._identity()
        store = Store(self.home.db_path, map_size=STORE_MAP_SIZE)
        try:
            config = P2PConfig(listen=[f"/ip4/{self.ip}/tcp/{self.port}"], seeds=self.seeds)
            if "refresh_interval_s" in self.options:  # otherwise the node's own default
                config.refresh_interval_s = float(self.options["refresh_interval_s"])
            self.p2p = P2PHost(identity, config, store=store)
            if self.options.get("market"):
                self.register_market(store, identity)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.p2p.run)
                if self.options.get("reputation"):
                    await self.start_reputation(nursery, store, identity)
                if self.options.get("payments"):
                    await self.start_payments(nursery, store, identity)
                if self.market is not None:
                    nursery.start_soon(self.market.run)
                with trio.move_on_after(float(self.options.get("join_timeout_s", 15.0))):
                    await self.p2p.bootstrapped.wait()
                addrs = self._dialable_addrs()
                port = int(addrs[0].split("/tcp/")[1].split("/")[0]) if addrs else 0
                task_status.started({"peer_id": self.p2p.peer_id, "addrs": addrs, "port": port})
                await trio.sleep_forever()
        finally:
            store.close()

    def _dialable_addrs(self) -> list[str]:
        return [
            a if "/p2p/" in a else f"{a}/p2p/{self.p2p.peer_id}" for a in self.p2p.listen_addrs()
        ]

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.p2p.status()
        status["denied_ips"] = sorted(self.denied)
        if self.rep is not None:
            status["reputation"] = self.rep.status()
        return status

    # --- actions the coordinator can ask for --------------------------------------
    async def action_provide(self, key: bytes) -> dict[str, Any]:
        started = time.perf_counter()
        await self.p2p.provide(_key(key))
        return {"ms": (time.perf_counter() - started) * 1000}

    async def action_find_providers(self, key: bytes, timeout: float) -> dict[str, Any]:
        """One DHT lookup: the providers found (peer IDs), the time taken, or the failure."""
        timeout = min(max(float(timeout), 0.1), MAX_LOOKUP_TIMEOUT_S)
        key = _key(key)
        # py-libp2p answers from its local provider store when it has the record; say so,
        # so latency figures can leave out lookups that never crossed the network.
        local = self.p2p.has_local_providers(key)
        started = time.perf_counter()
        providers: list[str] = []
        error = ""
        with trio.move_on_after(timeout) as scope:
            try:
                found = await self.p2p.find_providers(key, count=1)
                providers = [p.peer_id for p in found]
            except BitterbotError as exc:
                error = exc.code
        if scope.cancelled_caught:
            error = "timeout"
        return {
            "providers": providers,
            "ms": (time.perf_counter() - started) * 1000,
            "error": error,
            "local": local,
        }

    async def action_deny(self, ips: list[str]) -> dict[str, Any]:
        """Cut this node off from ``ips``: gate future dials, close current connections.

        Inbound connections arrive from 127.0.0.1 (the dialer's source address), which the
        IP gate cannot tell apart, so while a cut stands a watcher closes any connection
        to a denied peer as soon as it appears (every :data:`PARTITION_SWEEP_S`).
        """
        fresh = {str(ip) for ip in ips} - self.denied
        self.p2p.deny_ips(sorted(fresh))
        self.denied |= fresh
        closed = await self._close_denied()
        if self.denied and not self._sweeping and self._nursery is not None:
            self._sweeping = True
            self._nursery.start_soon(self._sweep_denied)
        return {"denied": len(self.denied), "closed": closed}

    async def _close_denied(self) -> int:
        closed = 0
        for peer_id in list(self.p2p.connected_peers()):
            addrs = self.p2p.peer_addrs(peer_id)
            if any(f"/ip4/{ip}/" in a for a in addrs for ip in self.denied):
                await self.p2p.disconnect(peer_id)
                closed += 1
        return closed

    async def _sweep_denied(self) -> None:
        try:
            while self.denied:
                await self._close_denied()
                await trio.sleep(PARTITION_SWEEP_S)
        finally:
            self._sweeping = False

    async def action_allow(self) -> dict[str, Any]:
        self.p2p.allow_ips(sorted(self.denied))
        healed = len(self.denied)
        self.denied.clear()
        return {"allowed": healed}

    async def action_connect(self, addr: str) -> str:
        """Dial ``addr`` (``.../p2p/<id>``); returns the peer ID."""
        peer: str = await self.p2p.connect(str(addr))
        return peer

    async def action_connected(self) -> list[str]:
        peers: list[str] = self.p2p.connected_peers()
        return peers


def _key(key: Any) -> bytes:
    if not isinstance(key, bytes) or not 1 <= len(key) <= 64:
        raise ValidationError("simnet keys are 1-64 bytes")
    return key
