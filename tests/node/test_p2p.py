"""Real libp2p nodes on 127.0.0.1: joining through a seed, DHT, streams, gossipsub."""

from __future__ import annotations

import contextlib
import time

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.node.p2p.host import NET_PROTOCOL
from bitterbot.protocol.errors import BitterbotError, DecodeError, NetworkError


def _protocols_seen(node, peer_id) -> set[str]:
    """Protocols ``node`` learned about ``peer_id`` through identify (empty: not yet)."""
    from libp2p.peer.peerstore import PeerStoreError

    try:
        return {str(p) for p in node._host.get_peerstore().get_protocols(peer_id) or []}
    except PeerStoreError:
        return set()


async def test_nodes_given_only_a_seed_find_each_other(p2p_factory, wait_until):
    a = await p2p_factory("a")
    b = await p2p_factory("b", seeds=[a])
    c = await p2p_factory("c", seeds=[a])
    await wait_until(lambda: c.peer_id in b.connected_peers() and b.peer_id in c.connected_peers())
    await wait_until(
        lambda: c.peer_id in b.routing_table_peers() and b.peer_id in c.routing_table_peers()
    )
    status = b.status()
    assert status["network"] == "joined"
    assert a.status()["routing_table_size"] >= 2
    assert all(addr.endswith("/p2p/" + b.peer_id) for addr in status["listen_addrs"])


async def test_restart_keeps_identity_and_reconnects_to_known_peers(p2p_factory, wait_until):
    a = await p2p_factory("a")
    b = await p2p_factory("b", seeds=[a])
    await wait_until(lambda: a.peer_id in b.connected_peers())
    old_id = b.peer_id
    await b.stop()
    assert b.stopped.is_set()
    await wait_until(lambda: old_id not in a.connected_peers())
    # restarted with no seed at all: the known-peer book in LMDB brings it back to A
    b2 = await p2p_factory("b")
    assert b2.peer_id == old_id
    assert b2.status()["seeds"] == []
    await wait_until(lambda: a.peer_id in b2.connected_peers())
    assert b2.status()["network"] == "joined"


async def test_a_node_without_seeds_runs_standalone(p2p_factory):
    a = await p2p_factory("alone")
    status = a.status()
    assert status["network"] == "standalone"
    assert status["connected_peers"] == []
    assert status["listen_addrs"][0].startswith("/ip4/127.0.0.1/tcp/")


async def test_provider_records_are_found_by_nodes_that_never_met_the_provider(
    p2p_factory, wait_until
):
    a = await p2p_factory("a")
    nodes = [await p2p_factory(f"n{i}", seeds=[a]) for i in range(3)]
    provider, seeker = nodes[0], nodes[2]
    await wait_until(lambda: all(n.routing_table_size() >= 2 for n in nodes))
    key = bytes(range(32))
    await provider.provide(key)
    found = await seeker.find_providers(key, count=1)
    assert [p.peer_id for p in found] == [provider.peer_id]
    assert found[0].addrs  # dialable
    assert await seeker.find_providers(bytes(32), count=1) == []


async def test_values_need_a_registered_validator_and_the_best_record_wins(p2p_factory, wait_until):
    import pytest

    from bitterbot.protocol.errors import TooLargeError, ValidationError

    def validate(key: str, value: bytes) -> None:
        if not value.startswith(b"v"):
            raise ValidationError("records start with v")

    def select(key: str, values: list[bytes]) -> int:
        return max(range(len(values)), key=lambda i: int(values[i][1:]))

    a = await p2p_factory("a")
    nodes = [await p2p_factory(f"n{i}", seeds=[a]) for i in range(3)]
    for node in [a, *nodes]:
        node.register_namespace("bbtest", validate, select, max_value_bytes=64)
    await wait_until(lambda: all(n.routing_table_size() >= 2 for n in nodes))

    await nodes[0].put_value("/bbtest/k", b"v1")
    assert await nodes[2].get_value("/bbtest/k") == b"v1"  # now also cached at nodes[2]
    await nodes[0].put_value("/bbtest/k", b"v2")
    assert await nodes[2].get_value("/bbtest/k") == b"v2"
    # a stale cached copy (say, the node was offline during the put) loses to the network's
    nodes[2]._dht.value_store.put(b"/bbtest/k", b"v1")
    assert await nodes[2].get_value("/bbtest/k") == b"v2"
    assert nodes[2]._dht.value_store.get(b"/bbtest/k").value == b"v2"
    with pytest.raises(ValidationError):
        await nodes[0].put_value("/bbtest/k", b"v1")  # select() keeps the newer one
    with pytest.raises(ValidationError):
        await nodes[0].put_value("/bbtest/k", b"x3")  # refused by the validator
    with pytest.raises(TooLargeError):
        await nodes[0].put_value("/bbtest/k", b"v" + b"9" * 100)  # over the size limit
    with pytest.raises(ValidationError):
        await nodes[0].put_value("/elsewhere/k", b"v1")  # strict: unknown namespace
    assert await nodes[1].get_value("/bbtest/missing") is None


async def test_gossip_reaches_every_node_and_the_validator_drops_bad_messages(
    p2p_factory, wait_until
):
    import pytest

    from bitterbot.protocol.errors import ValidationError

    topic = "/bitterbot/test/1"
    a = await p2p_factory("a")
    nodes = [a, *[await p2p_factory(f"n{i}", seeds=[a]) for i in range(3)]]
    await wait_until(lambda: all(n.connected_peers() for n in nodes))
    received: dict[str, list[bytes]] = {n.peer_id: [] for n in nodes}

    def only_good(from_peer: str, data: bytes) -> bool:
        return data.startswith(b"good")

    async def listen(node, sub, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        async for msg in sub:
            assert msg.from_peer == nodes[1].peer_id
            received[node.peer_id].append(msg.data)

    async with trio.open_nursery() as nursery:
        subs = []
        for node in nodes:
            cm = node.subscribe(topic, only_good)
            subs.append(cm)
            sub = await cm.__aenter__()
            await nursery.start(listen, node, sub)
        await wait_until(lambda: all(len(n.topic_peers(topic)) >= 1 for n in nodes))
        await wait_until(lambda: all(n.mesh_peers(topic) for n in nodes))  # a heartbeat
        await nodes[1].publish(topic, b"bad one")
        await nodes[1].publish(topic, b"good one")
        await wait_until(lambda: all(v == [b"good one"] for v in received.values()), timeout=10)
        with pytest.raises(ValidationError, match="already subscribed"):
            async with nodes[0].subscribe(topic):
                pass
        nursery.cancel_scope.cancel()


async def test_own_messages_flood_to_every_subscriber_forwarded_ones_follow_the_mesh(
    p2p_factory, wait_until
):
    topic = "/bitterbot/test/flood"
    hub = await p2p_factory("hub")
    nodes = [hub, *[await p2p_factory(f"s{i}", seeds=[hub]) for i in range(4)]]
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node.subscribe(topic))
        await wait_until(lambda: len(hub.mesh_peers(topic)) >= 2, timeout=10)
        router, me = hub._gossip, hub._pubsub.my_id
        pruned, relay = sorted(router.mesh[topic], key=str)[:2]
        router.mesh[topic].discard(pruned)  # a subscriber outside the mesh (say, pruned)
        subscribers = set(router.pubsub.peer_topics[topic])
        own = set(router._get_peers_to_send([topic], me, me))
        assert own == subscribers and pruned in own
        forwarded = set(router._get_peers_to_send([topic], relay, me))
        assert forwarded <= set(router.mesh[topic]) - {relay} and pruned not in forwarded

        # IDONTWANT (gossipsub 1.2) only for messages of 1 KiB or more, as go-libp2p does
        told: list[bytes] = []
        original = router.emit_idontwant

        async def emit_idontwant(msg_ids, to_peer):
            told.extend(msg_ids)
            await original(msg_ids, to_peer)

        router.emit_idontwant = emit_idontwant
        sender = next(n for n in nodes[1:] if n.peer_id in hub.mesh_peers(topic))
        seen = len(router.mcache.msgs)
        await sender.publish(topic, b"small")
        await wait_until(lambda: len(router.mcache.msgs) > seen, timeout=5)
        assert told == []
        await sender.publish(topic, b"L" * 2048)
        await wait_until(lambda: told, timeout=5)


async def test_streams_carry_frames_and_refuse_oversize_ones(p2p_factory, wait_until):
    import pytest

    from bitterbot.node.p2p import framing

    proto = "/bitterbot/echo-test/1.0.0"
    seen: list[object] = []

    async def echo(stream):
        try:
            data = await framing.read_frame(stream, max_size=1024, timeout=5)
        except framing.FrameTooLarge as exc:
            seen.append(exc)
            raise
        seen.append(stream.peer_id)
        await framing.write_frame(stream, data[::-1])

    a = await p2p_factory("a")
    b = await p2p_factory("b", seeds=[a])
    a.set_stream_handler(proto, echo)
    await wait_until(lambda: a.peer_id in b.connected_peers())
    async with await b.open_stream(a.peer_id, proto) as stream:
        await framing.write_frame(stream, b"hello")
        assert await framing.read_frame(stream) == b"olleh"
    assert seen == [b.peer_id]
    async with await b.open_stream(a.peer_id, proto) as stream:
        await framing.write_frame(stream, b"x" * 2000)
        with pytest.raises(framing.StreamClosed):
            await framing.read_frame(stream, timeout=5)
    await wait_until(lambda: len(seen) == 2)
    assert isinstance(seen[1], framing.FrameTooLarge)


async def test_members_learn_the_marker_protocol_through_identify(p2p_factory, wait_until):
    a = await p2p_factory("a")
    b = await p2p_factory("b", seeds=[a])

    def b_knows_a_is_a_member() -> bool:
        return NET_PROTOCOL in _protocols_seen(b, a._host.get_id())

    await wait_until(b_knows_a_is_a_member)
    rounds = b.upkeep_rounds
    await wait_until(lambda: b.upkeep_rounds > rounds)  # a refresh round keeps members
    assert a.peer_id in b.routing_table_peers()


async def test_a_plaintext_only_peer_cannot_connect(p2p_factory, dial_addr):
    import pytest
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from multiaddr import Multiaddr

    a = await p2p_factory("a")
    keys = create_new_key_pair()
    plain = new_host(key_pair=keys, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(keys)})
    async with plain.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        with pytest.raises(Exception) as info:  # noqa: B017 - libp2p's dial error types vary
            with trio.fail_after(10):
                await plain.connect(info_from_p2p_addr(Multiaddr(dial_addr(a))))
        assert not isinstance(info.value, trio.TooSlowError)
        assert a.connected_peers() == []
        await plain.close()


async def test_a_plain_libp2p_kademlia_peer_is_kept_out_of_the_routing_table(
    p2p_factory, dial_addr, wait_until
):
    """Standard Kademlia interop, but membership needs the marker protocol (SPEC 4.2)."""
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
    from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as Noise
    from libp2p.tools.anyio_service import background_trio_service
    from multiaddr import Multiaddr

    a = await p2p_factory("a")
    b = await p2p_factory("b", seeds=[a])
    keys = create_new_key_pair()
    outsider = new_host(
        key_pair=keys, sec_opt={NOISE_ID: Noise(keys, noise_privkey=new_x25519().private_key)}
    )
    outsider_id = outsider.get_id().to_base58()
    dht = KadDHT(outsider, DHTMode.SERVER)
    async with outsider.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(dht):
            await outsider.connect(info_from_p2p_addr(Multiaddr(dial_addr(a))))
            await dht.add_peer(info_from_p2p_addr(Multiaddr(dial_addr(a))).peer_id)
            # the outsider can use our DHT (standard protocol) ...
            await dht.peer_routing.find_closest_peers_network(outsider.get_id().to_bytes())
            await wait_until(lambda: b.peer_id in a.routing_table_peers())
            await wait_until(lambda: bool(_protocols_seen(a, outsider.get_id())))
            rounds = a.upkeep_rounds
            await wait_until(lambda: a.upkeep_rounds >= rounds + 2)  # two refresh rounds
            # ... but never becomes a member of our routing tables
            assert outsider_id in a.connected_peers()
            assert outsider_id not in a.routing_table_peers()
            assert b.peer_id in a.routing_table_peers()
            await outsider.close()


class _BytesStream:
    """In-memory byte source for framing edge cases (the real-stream case is tested above)."""

    def __init__(self, data: bytes, chunk: int = 3) -> None:
        self.data = data
        self.chunk = chunk
        self.read_bytes = 0
        self.written = b""

    async def read(self, n: int | None = None) -> bytes:
        n = self.chunk if n is None else min(n, self.chunk)
        out, self.data = self.data[:n], self.data[n:]
        self.read_bytes += len(out)
        return out

    async def write(self, data: bytes) -> None:
        self.written += data


async def test_framing_round_trips_and_checks_the_length_before_the_body():
    import pytest

    from bitterbot.node.p2p import framing

    out = _BytesStream(b"")
    await framing.write_frame(out, b"a" * 300)
    await framing.write_message(out, {"k": [1, b"x"]})
    src = _BytesStream(out.written)
    assert await framing.read_frame(src) == b"a" * 300
    assert await framing.read_message(src) == {"k": [1, b"x"]}

    huge = _BytesStream(framing.encode_varint(10_000_000) + b"z" * 5000)
    with pytest.raises(framing.FrameTooLarge):
        await framing.read_frame(huge, max_size=1024)
    assert huge.read_bytes == 4  # only the prefix was read
    with pytest.raises(framing.FrameTooLarge):
        await framing.write_frame(_BytesStream(b""), b"x" * 11, max_size=10)
    with pytest.raises(framing.StreamClosed):
        await framing.read_frame(_BytesStream(framing.encode_varint(10) + b"short"))
    with pytest.raises(DecodeError):
        await framing.read_frame(_BytesStream(b"\xff" * 6))
    with pytest.raises(DecodeError):
        await framing.read_frame(_BytesStream(b"\x80\x00"))  # non-minimal length


async def test_framing_times_out_on_a_peer_that_stalls():
    import pytest

    from bitterbot.node.p2p import framing

    class Stalled(_BytesStream):
        async def read(self, n=None):
            await trio.sleep_forever()

    with pytest.raises(framing.FrameTimeout):
        await framing.read_frame(Stalled(b""), timeout=0.2)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_framing_never_fails_on_arbitrary_bytes_with_a_foreign_error(data):
    from bitterbot.node.p2p import framing

    async def read():
        try:
            return await framing.read_message(_BytesStream(data), max_size=32, timeout=1)
        except BitterbotError:
            return None

    trio.run(read)


async def test_denied_addresses_are_refused_until_allowed_again(p2p_factory, wait_until, dial_addr):
    import pytest

    a, b = await p2p_factory("a"), await p2p_factory("b")
    await a.connect(dial_addr(b))
    a.deny_ips(["127.0.0.1"])
    await a.disconnect(b.peer_id)
    await wait_until(lambda: b.peer_id not in a.connected_peers())
    with pytest.raises(NetworkError):
        await a.connect(dial_addr(b))
    a.allow_ips(["127.0.0.1"])
    assert await a.connect(dial_addr(b)) == b.peer_id
    key = b"\x01" * 32
    assert not a.has_local_providers(key)
    with contextlib.suppress(NetworkError):  # announced to b, or kept locally only
        await a.provide(key)
    assert a.has_local_providers(key)


async def test_provider_records_held_for_others_survive_a_restart(p2p_factory, wait_until):
    holder = await p2p_factory("holder")
    provider = await p2p_factory("provider", seeds=[holder])
    await wait_until(lambda: provider.routing_table_size() >= 1)
    key = b"\x07" * 32
    await provider.provide(key)
    await wait_until(lambda: holder.has_local_providers(key))
    await holder.stop()  # writes what it holds (it is also written every second)
    again = await p2p_factory("holder")  # same home and database, a new host
    assert again.has_local_providers(key)  # before the provider announces anything again
    (record,) = again._dht.provider_store.get_providers(key)
    assert record.peer_id.to_base58() == provider.peer_id


async def test_expired_provider_rows_are_pruned_while_the_node_runs(
    p2p_factory, wait_until, monkeypatch
):
    from libp2p.peer.id import ID

    from bitterbot.node.p2p import dht

    monkeypatch.setattr(dht, "PROVIDER_PRUNE_S", 0.5)
    holder = await p2p_factory("holder")
    other = await p2p_factory("other")
    peer = ID.from_base58(other.peer_id).to_bytes()
    now_ms = int(time.time() * 1000)
    rows = {
        b"\x04old!" + peer: {"addrs": [], "ts": now_ms - int(dht.PROVIDER_TTL_S * 1000) - 1},
        b"\x04new!" + peer: {"addrs": [], "ts": now_ms},
        b"\x09garbled": {"ts": "yesterday"},
    }
    store = holder._store
    store.transact(lambda txn: [txn.put(dht.PROVIDERS_DB, k, v) for k, v in rows.items()])

    def keys() -> set[bytes]:
        with store.read() as txn:
            return {bytes(k) for k, _ in txn.items(dht.PROVIDERS_DB)}

    await wait_until(lambda: keys() == {b"\x04new!" + peer}, timeout=10)
    assert dht.prune_provider_rows(store, time.time()) == 0  # nothing left to prune
    assert dht.prune_provider_rows(store, time.time() + dht.PROVIDER_TTL_S) == 1
