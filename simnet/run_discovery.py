"""Discovery under churn and partitions: DHT provider records, found from everywhere.

1. Start the network (seeds first, then batches) and let routing tables settle.
2. Each of ``keys`` keys is provided by ``providers_per_key`` random non-seed nodes. With
   Kademlia's k = 20, a network of 20 nodes or fewer stores every record on every node;
   ``late_nodes`` nodes join only after the announcements, so they have to ask the network.
3. For ``duration_s``, lookups start at ``lookups_per_s`` (at most ``concurrency`` at a
   time): each (node, key) pair at most once, in seeded random order, from a live node
   that is not a provider of the key, asking the DHT for providers (``count=1``). A node
   that already holds the record (it is among the closest nodes the provider announced
   to) answers locally; those are counted in ``lookups_answered_locally`` and kept out
   of the latency percentiles, which describe lookups that crossed the network. Meanwhile the
   churn plan kills and restarts nodes (homes kept; a restarted provider announces its keys
   again, as a real node re-announces on start) and the partition plan cuts and heals.
4. A lookup succeeds when it returns a real provider of that key within the timeout. A
   lookup whose own node was killed mid-way is counted apart (aborted), not as a failure.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import trio

from bitterbot.simnet.errors import WorkerError
from bitterbot.simnet.faults import churn_plan, deny_lists, partition_groups
from bitterbot.simnet.harness import SimNetwork
from bitterbot.simnet.runners import RunResult
from bitterbot.simnet.scenarios import Scenario
from bitterbot.simnet.stats import percentile, rate, rounded

PROVIDE_ATTEMPTS = 3

DEFAULTS: dict[str, Any] = {
    "keys": 5,
    "providers_per_key": 2,
    "duration_s": 10.0,
    "concurrency": 4,
    "lookup_timeout_s": 5.0,
    "lookups": 0,  # 0: every (node, key) pair once, as far as duration_s allows
    "lookups_per_s": 0.0,  # 0: spread the lookups evenly over duration_s
    "provide_concurrency": 3,
    "late_nodes": 0,  # started after the announcements, so they hold no record yet
}


def key_of(seed: int, k: int) -> bytes:
    return hashlib.sha256(f"bitterbot-simnet/{seed}/key/{k}".encode()).digest()


async def run(scenario: Scenario, run_dir: Path) -> RunResult:
    rng = random.Random(scenario.seed)
    work = scenario.section("workload")
    churn = scenario.section("churn")
    part = scenario.section("partition")
    net_cfg = scenario.section("network")
    duration = float(work["duration_s"])

    network = SimNetwork.from_section(net_cfg, run_dir, scenario.seed)
    async with network.running() as net:
        if net_cfg["delay_ms"] or net_cfg["loss"]:
            await net.set_shim(float(net_cfg["delay_ms"]), float(net_cfg["loss"]))
        n_late = min(int(work["late_nodes"]), len(net.nodes) - net.n_seeds - 1)
        late = [n.index for n in net.nodes][len(net.nodes) - max(0, n_late) :]
        join_s = await net.start_all([n.index for n in net.nodes if n.index not in late])
        await trio.sleep(float(net_cfg["settle_s"]))

        candidates = [i for i in net.alive() if i >= net.n_seeds] or net.alive()
        per_key = min(int(work["providers_per_key"]), len(candidates))
        keys = [key_of(scenario.seed, k) for k in range(int(work["keys"]))]
        providers: dict[bytes, set[str]] = {}
        provided_by: dict[int, list[bytes]] = {}
        for key in keys:
            chosen = rng.sample(candidates, per_key)
            providers[key] = {net.nodes[i].peer_id for i in chosen}
            for i in chosen:
                provided_by.setdefault(i, []).append(key)
        provide_started = trio.current_time()
        # py-libp2p nodes serve about 12 inbound DHT streams at once and reset the rest, so
        # many concurrent announcements make each other fail and retry.
        limiter = trio.CapacityLimiter(int(work["provide_concurrency"]))

        provide_failures: list[str] = []

        async def provide(index: int, key: bytes) -> None:
            """Announce, retrying like a node's re-announce would; count what never got out."""
            async with limiter:
                for attempt in range(PROVIDE_ATTEMPTS):
                    try:
                        await net.call(index, "provide", key=key)
                        return
                    except WorkerError as exc:
                        if attempt == PROVIDE_ATTEMPTS - 1:
                            provide_failures.append(f"node {index}: {exc.message}")
                            return
                        await trio.sleep(1.0 + attempt)

        async with trio.open_nursery() as nursery:
            for index, its_keys in provided_by.items():
                for key in its_keys:
                    nursery.start_soon(provide, index, key)
        provide_s = trio.current_time() - provide_started
        if late:  # nodes that never saw the announcements: their lookups cross the network
            join_s += await net.start_all(late)
            await trio.sleep(float(net_cfg["settle_s"]))
        statuses = [await net.status(i) for i in net.alive()]
        tables = [int(st.get("routing_table_size", 0)) for st in statuses]
        isolated = sum(1 for st in statuses if not st.get("connected_peers"))

        plan = []
        if float(churn["down_fraction"]) > 0:
            plan = churn_plan(
                rng,
                [n.index for n in net.nodes if n.index >= net.n_seeds],
                down_fraction=float(churn["down_fraction"]),
                interval_s=float(churn["interval_s"]),
                duration_s=duration * 0.9,
            )
        samples: list[dict[str, Any]] = []
        aborted = 0
        limit = int(work["lookups"]) or None
        phase_start = net.now()

        reprovide_failures = 0

        async def restart(index: int, background: trio.Nursery) -> None:
            await net.start_node(index)
            if part_state["cut"] and index in part_state["deny"]:
                await _deny(net, index, part_state["deny"][index])
            background.start_soon(reprovide, index)

        async def reprovide(index: int) -> None:
            """A restarted provider announces its keys again, as a real node does on start."""
            nonlocal reprovide_failures
            for key in provided_by.get(index, []):
                try:
                    await net.call(index, "provide", key=key)
                except WorkerError:
                    reprovide_failures += 1  # killed again, or partitioned from everyone

        async def apply_churn(background: trio.Nursery) -> None:
            ticks = sorted({e.at_s for e in plan})
            for at in ticks:
                await trio.sleep_until(net.t0 + phase_start + at)
                now = [e for e in plan if e.at_s == at]
                async with trio.open_nursery() as nursery:
                    for event in now:
                        if event.action == "restart":
                            nursery.start_soon(restart, event.node, background)
                async with trio.open_nursery() as nursery:
                    for event in now:
                        if event.action == "kill":
                            nursery.start_soon(net.kill, event.node)

        part_state: dict[str, Any] = {"cut": False, "deny": {}}

        async def apply_partition() -> None:
            groups = int(part["groups"])
            if groups < 2:
                return
            await trio.sleep_until(net.t0 + phase_start + float(part["at_s"]))
            deny = deny_lists(partition_groups(rng, [n.index for n in net.nodes], groups))
            part_state.update(cut=True, deny=deny)
            net.note("partition", groups=groups)
            async with trio.open_nursery() as nursery:
                for index in net.alive():
                    nursery.start_soon(_deny, net, index, deny[index])
            net.note("partition_applied")
            if float(part["heal_s"]) > float(part["at_s"]):
                await trio.sleep_until(net.t0 + phase_start + float(part["heal_s"]))
                part_state["cut"] = False
                net.note("heal")
                async with trio.open_nursery() as nursery:
                    for index in net.alive():
                        nursery.start_soon(_allow, net, index)

        # Each (origin, key) pair is looked up once: py-libp2p caches providers it found,
        # so a second lookup of the same key from the same node never touches the network.
        pairs = [
            (origin, k)
            for origin in range(len(net.nodes))
            for k in range(len(keys))
            if net.nodes[origin].peer_id not in providers[keys[k]]
        ]
        rng.shuffle(pairs)
        if limit is not None:
            pairs = pairs[:limit]
        per_s = float(work["lookups_per_s"]) or len(pairs) / max(duration * 0.95, 0.1)
        interval = 1.0 / max(per_s, 1e-3)
        send_pair, receive_pair = trio.open_memory_channel[tuple[int, int]](0)

        async def produce() -> None:
            async with send_pair:
                queue = list(pairs)
                while queue and net.now() - phase_start < duration:
                    pick = next((p for p in queue if net.nodes[p[0]].alive), None)
                    if pick is None:
                        await trio.sleep(0.1)
                        continue
                    queue.remove(pick)
                    await send_pair.send(pick)
                    await trio.sleep(interval)

        async def lookups() -> None:
            nonlocal aborted
            async for origin, k in receive_pair:
                at = net.now() - phase_start
                try:
                    found = await net.call(
                        origin,
                        "find_providers",
                        timeout_s=float(work["lookup_timeout_s"]) + 30,
                        key=keys[k],
                        timeout=float(work["lookup_timeout_s"]),
                    )
                except WorkerError:
                    if not net.nodes[origin].alive:
                        aborted += 1
                        continue
                    raise
                ok = bool(set(found["providers"]) & providers[keys[k]])
                samples.append(
                    {
                        "at_s": at,
                        "ok": ok,
                        "ms": found["ms"],
                        "local": found["local"],
                        "error": found["error"],
                        "origin": origin,
                        "key": k,
                    }
                )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(apply_churn, nursery)
            nursery.start_soon(apply_partition)
            async with trio.open_nursery() as lanes:
                lanes.start_soon(produce)
                for _ in range(int(work["concurrency"])):
                    lanes.start_soon(lookups)
            nursery.cancel_scope.cancel()
        resources = await net.resources()
        events = [{**e, "phase_s": round(e["at_s"] - phase_start, 3)} for e in net.log]

    oks = [s for s in samples if s["ok"]]
    remote = [s for s in samples if not s["local"]]
    latencies = [s["ms"] for s in oks if not s["local"]]
    errors: dict[str, int] = {}
    for s in samples:
        if not s["ok"]:
            errors[s["error"] or "no_provider"] = errors.get(s["error"] or "no_provider", 0) + 1
    metrics: dict[str, Any] = {
        "nodes": scenario.nodes,
        "workers": len(resources),
        "join_time_s": round(join_s, 2),
        "provide_time_s": round(provide_s, 2),
        "routing_table_size_mean": rounded(sum(tables) / len(tables) if tables else None),
        "routing_table_size_min": min(tables) if tables else None,
        "nodes_isolated_after_join": isolated,
        "provide_failures": len(provide_failures),
        "lookups_total": len(samples),
        "lookups_found": len(oks),
        "lookups_aborted_by_churn": aborted,
        "lookup_success_rate": rounded(rate(len(oks), len(samples)), 4),
        "lookups_answered_locally": len(samples) - len(remote),
        "network_lookup_success_rate": rounded(
            rate(sum(1 for s in remote if s["ok"]), len(remote)), 4
        ),
        "lookup_failures": errors,
        "lookup_latency_p50_ms": rounded(percentile(latencies, 50)),
        "lookup_latency_p95_ms": rounded(percentile(latencies, 95)),
        "churn_down_fraction": float(churn["down_fraction"]),
        "churn_kills": sum(1 for e in plan if e.action == "kill"),
        "reprovide_failures": reprovide_failures,
        "partition_groups": int(part["groups"]),
        "worker_max_rss_mb": max(r["max_rss_mb"] for r in resources),
        "worker_cpu_s_total": round(sum(r["cpu_s"] for r in resources), 1),
    }
    series = {
        "lookup_latency_ms": latencies,
        "lookup_samples": [(s["at_s"], s["ok"]) for s in samples],
        "routing_table_sizes": tables,
        "down_fraction_over_time": _down_over_time(events, scenario.nodes),
    }
    notes = (
        provide_failures[:5]
        + [
            f"failed lookup at {s['at_s']:.1f} s: node {s['origin']} key {s['key']}: "
            f"{s['error'] or 'no provider returned'} after {s['ms']:.0f} ms"
            for s in samples
            if not s["ok"]
        ][:20]
    )
    return RunResult(metrics=metrics, series=series, events=events, notes=notes)


async def _deny(net: SimNetwork, index: int, others: list[int]) -> None:
    await net.call(index, "deny", ips=[net.nodes[o].ip for o in others])


def _down_over_time(events: list[dict[str, Any]], nodes: int) -> list[tuple[float, float]]:
    """(seconds into the workload, fraction of all nodes down) after each kill/restart."""
    down: set[int] = set()
    points: list[tuple[float, float]] = [(0.0, 0.0)]
    for event in events:
        if event["event"] == "kill":
            down.add(event["node"])
        elif event["event"] == "start" and event.get("restart"):
            down.discard(event["node"])
        else:
            continue
        points.append((max(0.0, event["phase_s"]), len(down) / nodes))
    return points


async def _allow(net: SimNetwork, index: int) -> None:
    await net.call(index, "allow")
