"""Reputation gossip: how fast an attestation reaches every node, and late-joiner catch-up.

1. Start the network with node/rep/service.py on every node; wait until every node's
   gossipsub mesh for the topic is full (``mesh_formed_s``; ``mesh_settle_s`` is the limit),
   then until the joining work has died down (``join_work_settled_s``): on one machine, a
   round measured while fifty nodes still walk their routing tables measures the CPU queue.
2. ``rounds`` times: a random node makes a rating. Every other live node is woken each
   time attestations enter its ledger and graph, and checks for it; delivery time is the
   wall clock when a node holds it minus when the origin stored it (one machine, one clock).
3. ``late_nodes`` nodes start only after the rounds; they must catch up through the repsync
   protocol (they were offline while it was gossiped), and the time they take is reported.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import trio

from bitterbot.simnet.harness import SimNetwork
from bitterbot.simnet.runners import RunResult
from bitterbot.simnet.scenarios import Scenario
from bitterbot.simnet.stats import percentile, rounded

MESH_LOW = 4  # gossipsub's D_low in node/p2p/host.py
QUIET_CPU_CORES = 0.5  # all nodes together, below this (twice running) joining is over

DEFAULTS: dict[str, Any] = {
    "rounds": 5,
    "round_timeout_s": 10.0,
    "pause_s": 1.0,
    "late_nodes": 1,
    "sync_interval_s": 60.0,
    "mesh_settle_s": 30.0,
    "quiet_limit_s": 60.0,
}


async def run(scenario: Scenario, run_dir: Path) -> RunResult:
    rng = random.Random(scenario.seed)
    work = scenario.section("workload")
    net_cfg = scenario.section("network")
    options = {"reputation": True, "rep_sync_interval_s": float(work["sync_interval_s"])}
    network = SimNetwork.from_section(net_cfg, run_dir, scenario.seed, options)
    timeout = float(work["round_timeout_s"])
    n_late = max(0, min(int(work["late_nodes"]), scenario.nodes - network.n_seeds - 2))
    late = list(range(scenario.nodes - n_late, scenario.nodes))

    async with network.running() as net:
        join_s = await net.start_all([i for i in range(scenario.nodes) if i not in late])
        await trio.sleep(float(net_cfg["settle_s"]))
        mesh_s = await _wait_for_meshes(net, float(work["mesh_settle_s"]))
        quiet_s, background = await _wait_for_quiet(net, float(work["quiet_limit_s"]))

        rounds: list[dict[str, Any]] = []
        made: list[tuple[bytes, int]] = []
        for r in range(int(work["rounds"])):
            origin = rng.choice(net.alive())
            origin_key = await net.call(origin, "rep_attester")
            seq = int(await net.call(origin, "rep_head", attester=origin_key)) + 1
            watchers = [i for i in net.alive() if i != origin]
            held: dict[int, dict[str, Any]] = {}
            meshes = [await net.call(i, "rep_mesh") for i in net.alive()]

            async def watch(
                index: int, key: bytes = origin_key, want: int = seq, out: dict[int, Any] = held
            ) -> None:
                out[index] = await net.call(
                    index,
                    "wait_for",
                    timeout_s=timeout + 30,
                    attester=key,
                    seq=want,
                    timeout=timeout,
                )

            async with trio.open_nursery() as nursery:
                for index in watchers:
                    nursery.start_soon(watch, index)
                await trio.sleep(0.3)  # every watcher is polling before the rating exists
                created = await net.call(origin, "attest", kind="rate", skill=f"sim-{r}", stars=5)
            delays = [(h["wall"] - created["wall"]) * 1000 for h in held.values() if h["held"]]
            rounds.append(
                {
                    "round": r,
                    "origin": origin,
                    "nodes": len(watchers),
                    "held": len(delays),
                    "within_1s": sum(1 for d in delays if d <= 1000),
                    "delays_ms": delays,
                    "full_coverage_ms": max(delays) if len(delays) == len(watchers) else None,
                    "mesh_min": min(m["mesh"] for m in meshes),
                    "mesh_zero": sum(1 for m in meshes if m["mesh"] == 0),
                    "connected_min": min(m["connected"] for m in meshes),
                }
            )
            made.append((origin_key, seq))
            net.note("attestation", round=r, origin=origin)
            await trio.sleep(float(work["pause_s"]))

        catch_up: list[float] = []
        if late:
            started = trio.current_time()
            await net.start_all(late)

            async def catch(index: int) -> None:
                for key, seq in made:
                    done = await net.call(
                        index,
                        "wait_for",
                        timeout_s=timeout * 4 + 30,
                        attester=key,
                        seq=seq,
                        timeout=timeout * 4,
                    )
                    if not done["held"]:
                        return
                catch_up.append(trio.current_time() - started)

            async with trio.open_nursery() as nursery:
                for index in late:
                    nursery.start_soon(catch, index)
        resources = await net.resources()
        events = list(net.log)

    delays = [d for r in rounds for d in r["delays_ms"]]
    coverage = [r["within_1s"] / r["nodes"] for r in rounds if r["nodes"]]
    full = [r["full_coverage_ms"] for r in rounds]
    metrics: dict[str, Any] = {
        "nodes": scenario.nodes,
        "workers": len(resources),
        "join_time_s": round(join_s, 2),
        "mesh_formed_s": rounded(mesh_s, 2) if mesh_s is not None else None,
        "join_work_settled_s": rounded(quiet_s, 2) if quiet_s is not None else None,
        "background_cpu_cores_at_rounds": rounded(background, 2),
        "rounds": len(rounds),
        "attestation_coverage_at_1s": rounded(sum(coverage) / len(coverage), 4)
        if coverage
        else None,
        "attestation_coverage_at_1s_worst_round": rounded(min(coverage), 4) if coverage else None,
        "attestation_coverage_final": rounded(
            sum(r["held"] for r in rounds) / max(1, sum(r["nodes"] for r in rounds)), 4
        ),
        "rounds_fully_covered_within_1s": sum(1 for f in full if f is not None and f <= 1000),
        "time_to_full_coverage_p50_ms": rounded(percentile([f for f in full if f is not None], 50)),
        "time_to_full_coverage_max_ms": rounded(max(f for f in full if f is not None))
        if any(f is not None for f in full)
        else None,
        "delivery_latency_p50_ms": rounded(percentile(delays, 50)),
        "delivery_latency_p95_ms": rounded(percentile(delays, 95)),
        "late_nodes": len(late),
        "late_nodes_caught_up": len(catch_up),
        "late_node_catch_up_max_s": rounded(max(catch_up), 2) if catch_up else None,
        "worker_max_rss_mb": max(r["max_rss_mb"] for r in resources),
        "worker_cpu_s_total": round(sum(r["cpu_s"] for r in resources), 1),
    }
    notes = [
        f"round {r['round']} from node {r['origin']}: {r['within_1s']}/{r['nodes']} within 1 s, "
        f"{r['held']}/{r['nodes']} within {timeout:g} s; before it, the smallest mesh was "
        f"{r['mesh_min']} peers ({r['mesh_zero']} nodes with none), fewest connections "
        f"{r['connected_min']}"
        for r in rounds
    ] + [
        "Delivery is measured from the moment the origin stored the attestation to the moment "
        "each node's own ledger held it, on one machine's wall clock.",
    ]
    return RunResult(metrics=metrics, series={"delivery_ms": delays}, events=events, notes=notes)


async def _wait_for_meshes(net: SimNetwork, limit_s: float) -> float | None:
    """Wait (at most ``limit_s``) until every live node has a full gossipsub mesh: at least
    ``MESH_LOW`` peers, or every subscriber it knows when fewer. Returns the seconds it
    took, or None if some node's mesh was still short at the limit (then the rounds run
    anyway and the notes show the smallest mesh)."""
    started = trio.current_time()
    with trio.move_on_after(limit_s):
        while True:
            views = [await net.call(i, "rep_mesh") for i in net.alive()]
            if all(v["mesh"] >= min(MESH_LOW, v["topic_peers"]) for v in views):
                return trio.current_time() - started
            await trio.sleep(0.5)
    return None


async def _wait_for_quiet(net: SimNetwork, limit_s: float) -> tuple[float | None, float]:
    """Wait (at most ``limit_s``) until the joining work (routing-table walks, connection
    upkeep, mesh grafts) has died down: the nodes' processes together use less than
    ``QUIET_CPU_CORES`` over two 2-second windows in a row. Returns (seconds waited or None, the
    CPU cores in use when the rounds start)."""
    started = trio.current_time()

    async def cpu() -> float:
        return sum(float(r["cpu_s"]) for r in await net.resources())

    last, cores, quiet = await cpu(), 0.0, 0
    with trio.move_on_after(limit_s):
        while True:
            await trio.sleep(2.0)
            now = await cpu()
            cores, last = (now - last) / 2.0, now
            quiet = quiet + 1 if cores < QUIET_CPU_CORES else 0
            if quiet >= 2:
                return trio.current_time() - started, cores
    return None, cores
