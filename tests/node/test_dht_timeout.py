"""The per-peer Kademlia query timeout is ours to set (py-libp2p hard-codes 10 s)."""

from __future__ import annotations

from libp2p.kad_dht import kad_dht, peer_routing, provider_store

from bitterbot.node.p2p.host import P2PConfig, P2PHost
from bitterbot.protocol.identity import Identity


async def test_a_host_applies_its_query_timeout_to_every_kademlia_module(nursery) -> None:
    host = P2PHost(Identity.generate(), P2PConfig(query_timeout_s=2.5))
    await nursery.start(host.run)
    try:
        for module in (kad_dht, peer_routing, provider_store):
            assert module.QUERY_TIMEOUT == 2.5
    finally:
        await host.stop()
