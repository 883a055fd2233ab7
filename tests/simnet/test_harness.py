"""The harness on real nodes: worker processes, joins, kill/restart, partitions, crashes."""

from __future__ import annotations

import pytest
import trio

from bitterbot.simnet.errors import WorkerError
from bitterbot.simnet.faults import deny_lists
from bitterbot.simnet.harness import SimNetwork, node_ip, node_seed

pytestmark = pytest.mark.timeout(180)


def test_node_addresses_and_identities_are_distinct_and_reproducible():
    ips = {node_ip(i) for i in range(1000)}
    assert len(ips) == 1000 and all(ip.startswith("127.") for ip in ips)
    assert node_seed(1, 5) == node_seed(1, 5)
    assert node_seed(1, 5) != node_seed(2, 5) != node_seed(1, 6)


async def test_nodes_in_two_workers_join_survive_restart_and_obey_partitions(tmp_path):
    net = SimNetwork(tmp_path, 6, seed=3, seeds=2, nodes_per_worker=3, join_batch=2)
    async with net.running():
        assert len(net.workers) == 2
        await net.start_all()
        assert net.alive() == list(range(6))
        pids = {r["pid"] for r in await net.resources()}
        assert len(pids) == 2  # really two processes
        for i in range(6):
            status = await net.status(i)
            assert status["peer_id"] == net.nodes[i].peer_id
            assert status["connected_peers"], f"node {i} joined nobody"
            assert net.nodes[i].addrs[0].startswith(f"/ip4/{node_ip(i)}/tcp/")

        # kill and restart: same identity (home kept), same port, back in the network
        victim = 5
        old_id, old_port = net.nodes[victim].peer_id, net.nodes[victim].port
        await net.kill(victim)
        assert victim not in net.alive()
        # like kill -9: every peer sees the connections end (no half-open sockets linger)
        with trio.fail_after(5):
            while any([old_id in await net.call(i, "connected") for i in range(5)]):
                await trio.sleep(0.1)
        with pytest.raises(WorkerError, match="not running"):
            await net.status(victim)
        await net.start_node(victim)
        assert net.nodes[victim].peer_id == old_id
        assert net.nodes[victim].port == old_port
        assert (await net.status(victim))["connected_peers"]

        # partition {0,2,4} | {1,3,5}: no connections cross, a record on one side stays there
        groups = [[0, 2, 4], [1, 3, 5]]
        deny = deny_lists(groups)
        for i in range(6):
            await net.call(i, "deny", ips=[net.nodes[o].ip for o in deny[i]])
        for i in range(6):
            connected = set(await net.call(i, "connected"))
            assert not connected & {net.nodes[o].peer_id for o in deny[i]}
        key = b"\x07" * 32
        await net.call(5, "provide", key=key)
        cut = await net.call(2, "find_providers", key=key, timeout=3)
        assert cut["providers"] == []

        # heal: the same lookup now finds the provider across the former cut
        for i in range(6):
            await net.call(i, "allow")
        with trio.fail_after(30):
            while True:
                healed = await net.call(4, "find_providers", key=key, timeout=3)
                if healed["providers"]:
                    break
                await trio.sleep(0.5)
        assert healed["providers"] == [net.nodes[5].peer_id]
        assert not healed["local"]
        kills = [e for e in net.log if e["event"] == "kill"]
        assert [e["node"] for e in kills] == [victim]


async def test_a_crashed_worker_is_reported_with_its_log(tmp_path):
    net = SimNetwork(tmp_path, 2, seeds=1, nodes_per_worker=2)
    async with net.running():
        worker = net.workers[0]
        assert worker.proc is not None
        worker.proc.kill()
        with pytest.raises(WorkerError, match="died"):
            await worker.call("hello", timeout_s=10)


async def test_unknown_operations_and_actions_are_refused(tmp_path):
    net = SimNetwork(tmp_path, 1, seeds=1)
    async with net.running():
        with pytest.raises(WorkerError, match="unknown simnet operation"):
            await net.workers[0].call("teleport")
        await net.start_node(0)
        with pytest.raises(WorkerError, match="no action"):
            await net.call(0, "teleport")
        with pytest.raises(WorkerError, match="keys are 1-64 bytes"):
            await net.call(0, "provide", key=b"")
