"""The node process: home lock, store, identity, libp2p host, local API, metrics, subsystems.

``bitterbot node start`` runs :class:`NodeService` under trio; tests run it in-process.
Order of start (each step fails with one clear error, and undoes the earlier ones):

1. take the home's lock ("already running (pid N)"), load or create the identity and token
2. open the LMDB store
3. start the libp2p host (listening; bootstrap continues in the background)
4. serve the local API and the metrics endpoint on 127.0.0.1
5. run the subsystem starters (agent, market, reputation, payments: see SUBSYSTEM_STARTERS)
6. write ``node.json`` (API and metrics addresses, peer ID) into the home

Shutdown (SIGINT/SIGTERM or :meth:`NodeService.stop`): HTTP servers stop accepting, the host
closes its connections, everything is cancelled after a grace period, the lock is released
and ``node.json`` removed: within 5 seconds, without tracebacks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from bitterbot.node.config import Settings
from bitterbot.node.context import NodeContext
from bitterbot.node.home import Home
from bitterbot.protocol.errors import NetworkError

logger = logging.getLogger(__name__)

#: ``async starter(ctx, nursery)``: attach a subsystem to ``ctx`` and start its background
#: tasks in ``nursery``. Must return promptly (start tasks, do not run them inline); raise a
#: BitterbotError to abort the node start. The lead appends the agent, market, reputation
#: and payments starters here (or passes ``starters=`` to NodeService).
SubsystemStarter = Callable[[NodeContext, trio.Nursery], Awaitable[None]]
SUBSYSTEM_STARTERS: list[SubsystemStarter] = []

SHUTDOWN_GRACE_S = 3.0


def quiet_libp2p_logs(debug: bool) -> None:
    """py-libp2p logs every failed peer RPC (normal network weather) and teardown noise."""
    import libp2p  # noqa: F401 - its import sets its own log levels; set ours after

    if not debug:
        # our own code reports every failure that matters, in words a user can act on
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
        logging.getLogger("multiaddr").setLevel(logging.ERROR)
        logging.getLogger("hypercorn").setLevel(logging.ERROR)


class NodeService:
    def __init__(
        self,
        settings: Settings,
        *,
        starters: list[SubsystemStarter] | None = None,
    ) -> None:
        self.settings = settings
        self.starters = list(SUBSYSTEM_STARTERS if starters is None else starters)
        self.home = Home(settings.home)
        self.ctx: NodeContext | None = None
        self.info: dict[str, Any] = {}
        self._stop = trio.Event()
        self.stopped = trio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything; ``task_status.started(info)`` once ready; run until stop()."""
        from bitterbot.node.store import Store

        try:
            self.home.ensure()
            self.home.acquire_lock()
            try:
                identity = self.home.identity()
                token = self.home.api_token()
                store = Store(self.home.db_path)
                try:
                    ctx = NodeContext(self.settings, self.home, store, identity)
                    self.ctx = ctx
                    await self._run(ctx, token, task_status)
                finally:
                    store.close()
            finally:
                self.home.release_lock()
        finally:
            self.stopped.set()

    async def _run(self, ctx: NodeContext, token: str, task_status: Any) -> None:
        from bitterbot.node.api.app import build_app, serve_api
        from bitterbot.node.metrics import NodeMetrics
        from bitterbot.node.p2p.host import P2PConfig, P2PHost

        settings = self.settings
        metrics = NodeMetrics(ctx)
        p2p = P2PHost(
            ctx.identity,
            P2PConfig(
                listen=list(settings["node.listen"]),
                seeds=list(settings["node.seeds"]),
                max_peers=int(settings["node.max_peers"]),
                query_timeout_s=float(settings["node.dht_query_timeout_s"]),
            ),
            store=ctx.store,
            observer=metrics.observe_query,
        )
        ctx.p2p = p2p
        http_shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(p2p.run)
            api_addr = await nursery.start(
                partial(
                    serve_api, build_app(ctx, token), settings["api.listen"], shutdown=http_shutdown
                )
            )
            try:
                metrics_addr = await nursery.start(
                    partial(
                        serve_api,
                        metrics.app(check_host=_is_loopback_listen(settings["metrics.listen"])),
                        settings["metrics.listen"],
                        shutdown=http_shutdown,
                    )
                )
            except NetworkError as exc:
                raise NetworkError(
                    exc.message.replace("for the API", "for metrics"),
                    hint="pick another address with --metrics HOST:PORT",
                ) from exc
            for starter in self.starters:
                await starter(ctx, nursery)
            self.info = {
                "pid": os.getpid(),
                "peer_id": p2p.peer_id,
                "api": api_addr,
                "metrics": metrics_addr,
                "listen_addrs": p2p.listen_addrs(),
                "started_at": int(time.time()),
            }
            self.home.write_running(self.info)
            task_status.started(self.info)
            await self._stop.wait()

            # graceful part: stop accepting HTTP, close libp2p connections; then cancel
            http_shutdown.set()
            with trio.move_on_after(SHUTDOWN_GRACE_S):
                await p2p.stop(timeout=SHUTDOWN_GRACE_S)
            nursery.cancel_scope.cancel()


def _is_loopback_listen(listen: str) -> bool:
    """True when HOST:PORT binds a loopback address (the default for metrics)."""
    from bitterbot.node.loopback import host_is_loopback

    return host_is_loopback(listen.rpartition(":")[0])
