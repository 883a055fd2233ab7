"""Fault plans (churn, partitions) and the loopback latency shim on real TCP sockets."""

from __future__ import annotations

import random

import pytest
import trio

from bitterbot.simnet.faults import (
    RTO_MS,
    LatencyShim,
    churn_plan,
    deny_lists,
    down_after,
    partition_groups,
)


def _down_at_each_tick(events):
    down: set[int] = set()
    by_tick: dict[float, int] = {}
    for event in events:
        if event.action == "kill":
            down.add(event.node)
        else:
            assert event.node in down, "a node restarted that was not down"
            down.discard(event.node)
        by_tick[event.at_s] = len(down)
    return by_tick


def test_churn_keeps_the_target_share_down_at_every_tick():
    nodes = list(range(3, 33))  # 30 churnable nodes
    events = churn_plan(random.Random(7), nodes, down_fraction=0.3, interval_s=2.0, duration_s=30.0)
    per_tick = _down_at_each_tick(events)
    assert len(per_tick) == 15
    assert set(per_tick.values()) == {9}  # 30% of 30 after every tick
    assert {e.node for e in events} <= set(nodes)
    assert any(e.action == "restart" for e in events)


def test_churn_rotates_membership_instead_of_killing_the_same_nodes():
    events = churn_plan(
        random.Random(1), list(range(20)), down_fraction=0.3, interval_s=1.0, duration_s=20.0
    )
    killed = {e.node for e in events if e.action == "kill"}
    assert len(killed) > 12


def test_churn_plan_is_deterministic_for_a_seed():
    def plan(seed):
        return churn_plan(
            random.Random(seed), list(range(10)), down_fraction=0.3, interval_s=1, duration_s=9
        )

    assert plan(3) == plan(3)
    assert plan(3) != plan(4)


def test_churn_with_no_fraction_does_nothing_and_rejects_nonsense():
    assert churn_plan(random.Random(1), [1, 2], down_fraction=0.0, interval_s=1, duration_s=5) == []
    with pytest.raises(ValueError):
        churn_plan(random.Random(1), [1], down_fraction=1.0, interval_s=1, duration_s=5)
    with pytest.raises(ValueError):
        churn_plan(random.Random(1), [1], down_fraction=0.5, interval_s=0, duration_s=5)


def test_down_after_replays_events():
    events = churn_plan(
        random.Random(2), list(range(10)), down_fraction=0.2, interval_s=1, duration_s=3
    )
    assert len(down_after(events)) == 2


def test_partition_groups_cover_every_node_once_and_deny_lists_are_symmetric():
    groups = partition_groups(random.Random(5), list(range(11)), 3)
    flat = [n for g in groups for n in g]
    assert sorted(flat) == list(range(11))
    assert max(map(len, groups)) - min(map(len, groups)) <= 1
    deny = deny_lists(groups)
    for a, others in deny.items():
        for b in others:
            assert a in deny[b]
        same = next(g for g in groups if a in g)
        assert not set(same) & set(others)
    with pytest.raises(ValueError):
        partition_groups(random.Random(1), [1, 2], 1)


async def _echo_round_trip_ms(shim: LatencyShim) -> float:
    """One write through libp2p's TrioTCPStream over a real loopback TCP connection."""
    from libp2p.io.trio import TrioTCPStream

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        received = trio.Event()

        async def serve(stream: trio.SocketStream) -> None:
            await stream.receive_some(16)
            received.set()

        nursery.start_soon(trio.serve_listeners, serve, listeners)
        client = TrioTCPStream(await trio.open_tcp_stream("127.0.0.1", port))
        started = trio.current_time()
        await client.write(b"ping")
        await received.wait()
        elapsed = (trio.current_time() - started) * 1000
        await client.close()
        nursery.cancel_scope.cancel()
    return elapsed


async def test_latency_shim_delays_real_tcp_writes_and_uninstalls():
    shim = LatencyShim()
    try:
        baseline = await _echo_round_trip_ms(shim)
        shim.configure(delay_ms=80, loss=0.0, seed=1)
        delayed = await _echo_round_trip_ms(shim)
        assert delayed >= 80
        assert delayed > baseline
        assert shim.writes_delayed >= 1
    finally:
        shim.uninstall()
    assert await _echo_round_trip_ms(LatencyShim()) < 80


async def test_latency_shim_loss_costs_one_retransmission_timeout():
    shim = LatencyShim()
    try:
        shim.configure(delay_ms=0, loss=0.999, seed=1)
        assert await _echo_round_trip_ms(shim) >= RTO_MS
        assert shim.writes_lost >= 1
    finally:
        shim.uninstall()
    with pytest.raises(ValueError):
        LatencyShim().configure(delay_ms=-1, loss=0, seed=1)
