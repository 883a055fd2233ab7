"""Fixtures that start real libp2p nodes on 127.0.0.1 (port 0), each with a real LMDB store.

Use from any node test (helpers are fixtures too, since tests/ is not a package)::

    async def test_x(p2p_factory, wait_until):
        a = await p2p_factory("a")
        b = await p2p_factory("b", seeds=[a])     # seeds: P2PHost objects or multiaddr text
        await wait_until(lambda: a.peer_id in b.connected_peers())
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from bitterbot.node.home import Home
from bitterbot.node.p2p.host import P2PConfig, P2PHost
from bitterbot.node.store import Store


def _dial_addr(node: P2PHost) -> str:
    """The 127.0.0.1 multiaddr (with /p2p) of a running node."""
    for addr in node.listen_addrs():
        if addr.startswith("/ip4/127.0.0.1/"):
            return addr
    return node.listen_addrs()[0]


async def _wait_until(
    predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.1
) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(step)
        return
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``await wait_until(predicate, timeout=20)``: poll until true, else fail the test."""
    return _wait_until


@pytest.fixture
def dial_addr() -> Callable[[P2PHost], str]:
    """``dial_addr(node)``: the node's 127.0.0.1 multiaddr with /p2p/<id>."""
    return _dial_addr


@pytest.fixture
async def p2p_factory(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Callable[..., Any]]:
    """``await p2p_factory(name, seeds=[...], **config)`` -> a running P2PHost.

    Each node gets a home in ``tmp_path/name`` (identity + LMDB); the same name reuses the
    home, so a restarted node keeps its identity and its known peers.
    """
    made: list[P2PHost] = []
    stores: dict[str, Store] = {}

    async def make(name: str, seeds: list[Any] = (), **config: Any) -> P2PHost:  # type: ignore[assignment]
        home = Home(tmp_path / name).ensure()
        store = stores.get(name)
        if store is None:
            store = stores[name] = Store(home.db_path)
        cfg = P2PConfig(
            listen=config.pop("listen", ["/ip4/127.0.0.1/tcp/0"]),
            seeds=[s if isinstance(s, str) else _dial_addr(s) for s in seeds],
            refresh_interval_s=config.pop("refresh_interval_s", 1.0),
            backoff_initial_s=config.pop("backoff_initial_s", 0.2),
            **config,
        )
        node = P2PHost(home.identity(), cfg, store=store)
        await nursery.start(node.run)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop()
    for store in stores.values():
        store.close()
