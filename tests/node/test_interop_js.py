"""Interop with js-libp2p (issue #7): Kademlia, identify and ping stay standard.

A js-libp2p 3.x peer (tests/interop/js/kad-peer.mjs, client-mode Kademlia on
``/ipfs/kad/1.0.0``) dials one Bitterbot node, pings it, reads identify, and looks up a
package CID that a *different* Bitterbot node provides; and the reverse: the js peer
provides a CID and a Bitterbot node that joined later finds it.

Needs ``node``/``npm`` and ``npm ci --prefix tests/interop/js`` (``make test`` runs it).
Without them the tests skip, except under CI (env ``CI`` set), where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from bitterbot.node.p2p.host import NET_PROTOCOL
from bitterbot.node.p2p.peers import PeerAddr
from bitterbot.protocol.catalog import package_key
from bitterbot.protocol.skillpkg import content_id

JS_DIR = Path(__file__).resolve().parents[1] / "interop" / "js"
SCRIPT = JS_DIR / "kad-peer.mjs"
STANDARD = {"/ipfs/kad/1.0.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"}
MIN_NODE = 20  # with node20.mjs's Promise.withResolvers; js-libp2p 3 itself targets 22
JS_TIMEOUT_S = 15  # the script's own deadline; the process gets a few seconds more


def _major_version(node: str) -> int:
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    text = done.stdout.strip().lstrip("v")
    return int(text.split(".")[0]) if text[:1].isdigit() else 0


@pytest.fixture
def node_bin() -> str:
    """Path of ``node`` with the interop packages installed; skip (fail under CI) if not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        problem = "node/npm are not installed (js-libp2p 3 needs Node.js >= 20)"
    elif _major_version(node) < MIN_NODE:
        problem = f"{node} is older than Node.js {MIN_NODE} (js-libp2p 3 needs it)"
    elif not (JS_DIR / "node_modules" / "libp2p").is_dir():
        problem = (
            f"js-libp2p is not installed in {JS_DIR}: "
            "run `npm ci --prefix tests/interop/js` (make test does)"
        )
    else:
        return node
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"interop test cannot run under CI: {problem}")
    pytest.skip(problem)


def _command(node: str, mode: str, addr: str, cid: str) -> list[str]:
    return [node, str(SCRIPT), mode, addr, cid, "--timeout-ms", str(JS_TIMEOUT_S * 1000)]


def _result(stdout: bytes, stderr: bytes, returncode: int | None) -> dict[str, Any]:
    """The script's JSON line; fail the test with its own message when it reports failure."""
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {"error": f"not a JSON line: {lines[-1]!r}"}
    if returncode not in (0, None) or not result.get("ok"):
        pytest.fail(
            f"js-libp2p peer failed (exit {returncode}): {result.get('error')}\n"
            + stderr.decode(errors="replace")[-2000:]
        )
    return result


def _without_p2p(addrs: list[str]) -> set[str]:
    return {a.split("/p2p/", 1)[0] for a in addrs}


@pytest.fixture
def js_find(node_bin: str) -> Callable[[str, str], Awaitable[dict[str, Any]]]:
    """``await js_find(multiaddr, cid)``: run ``kad-peer.mjs find``, return its JSON line."""

    async def run(addr: str, cid: str) -> dict[str, Any]:
        with trio.fail_after(JS_TIMEOUT_S + 5):
            done = await trio.run_process(
                _command(node_bin, "find", addr, cid),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=JS_DIR,
            )
        return _result(done.stdout, done.stderr, done.returncode)

    return run


@asynccontextmanager
async def _js_provider(node: str, addr: str, cid: str) -> AsyncIterator[dict[str, Any]]:
    """Run ``kad-peer.mjs provide``; yields its JSON line while the js peer stays up.

    Its stderr goes to the test's captured stderr (shown when the test fails).
    """
    process = await trio.lowlevel.open_process(
        _command(node, "provide", addr, cid),
        stdin=subprocess.PIPE,  # the js peer exits once we close it
        stdout=subprocess.PIPE,
        cwd=JS_DIR,
    )
    try:
        out = b""
        with trio.fail_after(JS_TIMEOUT_S + 5):
            while not out.endswith(b"\n"):
                chunk = await process.stdout.receive_some(4096)
                if not chunk:  # it exited before reporting
                    await process.wait()
                    break
                out += chunk
        yield _result(out, b"", process.returncode)
    finally:
        await process.stdin.aclose()
        with trio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_js_libp2p_finds_a_bitterbot_provider_through_the_dht(
    p2p_factory, wait_until, dial_addr, js_find
):
    seed = await p2p_factory("seed")
    publisher = await p2p_factory("publisher", seeds=[seed])
    await wait_until(lambda: publisher.routing_table_size() >= 1)
    cid = content_id(b"a skill package announced by a Bitterbot publisher")
    key = package_key(cid)
    await publisher.provide(key)
    # The js peer dials a node that joined after the announcement, so it holds no record
    # and the lookup has to travel on to the peers that do. js-libp2p (like go-libp2p)
    # follows only peers closer to the key than the one that named them: an entry closer
    # than both holders would rightly end the lookup there, so take one that is not.
    nearest_holder = min(_kad_distance(n.peer_id, key) for n in (seed, publisher))
    for attempt in range(12):
        entry = await p2p_factory(f"entry{attempt}", seeds=[seed])
        if _kad_distance(entry.peer_id, key) > nearest_holder:
            break
    await wait_until(lambda: entry.routing_table_size() >= 2)
    assert not entry._dht.provider_store.get_providers(key)

    result = await js_find(dial_addr(entry), cid)

    assert result["target"] == entry.peer_id
    assert result["ping_ms"] >= 0
    assert STANDARD | {NET_PROTOCOL} <= set(result["protocols"])
    assert [p["id"] for p in result["providers"]] == [publisher.peer_id]
    assert _without_p2p(publisher.listen_addrs()) & _without_p2p(result["providers"][0]["addrs"])
    # a CID nobody announced: the js lookup ends (no hang) with no providers
    nobody = await js_find(dial_addr(entry), content_id(b"announced by nobody"))
    assert nobody["providers"] == []


def _kad_distance(peer_id: str, key: bytes) -> int:
    """Kademlia XOR distance as libp2p's DHTs measure it (SHA-256 of both sides)."""
    from libp2p.peer.id import ID

    a = hashlib.sha256(ID.from_base58(peer_id).to_bytes()).digest()
    return int.from_bytes(a, "big") ^ int.from_bytes(hashlib.sha256(key).digest(), "big")


@asynccontextmanager
async def _seeker_and_js_provider(
    p2p_factory, wait_until, dial_addr, node: str
) -> AsyncIterator[tuple[Any, dict[str, Any], PeerAddr]]:
    """A js peer provides a CID through one Bitterbot node; a node that joins afterwards
    (so it holds no copy of the record) looks it up. Yields (seeker, js line, found)."""
    seed = await p2p_factory("seed")
    entry = await p2p_factory("entry", seeds=[seed])
    await wait_until(lambda: entry.routing_table_size() >= 1 and seed.routing_table_size() >= 1)
    cid = content_id(b"a package a js-libp2p peer provides")
    key = package_key(cid)
    async with _js_provider(node, dial_addr(entry), cid) as js:
        assert STANDARD <= set(js["protocols"])
        assert js["addrs"]
        seeker = await p2p_factory("seeker", seeds=[seed])
        await wait_until(lambda: seeker.routing_table_size() >= 2)
        assert not seeker._dht.provider_store.get_providers(key)
        found = await seeker.find_providers(key, count=1)
        assert [p.peer_id for p in found] == [js["peer_id"]]
        yield seeker, js, found[0]


async def test_bitterbot_finds_a_js_libp2p_provider_and_can_dial_it(
    p2p_factory, wait_until, dial_addr, node_bin
):
    async with _seeker_and_js_provider(p2p_factory, wait_until, dial_addr, node_bin) as (
        seeker,
        js,
        found,
    ):
        assert _without_p2p(list(found.addrs)) == _without_p2p(js["addrs"])
        # the advertised address is real: Noise authenticates the js peer's ID on it
        assert await seeker.connect(PeerAddr(js["peer_id"], found.addrs)) == js["peer_id"]
        assert js["peer_id"] in seeker.connected_peers()
        # a foreign (non-Bitterbot) peer is dropped from the routing table by the next
        # refresh (1 s in these tests), however it got in
        await wait_until(lambda: js["peer_id"] not in seeker.routing_table_peers(), timeout=5)


async def test_a_js_provider_is_stored_like_a_bitterbot_one(
    p2p_factory, wait_until, dial_addr, node_bin
):
    async with _seeker_and_js_provider(p2p_factory, wait_until, dial_addr, node_bin) as (
        seeker,
        js,
        found,
    ):
        assert set(found.addrs) == _without_p2p(js["addrs"])
        await seeker.connect(PeerAddr(js["peer_id"], found.addrs))
        # admitted while its protocols are unknown, evicted as soon as identify answers
        await wait_until(lambda: js["peer_id"] not in seeker.routing_table_peers(), timeout=1)
