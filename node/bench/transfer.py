"""``bitterbot bench transfer``: MB/s of a hash-verified package transfer between two nodes.

The provider runs in a child process (``python -m bitterbot.node.bench.transfer serve``) so
the two ends do not share one Python core, as on a real network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from bitterbot.node.config import load_settings
from bitterbot.node.context import NodeContext
from bitterbot.node.home import Home
from bitterbot.node.market import Market
from bitterbot.node.p2p.host import P2PConfig, P2PHost
from bitterbot.node.store import Store


def make_package(size_mb: int, identity: Any) -> bytes:
    """A signed skill package carrying ``size_mb`` MB of random model bytes."""
    from bitterbot.protocol.skillpkg import build_package, sign_package

    files = {
        "SKILL.md": b"---\nname: bench-blob\ndescription: transfer benchmark payload\n---\nBench.\n",
        "bitterbot.toml": b'version = "1.0.0"\n',
    }
    for i in range(0, size_mb, 10):  # files of 10 MB: under the per-file limit
        files[f"data/part{i // 10}.bin"] = os.urandom(min(10, size_mb - i) * 1024 * 1024)
    return sign_package(build_package(files), identity, int(time.time() * 1000)).to_bytes()


async def _node(home_path: Path, store: Store) -> tuple[P2PHost, Market]:
    home = Home(home_path).ensure()
    ctx = NodeContext(load_settings(home.path, env={}), home, store, home.identity())
    ctx.p2p = P2PHost(home.identity(), P2PConfig(listen=["/ip4/127.0.0.1/tcp/0"]), store=store)
    market = Market(ctx)
    market.register()
    return ctx.p2p, market


async def serve(home_path: Path, package: Path) -> None:
    store = Store(Home(home_path).ensure().db_path)
    p2p, market = await _node(home_path, store)
    async with trio.open_nursery() as nursery:
        await nursery.start(p2p.run)
        data = package.read_bytes()
        info = await market.publish(data)
        print(json.dumps({"addr": p2p.listen_addrs()[0], "id": info["package_id"]}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the parent closes our stdin
        await p2p.stop()
        nursery.cancel_scope.cancel()


async def measure(size_mb: int = 50, runs: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        provider_home = Home(tmp_path / "provider").ensure()
        data = make_package(size_mb, provider_home.identity())
        pkg = tmp_path / "blob.bbskill"
        pkg.write_bytes(data)
        child = subprocess.Popen(
            [sys.executable, "-m", "bitterbot.node.bench.transfer", "serve", str(provider_home.path), str(pkg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            hello = json.loads(child.stdout.readline())
            store = Store(Home(tmp_path / "client").ensure().db_path)
            p2p, market = await _node(tmp_path / "client", store)
            rates = []
            async with trio.open_nursery() as nursery:
                await nursery.start(p2p.run)
                peer = await p2p.connect(hello["addr"])
                for _ in range(runs):
                    started = time.perf_counter()
                    got = await market.download(hello["id"], [peer], len(data) + 1)
                    elapsed = time.perf_counter() - started
                    assert got == data
                    rates.append(len(data) / elapsed / 1e6)
                await p2p.stop()
                nursery.cancel_scope.cancel()
            store.close()
        finally:
            if child.stdin:
                child.stdin.close()
            child.wait(timeout=10)
    rates.sort()
    return {
        "package_mb": round(len(data) / 1e6, 1),
        "runs": runs,
        "mb_per_s_median": round(rates[len(rates) // 2], 1),
        "mb_per_s_best": round(rates[-1], 1),
        "hash_verified": True,
        "target_mb_per_s": 50,
    }


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        trio.run(serve, Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        print(json.dumps(trio.run(measure)))
