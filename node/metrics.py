"""Prometheus metrics of a running node, served on 127.0.0.1 (default port 9464).

Exported (besides the standard ``process_*`` series: RSS, CPU, open fds)::

    bitterbot_info{peer_id,version}              1
    bitterbot_uptime_seconds                     since the node started
    bitterbot_connected_peers                    open libp2p connections (peers)
    bitterbot_dht_routing_table_size             peers in the Kademlia routing table
    bitterbot_dht_queries_total{op,result}       provide/find_providers/put_value/get_value
    bitterbot_dht_query_seconds{op}              their latency (histogram)
    bitterbot_process_rss_bytes                  resident memory, read from /proc at scrape

Gauges are read from the node at scrape time (a collector), so nothing polls in between.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bitterbot.node.context import NodeContext

QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class _NodeCollector(Collector):
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Any]:
        from importlib.metadata import PackageNotFoundError, version

        from bitterbot.node.p2p.peer_id import peer_id_of

        try:
            ver = version("bitterbot")
        except PackageNotFoundError:
            ver = "unknown"
        info = InfoMetricFamily("bitterbot", "this node")
        info.add_metric([], {"peer_id": peer_id_of(self.ctx.identity), "version": ver})
        yield info
        yield GaugeMetricFamily(
            "bitterbot_uptime_seconds", "seconds since the node started", value=self.ctx.uptime_s()
        )
        p2p = self.ctx.p2p
        peers = len(p2p.connected_peers()) if p2p is not None and p2p.running else 0
        table = p2p.routing_table_size() if p2p is not None else 0
        yield GaugeMetricFamily("bitterbot_connected_peers", "connected libp2p peers", value=peers)
        yield GaugeMetricFamily(
            "bitterbot_dht_routing_table_size", "peers in the Kademlia routing table", value=table
        )
        yield GaugeMetricFamily(
            "bitterbot_process_rss_bytes", "resident memory of the node", value=rss_bytes()
        )


class NodeMetrics:
    """A registry per node (no globals), so several nodes can live in one test process."""

    def __init__(self, ctx: NodeContext) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(_NodeCollector(ctx))
        self.queries = Counter(
            "bitterbot_dht_queries",
            "DHT operations by this node",
            ["op", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bitterbot_dht_query_seconds",
            "latency of DHT operations by this node",
            ["op"],
            buckets=QUERY_BUCKETS,
            registry=self.registry,
        )

    def observe_query(self, op: str, seconds: float, ok: bool) -> None:
        """The P2PHost's query observer."""
        self.queries.labels(op=op, result="ok" if ok else "error").inc()
        self.latency.labels(op=op).observe(seconds)

    def app(self, *, check_host: bool = True) -> Any:
        """ASGI app serving /metrics; refuses non-loopback Host headers like the API does,
        unless the operator deliberately exposed metrics on another address
        (``check_host=False``, e.g. a Prometheus scraping a seed in a compose network)."""
        from prometheus_client import make_asgi_app

        from bitterbot.node.loopback import host_is_loopback

        inner = make_asgi_app(registry=self.registry)

        async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            if scope["type"] != "http":
                return
            headers = dict(scope.get("headers") or [])
            if check_host and not host_is_loopback(headers.get(b"host", b"").decode("latin-1")):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "http.response.body", "body": b"forbidden host\n"})
                return
            await inner(scope, receive, send)

        return guarded
