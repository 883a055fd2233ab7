"""Fault plans: churn schedules, partitions, and the loopback latency/loss shim.

Plans are computed up front from the scenario's random seed, so a run is reproducible
event for event: the same seed kills the same nodes at the same offsets. Applying a plan is
the harness's job; this module only decides *what* happens *when*.

Latency and loss on loopback: real packet delay needs ``tc netem`` in a network namespace
(deploy/testnet.sh does that when the kernel has it). Inside simnet, :class:`LatencyShim`
delays every write of libp2p's TCP streams in a worker process. A lost segment on a real
TCP connection shows up to the application as one retransmission timeout of extra delay,
so "loss" is emulated as an added :data:`RTO_MS` on that fraction of writes. The shim
serializes writes per connection, so it also caps throughput: use it for small-message
protocols (DHT, gossip), not for transfer benchmarks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import trio

RTO_MS = 200.0  # Linux's minimum TCP retransmission timeout


@dataclass(frozen=True)
class ChurnEvent:
    at_s: float
    action: str  # "kill" or "restart"
    node: int


def churn_plan(
    rng: random.Random,
    eligible: list[int],
    *,
    down_fraction: float,
    interval_s: float,
    duration_s: float,
) -> list[ChurnEvent]:
    """Kill/restart events keeping ``down_fraction`` of ``eligible`` nodes down at every tick.

    At each tick (every ``interval_s``) half of the nodes that are down (at least one) come
    back with their homes, and random live nodes are killed until the target share is down
    again, so membership keeps rotating instead of the same nodes staying dead.
    """
    if not 0.0 <= down_fraction < 1.0:
        raise ValueError(f"down_fraction must be in [0, 1), got {down_fraction}")
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    target = round(down_fraction * len(eligible))
    down: list[int] = []
    events: list[ChurnEvent] = []
    tick = 1
    while tick * interval_s <= duration_s:
        at = tick * interval_s
        if down:
            back = rng.sample(sorted(down), max(1, len(down) // 2))
            for node in back:
                down.remove(node)
                events.append(ChurnEvent(at, "restart", node))
        up = sorted(set(eligible) - set(down))
        victims = rng.sample(up, max(0, min(len(up), target - len(down))))
        for node in victims:
            down.append(node)
            events.append(ChurnEvent(at, "kill", node))
        tick += 1
    return events


def down_after(events: list[ChurnEvent]) -> set[int]:
    """Nodes still down once every event of ``events`` has been applied."""
    down: set[int] = set()
    for event in events:
        if event.action == "kill":
            down.add(event.node)
        else:
            down.discard(event.node)
    return down


def partition_groups(rng: random.Random, nodes: list[int], groups: int) -> list[list[int]]:
    """Split ``nodes`` into ``groups`` shuffled groups of near-equal size."""
    if groups < 2:
        raise ValueError("a partition needs at least 2 groups")
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    return [sorted(shuffled[i::groups]) for i in range(groups)]


def deny_lists(groups: list[list[int]]) -> dict[int, list[int]]:
    """For each node, the nodes it must not talk to: everyone outside its group."""
    out: dict[int, list[int]] = {}
    for i, group in enumerate(groups):
        others = [n for j, g in enumerate(groups) if j != i for n in g]
        for node in group:
            out[node] = others
    return out


class LatencyShim:
    """Delays writes of libp2p TCP streams in this process (see the module docstring)."""

    def __init__(self) -> None:
        self.delay_ms = 0.0
        self.loss = 0.0
        self._rng = random.Random(0)
        self._original: Any = None
        self.writes_delayed = 0
        self.writes_lost = 0

    def configure(self, delay_ms: float, loss: float, seed: int) -> None:
        if delay_ms < 0 or not 0.0 <= loss < 1.0:
            raise ValueError("delay_ms must be >= 0 and loss in [0, 1)")
        self.delay_ms = float(delay_ms)
        self.loss = float(loss)
        self._rng = random.Random(seed)
        if (self.delay_ms or self.loss) and self._original is None:
            self._install()

    def _install(self) -> None:
        from libp2p.io.trio import TrioTCPStream

        original = TrioTCPStream.write
        shim = self

        async def delayed_write(stream: Any, data: bytes) -> None:
            delay = shim.delay_ms
            if shim.loss and shim._rng.random() < shim.loss:
                delay += RTO_MS
                shim.writes_lost += 1
            if delay:
                shim.writes_delayed += 1
                await trio.sleep(delay / 1000.0)
            await original(stream, data)

        TrioTCPStream.write = delayed_write  # type: ignore[method-assign,assignment]
        self._original = original

    def uninstall(self) -> None:
        if self._original is not None:
            from libp2p.io.trio import TrioTCPStream

            TrioTCPStream.write = self._original  # type: ignore[method-assign]
            self._original = None
