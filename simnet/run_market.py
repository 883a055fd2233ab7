"""The skill market across the network: publish, search, install, run; altered bytes refused.

Cast: ``publishers`` nodes after the seeds each publish a calculator skill
(``calc-<n>``, tag ``math``); the last ``altering_providers`` nodes fetch every skill
honestly and then serve it with one byte flipped; ``buyers`` nodes search each skill by
name and by tag, then install it trying the altering providers *first*, verify, install
through the skills manager and run it (``6 * 7`` must give 42), and seed it. Finally the
first publisher is killed and one more node installs its skill from the seeders.

Paid purchases are not part of this scenario: it runs free skills only (the purchase flow
over payment channels is covered by the payments tests and the cheaters scenario).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from bitterbot.simnet.errors import ScenarioError, WorkerError
from bitterbot.simnet.harness import SimNetwork
from bitterbot.simnet.runners import RunResult
from bitterbot.simnet.scenarios import Scenario
from bitterbot.simnet.stats import percentile, rate, rounded

DEFAULTS: dict[str, Any] = {
    "publishers": 2,
    "buyers": 3,
    "altering_providers": 1,
    "search_timeout_s": 20.0,
}
EXPRESSION, EXPECTED = "6 * 7", "= 42"


async def run(scenario: Scenario, run_dir: Path) -> RunResult:
    work = scenario.section("workload")
    net_cfg = scenario.section("network")
    n = scenario.nodes
    n_pub, n_buy, n_alt = (int(work[k]) for k in ("publishers", "buyers", "altering_providers"))
    n_seeds = int(net_cfg["seeds"])
    if n_seeds + n_pub + n_buy + n_alt + 1 > n:
        raise ScenarioError(
            f"{n} nodes cannot hold {n_seeds} seeds, {n_pub} publishers, {n_buy} buyers, "
            f"{n_alt} altering providers and one late buyer",
            hint="raise --nodes",
        )
    publishers = list(range(n_seeds, n_seeds + n_pub))
    alterers = list(range(n - n_alt, n))
    buyers = list(range(n_seeds + n_pub, n_seeds + n_pub + n_buy))
    late_buyer = n_seeds + n_pub + n_buy
    options = {"market": True}
    network = SimNetwork.from_section(net_cfg, run_dir, scenario.seed, options)
    network.node_options_for = {i: {"market": True, "market_altering": True} for i in alterers}
    timeout = float(work["search_timeout_s"])

    async with network.running() as net:
        await net.start_all()
        await trio.sleep(float(net_cfg["settle_s"]))
        published: dict[str, str] = {}
        publish_ms: list[float] = []
        for p in publishers:
            got = await net.call(p, "market_publish", timeout_s=120, name=f"calc-{p}")
            published[got["name"]] = got["package_id"]
            publish_ms.append(got["ms"])

        searches: list[dict[str, Any]] = []

        async def search_until_found(node: int, **query: str) -> dict[str, Any]:
            want = set(published) if "tag" in query else {query["name"]}
            started = trio.current_time()
            last: dict[str, Any] = {}
            with trio.move_on_after(timeout):
                while True:
                    last = await net.call(node, "market_search", timeout_s=timeout + 30, **query)
                    if want <= {o["name"] for o in last["offers"]}:
                        break
                    await trio.sleep(0.5)
            found = want <= {o["name"] for o in last.get("offers", [])}
            return {
                "found": found,
                "first_try_ms": last.get("ms"),
                "until_found_s": trio.current_time() - started if found else None,
            }

        for a in alterers:
            for name in published:
                await search_until_found(a, name=name)
                await net.call(a, "market_seed_copy", timeout_s=120, name=name)
        bad_peers = [net.nodes[a].peer_id for a in alterers]

        installs: list[dict[str, Any]] = []

        async def buyer(b: int) -> None:
            for name in published:
                searches.append({"by": "name", **await search_until_found(b, name=name)})
            searches.append({"by": "tag", **await search_until_found(b, tag="math")})
            for name in published:
                installs.append(await _install(net, b, name, bad_peers, published))

        async with trio.open_nursery() as nursery:
            for b in buyers:
                nursery.start_soon(buyer, b)

        # the publisher goes away; its skill must still install from the seeding buyers
        lost = f"calc-{publishers[0]}"
        await net.kill(publishers[0])
        await search_until_found(late_buyer, name=lost)
        after_loss = await _install(net, late_buyer, lost, bad_peers, published)
        events = list(net.log)

    ok = [i for i in installs if i["ok"]]
    altered = [i for i in installs + [after_loss] if i.get("altered")]
    name_found = [s for s in searches if s["by"] == "name"]
    tag_found = [s for s in searches if s["by"] == "tag"]
    metrics: dict[str, Any] = {
        "nodes": n,
        "packages_published": len(published),
        "publish_latency_p50_ms": rounded(percentile(publish_ms, 50)),
        "search_by_name_success_rate": rounded(
            rate(sum(s["found"] for s in name_found), len(name_found)), 4
        ),
        "search_by_tag_success_rate": rounded(
            rate(sum(s["found"] for s in tag_found), len(tag_found)), 4
        ),
        "search_latency_p50_ms": rounded(
            percentile([s["first_try_ms"] for s in searches if s["first_try_ms"]], 50)
        ),
        "search_latency_p95_ms": rounded(
            percentile([s["first_try_ms"] for s in searches if s["first_try_ms"]], 95)
        ),
        "installs_attempted": len(installs),
        "install_success_rate": rounded(rate(len(ok), len(installs)), 4),
        "altered_packages_installed": len(altered),
        "skill_runs_correct": sum(1 for i in ok if i["ran_ok"]),
        "altering_provider_penalized_rate": rounded(
            rate(sum(1 for i in ok if i["penalized"]), len(ok)), 4
        ),
        "install_latency_p50_ms": rounded(percentile([i["total_ms"] for i in ok], 50)),
        "install_latency_p95_ms": rounded(percentile([i["total_ms"] for i in ok], 95)),
        "install_after_publisher_loss": bool(after_loss["ok"] and after_loss["ran_ok"]),
    }
    notes = [
        "Free skills only: paid purchase across the network is not part of this scenario.",
        *[
            f"install failed: node {i['node']} {i['name']}: {i['error']}"
            for i in installs
            if not i["ok"]
        ][:10],
    ]
    if not after_loss["ok"]:
        notes.append(f"install after publisher loss failed: {after_loss['error']}")
    return RunResult(metrics=metrics, events=events, notes=notes)


async def _install(
    net: SimNetwork, node: int, name: str, bad_peers: list[str], published: dict[str, str]
) -> dict[str, Any]:
    try:
        got = await net.call(
            node,
            "market_install",
            timeout_s=180,
            name=name,
            first_providers=bad_peers,
            expression=EXPRESSION,
        )
    except WorkerError as exc:
        return {"node": node, "name": name, "ok": False, "error": exc.message}
    await net.call(node, "market_seed_copy", timeout_s=120, name=name)
    return {
        "node": node,
        "name": name,
        "ok": True,
        "altered": got["installed_id"] != published[name],
        "ran_ok": got["output"].endswith(EXPECTED),
        "penalized": any(got["penalties"].get(p, 0) >= 1 for p in bad_peers),
        "total_ms": got["total_ms"],
    }
