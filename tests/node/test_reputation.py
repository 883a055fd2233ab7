"""Reputation ledger: LMDB dedup, the gossip validator, the install gate, and real nodes
on 127.0.0.1 gossiping and syncing attestations."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.node.home import Home
from bitterbot.node.p2p.host import P2PConfig, P2PHost
from bitterbot.node.p2p.peer_id import peer_id_of
from bitterbot.node.rep.service import (
    COPY_WINDOW_MS,
    TOPIC,
    InstallRefused,
    Ledger,
    RateLimited,
    RepConfig,
    Reputation,
)
from bitterbot.node.store import Store
from bitterbot.protocol import attestation as A
from bitterbot.protocol.codec import decode, encode
from bitterbot.protocol.errors import SignatureError, StaleError, ValidationError
from bitterbot.protocol.identity import Identity

H = hashlib.sha256(b"evidence").digest()


def ident(n: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(b"node%d" % n).digest())


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "db")
    yield s
    s.close()


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


# --- ledger ------------------------------------------------------------------------


def test_ledger_is_deduplicated_and_tracks_contiguous_heads(store: Any) -> None:
    ledger = Ledger(store)
    alice = ident(1)
    t = now_ms()
    a1, a2, a3 = (A.rating(alice, s, t, f"pkg:{s}", 4) for s in (1, 2, 3))
    new, conflicts = ledger.add_many([a1, a3])
    assert new == [a1, a3] and conflicts == 0
    assert ledger.heads()[alice.public_key] == (1, 3, 2)
    new, conflicts = ledger.add_many([a1, a2])
    assert new == [a2]
    assert ledger.heads()[alice.public_key] == (3, 3, 3)
    # same attester and seq, other content: an equivocation, never stored
    other = A.rating(alice, 2, t, "pkg:other", 1)
    assert ledger.add_many([other]) == ([], 1)
    assert ledger.count() == 3
    assert {a.data for a in ledger.load_all()} == {a1.data, a2.data, a3.data}


def test_own_attestations_survive_reopen_and_stay_pending_until_sent(tmp_path: Path) -> None:
    me = ident(2)
    s = Store(tmp_path / "db")
    rep = Reputation(s, me)
    first = rep.rate("pkg:x", 5, "nice")
    second = rep.flag("pkg:y", H, "phones home")
    assert (first.seq, second.seq) == (1, 2)
    s.close()
    s = Store(tmp_path / "db")
    rep = Reputation(s, me)
    assert [a.seq for a in rep.ledger.pending()] == [1, 2]
    assert rep.assess("pkg:y").tier == "flagged"  # the node's own flag counts
    rep.ledger.mark_sent(rep.ledger.pending())
    assert rep.ledger.pending() == []
    assert rep.vouch(ident(3).public_key).seq == 3
    s.close()


def test_install_gate_refuses_flagged_and_revoked_skills_unless_overridden(store: Any) -> None:
    me, auditor, publisher = ident(4), ident(5), ident(6)
    rep = Reputation(store, me, RepConfig(roots=[auditor.public_key]))
    t = now_ms()
    rep.ingest([A.flag(auditor, 1, t, "pkg:bad", H, "steals keys").data])
    rep.ingest([A.revoke(publisher, 1, t, "pkg:old", "broken").data])
    with pytest.raises(InstallRefused, match="flagged by a trusted attester"):
        rep.check_install("pkg:bad")
    assert rep.check_install("pkg:bad", override=True).tier == "flagged"
    with pytest.raises(InstallRefused, match="revoked"):
        rep.check_install("pkg:old", publisher.public_key)
    assert rep.check_install("pkg:fine").tier == "untrusted"  # unknown is allowed, shown
    assert rep.tier_of("pkg:bad") == "flagged"


# --- gossip validator (no network needed: called as gossipsub would) ---------------


async def test_gossip_validator_accepts_once_and_rejects_bad_input(store: Any) -> None:
    me, alice = ident(7), ident(8)
    clock = [now_ms()]
    rep = Reputation(store, me, RepConfig(burst=4, rate_per_min=1), clock_ms=lambda: clock[0])
    alice_peer = peer_id_of(alice)
    t = clock[0]
    batch = A.encode_batch([A.rating(alice, 1, t, "pkg:x", 5), A.rating(alice, 2, t, "pkg:y", 3)])
    # two mesh peers forward the same message: both get the first copy's verdict
    assert [rep.accept_gossip(alice_peer, batch) for _ in range(2)] == [True, True]
    assert rep.ledger.count() == 0  # accepted and forwarded; the durable write follows
    assert await rep.flush_writes() == 2
    assert rep.ledger.count() == 2
    assert rep.assess("pkg:x").total == 1  # in the trust graph once written
    clock[0] += COPY_WINDOW_MS + 1  # the same bytes again later: a replay
    with pytest.raises(StaleError, match="duplicate"):
        rep.accept_gossip(alice_peer, batch)
    # relayed as if it were someone else's message
    with pytest.raises(ValidationError, match="publishing peer"):
        rep.accept_gossip(peer_id_of(ident(9)), A.encode_batch([A.rating(alice, 3, t, "p", 1)]))
    # tampered signature
    obj = decode(A.rating(alice, 3, t, "pkg:z", 1).data)
    obj["payload"]["stars"] = 5
    with pytest.raises(SignatureError):
        rep.accept_gossip(alice_peer, encode({"v": 1, "atts": [encode(obj)]}))
    # stale (older than the gossip age limit) and far future
    old = A.rating(alice, 3, t - rep.config.gossip_max_age_ms - 60_000, "pkg:z", 1)
    with pytest.raises(StaleError):
        rep.accept_gossip(alice_peer, A.encode_batch([old]))
    future = A.rating(alice, 3, t + 3600_000, "pkg:z", 1)
    with pytest.raises(StaleError):
        rep.accept_gossip(alice_peer, A.encode_batch([future]))
    # oversize
    with pytest.raises(Exception, match="over the limit"):
        rep.accept_gossip(alice_peer, b"\x00" * (A.MAX_BATCH_BYTES + 1))
    # rate: burst of 4, two used; three more is over
    many = [A.rating(alice, s, t, f"pkg:r{s}", 4) for s in (3, 4, 5)]
    with pytest.raises(RateLimited):
        rep.accept_gossip(alice_peer, A.encode_batch(many))
    # a different statement under a sequence number already used: equivocation
    with pytest.raises(ValidationError, match="equivocation"):
        rep.accept_gossip(alice_peer, A.encode_batch([A.rating(alice, 2, t, "pkg:y", 1)]))
    assert await rep.flush_writes() == 0
    assert rep.ledger.count() == 2
    assert rep.rejected == 8
    assert rep.status()["rejected_by"] == {
        "stale": 3,
        "invalid": 2,
        "bad_signature": 1,
        "too_large": 1,
        "rate_limited": 1,
    }


# --- real nodes --------------------------------------------------------------------


@pytest.fixture
async def rep_factory(
    tmp_path: Path, nursery: trio.Nursery, dial_addr: Callable[[P2PHost], str]
) -> AsyncIterator[Callable[..., Any]]:
    """``await rep_factory(name, seeds=[p2p...], **RepConfig fields)`` -> (P2PHost, Reputation)."""
    made: list[tuple[P2PHost, Store, trio.CancelScope]] = []

    async def make(name: str, seeds: list[P2PHost] = (), **cfg: Any) -> tuple[P2PHost, Reputation]:  # type: ignore[assignment]
        home = Home(tmp_path / name).ensure()
        store = Store(home.db_path)
        config = P2PConfig(
            seeds=[dial_addr(s) for s in seeds], refresh_interval_s=1.0, backoff_initial_s=0.2
        )
        p2p = P2PHost(home.identity(), config, store=store)
        await nursery.start(p2p.run)
        rep = Reputation(store, home.identity(), RepConfig(**cfg))
        scope = trio.CancelScope()

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await rep.run(p2p, task_status=task_status)

        await nursery.start(run)
        made.append((p2p, store, scope))
        return p2p, rep

    yield make
    for _p2p, _store, scope in made:
        scope.cancel()
    await trio.sleep(0)
    for p2p, store, _scope in made:
        await p2p.stop()
        store.close()


async def test_attestation_published_on_one_node_is_stored_on_all_others(rep_factory, wait_until):
    seed, rseed = await rep_factory("seed")
    nodes = [await rep_factory(f"n{i}", seeds=[seed]) for i in range(3)]
    everyone = [(seed, rseed), *nodes]
    await wait_until(lambda: all(p.topic_peers(TOPIC) for p, _ in everyone), timeout=30)
    p0, r0 = nodes[0]
    att = r0.rate("pkg:weather", 5, "accurate")
    await wait_until(lambda: all(r.ledger.has(att.attester, att.seq) for _, r in everyone))
    assert r0.ledger.pending() == []
    # a batch: several at once still arrive everywhere, in one gossip message per 32
    for i in range(40):
        r0.rate(f"pkg:{i}", 1 + i % 5)
    await wait_until(lambda: all(r.ledger.count() == 41 for _, r in everyone))


async def test_invalid_attestation_is_stored_nowhere(rep_factory, wait_until, tmp_path):
    seed, rseed = await rep_factory("seed")
    honest = [await rep_factory(f"h{i}", seeds=[seed]) for i in range(2)]
    # a rogue node: plain P2PHost, subscribed without our validator, publishing raw bytes
    rogue_home = Home(tmp_path / "rogue").ensure()
    rogue_store = Store(rogue_home.db_path)
    rogue_id = rogue_home.identity()
    rogue = P2PHost(
        rogue_id,
        P2PConfig(seeds=[seed.listen_addrs()[0]], refresh_interval_s=1.0),
        store=rogue_store,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(rogue.run)
        async with rogue.subscribe(TOPIC):
            await wait_until(lambda: seed.peer_id in rogue.topic_peers(TOPIC), timeout=30)
            await wait_until(lambda: rogue.peer_id in seed.mesh_peers(TOPIC), timeout=30)
            t = now_ms()
            obj = decode(A.rating(rogue_id, 1, t, "pkg:evil", 1).data)
            obj["payload"]["stars"] = 5  # signature no longer matches
            await rogue.publish(TOPIC, encode({"v": 1, "atts": [encode(obj)]}))
            other = ident(99)  # someone else's attestation, published by the rogue
            await rogue.publish(TOPIC, A.encode_batch([A.rating(other, 1, t, "pkg:x", 5)]))
            await rogue.publish(TOPIC, encode({"v": 1, "atts": [b"junk"]}))
            # a valid one after the bad ones proves the path delivers
            good = A.rating(rogue_id, 1, t, "pkg:evil", 2)
            await rogue.publish(TOPIC, A.encode_batch([good]))
            everyone = [rseed, *(r for _, r in honest)]
            # stored durably first, then added to the in-memory graph
            await wait_until(lambda: all(r.assess("pkg:evil").total == 1 for r in everyone))
            assert all(r.ledger.count() == 1 for r in everyone)
            assert all(r.ledger.has(good.attester, 1) for r in everyone)
            assert rseed.rejected >= 3
        await rogue.stop()
        nursery.cancel_scope.cancel()
    rogue_store.close()


async def test_node_started_later_catches_up_through_sync(rep_factory, wait_until):
    seed, rseed = await rep_factory("seed")
    b, rb = await rep_factory("b", seeds=[seed])
    await wait_until(lambda: seed.topic_peers(TOPIC) and b.topic_peers(TOPIC), timeout=30)
    for i in range(5):
        rb.rate(f"pkg:{i}", 4)
    rseed.vouch(rb.identity.public_key)
    await wait_until(lambda: rseed.ledger.count() == 6 and rb.ledger.count() == 6)
    late, rlate = await rep_factory("late", seeds=[b], sync_interval_s=1.0)
    await wait_until(lambda: rlate.ledger.count() == 6 and len(rlate.graph) == 6, timeout=30)
    # what it caught up with counts: the seed vouched for b, so b's ratings are weighted
    assert rlate.assess("pkg:0").total == 1
    assert rlate.graph.trust_of(rb.identity.public_key) == 0.0  # late does not trust seed
    rlate.vouch(rseed.identity.public_key)
    assert rlate.graph.trust_of(rb.identity.public_key) > 0
    assert rlate.assess("pkg:0").tier == "trusted"


# --- CLI and API -------------------------------------------------------------------


def cli(*args: str, home: Path) -> Any:
    """Run the CLI in-process (click's runner); the error path is checked in a subprocess."""
    from click.testing import CliRunner

    from bitterbot.node.cli.main import cli as root

    result = CliRunner().invoke(root, ["--home", str(home), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_cli_rates_flags_vouches_and_explains(tmp_path: Path) -> None:
    import json

    home = tmp_path / "home"
    evidence = tmp_path / "evidence.txt"
    evidence.write_bytes(b"it uploads ~/.ssh")
    out = cli("rep", "rate", "pkg:good", "5", "--text", "fast", home=home)
    assert "gossiped when the node starts" in out.stdout
    out = cli("rep", "flag", "pkg:bad", "--evidence", str(evidence), "--json", home=home)
    flag = json.loads(out.stdout)
    assert flag["evidence_hash"] == hashlib.sha256(b"it uploads ~/.ssh").hexdigest()
    friend = peer_id_of(ident(42))
    assert "vouched for" in cli("rep", "trust", friend, home=home).stdout
    shown = json.loads(cli("rep", "show", "pkg:bad", "--json", home=home).stdout)
    assert shown["tier"] == "flagged"
    assert shown["evidence"][0]["id"] == flag["id"]
    good = json.loads(cli("rep", "show", "pkg:good", "--json", home=home).stdout)
    assert (good["tier"], good["score"]) == ("trusted", 5.0)
    roots = json.loads(cli("rep", "roots", "--json", home=home).stdout)
    assert {r["why"] for r in roots} == {"this node", "you vouched for it"}
    status = json.loads(cli("rep", "status", "--json", home=home).stdout)
    assert (status["attestations"], status["pending"]) == (3, 3)
    import os
    import subprocess
    import sys

    bad = subprocess.run(
        [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()"]
        + ["rep", "trust", "not-a-peer"],
        capture_output=True,
        text=True,
        env={**os.environ, "BITTERBOT_HOME": str(home)},
        timeout=60,
    )
    assert bad.returncode != 0 and "what to do" in bad.stderr and "Traceback" not in bad.stderr


async def test_api_creates_and_explains_attestations(tmp_path: Path) -> None:
    import httpx

    from bitterbot.node.api.app import build_app
    from bitterbot.node.config import load_settings
    from bitterbot.node.context import NodeContext

    home = Home(tmp_path / "home").ensure()
    store = Store(home.db_path)
    ctx = NodeContext(load_settings(home.path, env={}), home, store, home.identity())
    app = build_app(ctx, "t" * 40)
    headers = {"Authorization": "Bearer " + "t" * 40}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        r = await client.post(
            "/v1/rep/attestations",
            json={"kind": "rating", "skill": "pkg:a/b", "stars": 4},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        assert r.json()["stars"] == 4
        r = await client.post(
            "/v1/rep/attestations",
            json={"kind": "rating", "skill": "x", "stars": 9},
            headers=headers,
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid"
        r = await client.get("/v1/rep/skills/pkg:a/b", headers=headers)
        assert r.json()["tier"] == "trusted" and r.json()["score"] == 4.0
        r = await client.get("/v1/rep/status", headers=headers)
        assert r.json()["attestations"] == 1
        assert (await client.get("/v1/rep/status")).status_code == 401
    store.close()


async def test_start_reputation_publishes_what_the_cli_saved_while_offline(
    tmp_path: Path, nursery: trio.Nursery, rep_factory, dial_addr, wait_until
) -> None:
    from bitterbot.node.config import load_settings
    from bitterbot.node.context import NodeContext
    from bitterbot.node.rep.service import check_install, start_reputation

    peer, rpeer = await rep_factory("peer")
    home = Home(tmp_path / "offline").ensure()
    store = Store(home.db_path)
    offline = Reputation(store, home.identity())  # what `bitterbot rep flag` does
    flagged = offline.flag("pkg:bad", H, "miner")
    assert [a.seq for a in offline.ledger.pending()] == [flagged.seq]
    p2p = P2PHost(home.identity(), P2PConfig(seeds=[dial_addr(peer)]), store=store)
    await nursery.start(p2p.run)
    ctx = NodeContext(load_settings(home.path, env={}), home, store, home.identity(), p2p=p2p)
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            async with trio.open_nursery() as subsystems:
                await start_reputation(ctx, subsystems)
                await trio.sleep_forever()

    nursery.start_soon(run)
    await wait_until(lambda: rpeer.ledger.has(flagged.attester, flagged.seq), timeout=30)
    assert ctx.reputation.ledger.pending() == []
    with pytest.raises(InstallRefused):
        check_install(ctx, "pkg:bad")
    # the peer does not trust this node: for it, the flag is one ignored statement
    assert rpeer.assess("pkg:bad").tier == "untrusted"
    scope.cancel()
    await p2p.stop()
    store.close()


async def test_sync_keeps_valid_attestations_and_drops_forged_or_oversize_pages(
    rep_factory, tmp_path, nursery, dial_addr
) -> None:
    from bitterbot.node.p2p.framing import encode_varint, write_message
    from bitterbot.node.rep.service import SYNC_PROTOCOL
    from bitterbot.protocol.errors import TooLargeError

    node, rnode = await rep_factory("node")
    rogue_home = Home(tmp_path / "rogue").ensure()
    rogue_store = Store(rogue_home.db_path)
    rogue_id = rogue_home.identity()
    rogue = P2PHost(rogue_id, P2PConfig(seeds=[dial_addr(node)]), store=rogue_store)
    t = now_ms()
    honest = A.rating(ident(50), 1, t, "pkg:a", 4)
    own = A.rating(rogue_id, 1, t, "pkg:a", 5)
    forged = decode(A.rating(ident(51), 1, t, "pkg:a", 1).data)
    forged["payload"]["stars"] = 5
    mode = {"oversize": False}

    async def serve(stream: Any) -> None:
        await stream.read(1)  # the request's first byte is enough for this rogue
        if mode["oversize"]:
            await stream.write(encode_varint(10 * 1024 * 1024) + b"\x00" * 16)
            return
        page = [honest.data, encode(forged), own.data, b"junk"]
        await write_message(stream, {"v": 1, "atts": page, "done": True}, max_size=1 << 20)

    rogue.set_stream_handler(SYNC_PROTOCOL, serve)
    await nursery.start(rogue.run)
    await rogue.connect(dial_addr(node))
    assert await rnode.sync_with(node, rogue.peer_id) == 2
    assert rnode.ledger.has(honest.attester, 1) and rnode.ledger.has(own.attester, 1)
    assert not rnode.ledger.has(ident(51).public_key, 1)
    assert rnode.ledger.count() == 2
    mode["oversize"] = True
    with pytest.raises(TooLargeError):
        await rnode.sync_with(node, rogue.peer_id)
    assert rnode.ledger.count() == 2
    # a malformed request to an honest node: the stream is reset, nothing is sent
    from bitterbot.node.p2p.framing import read_message
    from bitterbot.protocol.errors import NetworkError

    stream = await rogue.open_stream(node.peer_id, SYNC_PROTOCOL)
    await write_message(stream, {"v": 1, "heads": [[b"short", 1]]}, max_size=1 << 20)
    with pytest.raises(NetworkError):
        await read_message(stream, max_size=1 << 20, timeout=5)
    # a well-formed one is answered with what the node has
    stream = await rogue.open_stream(node.peer_id, SYNC_PROTOCOL)
    await write_message(stream, {"v": 1, "heads": [[honest.attester, 1]]}, max_size=1 << 20)
    page = await read_message(stream, max_size=1 << 20, timeout=5)
    assert page["done"] is True and page["atts"] == [own.data]
    await rogue.stop()
    rogue_store.close()


def test_acknowledged_attestations_survive_sigkill(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import sys
from pathlib import Path
from bitterbot.node.home import Home
from bitterbot.node.store import Store
from bitterbot.node.rep.service import Reputation
home = Home(Path({str(tmp_path / "home")!r})).ensure()
rep = Reputation(Store(home.db_path), home.identity())
i = 0
while True:
    i += 1
    att = rep.rate(f"pkg:{{i}}", 1 + i % 5, "x" * 100)
    print(att.seq, flush=True)  # acknowledged only after the durable commit
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip():
            acked.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acked) >= 40
    home = Home(tmp_path / "home")
    store = Store(home.db_path)
    rep = Reputation(store, home.identity())
    heads = rep.ledger.heads()[home.identity().public_key]
    assert heads[0] == heads[1] >= acked[-1]  # contiguous: no hole, nothing acked missing
    assert all(rep.ledger.has(home.identity().public_key, s) for s in acked)
    assert rep.rate("pkg:after", 5).seq == heads[1] + 1  # numbering continues, no reuse
    store.close()


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-5, 2**40)
        | st.binary(max_size=40)
        | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["v", "heads", "atts", "done", "x"]), inner, max_size=4
            )
        ),
        max_leaves=12,
    )
)
def test_sync_messages_of_any_shape_raise_only_typed_errors(msg: Any) -> None:
    from bitterbot.node.rep.service import _parse_sync_page, _parse_sync_request
    from bitterbot.protocol.errors import BitterbotError

    for parse in (_parse_sync_request, _parse_sync_page):
        try:
            parse(msg)
        except BitterbotError:
            pass


async def test_running_node_picks_up_cli_statements_and_serves_them_over_http(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    import os
    import sys

    import httpx

    from bitterbot.node.config import load_settings
    from bitterbot.node.rep.service import start_reputation
    from bitterbot.node.service import NodeService

    home_path = tmp_path / "home"
    settings = load_settings(
        home_path,
        {
            "node.listen": ["/ip4/127.0.0.1/tcp/0"],
            "api.listen": "127.0.0.1:0",
            "metrics.listen": "127.0.0.1:0",
        },
        env={},
    )

    async def starter(ctx: Any, subsystems: trio.Nursery) -> None:
        await start_reputation(ctx, subsystems)

    service = NodeService(settings, starters=[starter])
    info = await nursery.start(service.run)
    out = await trio.run_process(
        [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()"]
        + ["rep", "rate", "pkg:live", "4", "--text", "ok"],
        capture_stdout=True,
        capture_stderr=True,
        env={**os.environ, "BITTERBOT_HOME": str(home_path)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert b"running node gossips it" in out.stdout
    token = Home(home_path).api_token(create=False)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"http://{info['api']}", headers=headers) as client:
        with trio.fail_after(10):
            while True:
                shown = (await client.get("/v1/rep/skills/pkg:live")).json()
                if shown["total"] == 1:
                    break
                await trio.sleep(0.2)
        assert (shown["tier"], shown["score"]) == ("trusted", 4.0)
        status = (await client.get("/v1/rep/status")).json()
        assert status["attestations"] == 1 and status["pending"] == 1  # no peer listens yet
    with trio.fail_after(10):
        service.stop()
        await service.stopped.wait()


async def test_statements_too_old_for_gossip_wait_for_sync_instead(rep_factory, wait_until):
    seed, rseed = await rep_factory("seed")
    b, rb = await rep_factory("b", seeds=[seed])
    await wait_until(lambda: seed.topic_peers(TOPIC) and b.topic_peers(TOPIC), timeout=30)
    await wait_until(lambda: rb.sync_rounds >= 1 and rseed.sync_rounds >= 1)  # first catch-up
    old_ts = now_ms() - rb.config.gossip_max_age_ms - 3600_000
    own_key = rb.identity.public_key
    old = rb.ledger.create(lambda s: A.rating(rb.identity, s, old_ts, "pkg:old", 2), own_key)
    fresh = rb.rate("pkg:new", 5)
    await wait_until(lambda: rseed.ledger.has(fresh.attester, fresh.seq))
    assert rb.ledger.pending() == []
    assert not rseed.ledger.has(old.attester, old.seq)  # not gossiped: it would be refused
    assert rseed.rejected == 0
    assert await rseed.sync_with(seed, b.peer_id) == 1  # sync carries it
    assert rseed.ledger.has(old.attester, old.seq)


def test_spec_documents_every_kind_and_reputation_protocol_id() -> None:
    from pathlib import Path

    from bitterbot.node.rep.service import SYNC_PROTOCOL, TOPIC

    spec = (Path(__file__).parents[2] / "SPEC.md").read_text(encoding="utf-8")
    section = spec[spec.index("## 11. Reputation") : spec.index("## 12.")]
    for kind in sorted(A.KINDS):
        assert f"| `{kind}` |" in section, f"{kind} is not in SPEC.md section 11"
    protocols = spec[spec.index("## 3. Protocol IDs") : spec.index("## 4.")]
    assert f"`{TOPIC}`" in protocols and f"`{SYNC_PROTOCOL}`" in protocols
