"""The skill market across the network: publish, search, install, run; altered bytes refused.

Cast: ``publishers`` nodes after the seeds each publish a free calculator skill
(``calc-<n>``, tag ``math``), and the last of them also a paid one (``paid-calc-<n>`` at
``paid_price``, sold by that node); the last ``altering_providers`` nodes fetch every free
skill honestly and the paid skill's encrypted package (no license), then serve each with
one byte flipped; ``buyers`` nodes search each skill by name and by tag, then install it
trying the altering providers *first*, verify, install through the skills manager and run
it (``6 * 7`` must give 42), and seed it. Finally the first publisher is killed and one
more node installs its skill from the seeders.

The paid skill goes the way of ``bitterbot skill install NAME --max-price N`` on a real
node, every node running market and payments on one shared TEST MONEY ledger: each buyer
first tries with ``--max-price`` one below the price (refused, nothing paid), then buys
over a payment channel to the seller, downloads the encrypted package (altering provider
first), unlocks, installs and runs it, then buys again (a retry: must not pay twice). The
seller's books must show exactly price x buyers. An altering provider holds the encrypted
package and a decrypted copy leaked by a buyer, but no license: both uses must be refused.

Paid metrics: ``paid_*_rate`` are fractions of buyers (``paid_altered_bytes_refused_rate``:
purchases whose download asked the altering providers first and penalized them, or found
them already banned); ``paid_overpayments`` is what buyers paid the seller beyond one price
per licence received (channel totals); ``seller_revenue_received`` is what the seller's
channels took from the buyers, and ``seller_books_mismatch`` adds its distance to price x
successful buyers to the distance of the seller's sales records (``pay.sold``) from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bitterbot.simnet.errors import ScenarioError, WorkerError
from bitterbot.simnet.harness import SimNetwork
from bitterbot.simnet.runners import RunResult
from bitterbot.simnet.scenarios import Scenario
from bitterbot.simnet.simnode_pay import money_note, payment_options
from bitterbot.simnet.stats import percentile, rate, rounded

DEFAULTS: dict[str, Any] = {
    "publishers": 2,
    "buyers": 3,
    "altering_providers": 1,
    "search_timeout_s": 20.0,
    "paid_price": 250,
    "backend": "ledger",
}
EXPRESSION, EXPECTED = "6 * 7", "= 42"


async def run(scenario: Scenario, run_dir: Path) -> RunResult:
    """The scenario on its payment ``backend``: ``ledger`` (TEST MONEY) or ``cashu`` (a real
    nutshell mint on loopback for the run; the seller then settles its channels at the end,
    ``seller_ecash_settled_sat`` and ``seller_ecash_shortfall_sat``, below one cover unit a
    channel, say what reached its wallet)."""
    backend = str(scenario.section("workload")["backend"])
    with payment_options(backend, run_dir) as pay_options:
        return await _run(scenario, run_dir, {"market": True, **pay_options}, backend)


async def _run(
    scenario: Scenario, run_dir: Path, options: dict[str, Any], backend: str
) -> RunResult:
    work = scenario.section("workload")
    net_cfg = scenario.section("network")
    n = scenario.nodes
    n_pub, n_buy, n_alt = (int(work[k]) for k in ("publishers", "buyers", "altering_providers"))
    n_seeds = int(net_cfg["seeds"])
    price = int(work["paid_price"])
    if n_seeds + n_pub + n_buy + n_alt + 1 > n:
        raise ScenarioError(
            f"{n} nodes cannot hold {n_seeds} seeds, {n_pub} publishers, {n_buy} buyers, "
            f"{n_alt} altering providers and one late buyer",
            hint="raise --nodes",
        )
    if n_pub < 1 or n_buy < 1 or price < 1:
        raise ScenarioError(
            "the market scenario needs a publisher, a buyer and a paid_price of at least 1",
            hint="set publishers, buyers and paid_price in [workload]",
        )
    publishers = list(range(n_seeds, n_seeds + n_pub))
    alterers = list(range(n - n_alt, n))
    buyers = list(range(n_seeds + n_pub, n_seeds + n_pub + n_buy))
    late_buyer = n_seeds + n_pub + n_buy
    seller = publishers[-1]
    network = SimNetwork.from_section(net_cfg, run_dir, scenario.seed, options)
    network.node_options_for = {i: {"market_altering": True} for i in alterers}
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
        paid = await net.call(
            seller, "market_publish", timeout_s=120, name=f"paid-calc-{seller}", price=price
        )
        paid["seller_peer"] = net.nodes[seller].peer_id

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
                "offers": last.get("offers", []),
                "first_try_ms": last.get("ms"),
                "until_found_s": trio.current_time() - started if found else None,
            }

        for a in alterers:
            for name in published:
                await search_until_found(a, name=name)
                await net.call(a, "market_seed_copy", timeout_s=120, name=name)
            await search_until_found(a, name=paid["name"])
            await net.call(a, "market_seed_paid_blob", timeout_s=120, name=paid["name"])
        bad_peers = [net.nodes[a].peer_id for a in alterers]

        installs: list[dict[str, Any]] = []
        purchases: list[dict[str, Any]] = []

        async def buyer(b: int) -> None:
            for name in published:
                searches.append({"by": "name", **await search_until_found(b, name=name)})
            searches.append({"by": "tag", **await search_until_found(b, tag="math")})
            # the paid skill first: the altering provider is not yet banned, so it is asked
            purchases.append(await _buy(net, b, paid, bad_peers, search_until_found, timeout))
            for name in published:
                installs.append(await _install(net, b, name, bad_peers, published, timeout))

        async with trio.open_nursery() as nursery:
            for b in buyers:
                nursery.start_soon(buyer, b)

        # the seller's books and what each buyer paid it, then a node without a license
        books = await net.call(seller, "sales")
        received = await net.call(seller, "received")
        ecash = await net.call(seller, "settle_all", timeout_s=300) if backend == "cashu" else {}
        buyer_peers = {net.nodes[b].peer_id for b in buyers}
        paid_by = {b: await net.call(b, "paid_to", peer=paid["seller_peer"]) for b in buyers}
        leaked = next((p["path"] for p in purchases if p["ok"]), None)
        unlicensed: list[dict[str, Any]] = []
        if alterers and leaked is not None:
            unlicensed = await net.call(
                alterers[0],
                "market_run_unlicensed",
                timeout_s=120,
                name=paid["name"],
                leaked_path=leaked,
                expression=EXPRESSION,
            )

        # the publisher goes away; its skill must still install from the seeding buyers
        lost = f"calc-{publishers[0]}"
        await net.kill(publishers[0])
        await search_until_found(late_buyer, name=lost)
        after_loss = await _install(net, late_buyer, lost, bad_peers, published, timeout)
        events = list(net.log)

    ok = [i for i in installs if i["ok"]]
    altered = [i for i in installs + [after_loss] if i.get("altered")]
    name_found = [s for s in searches if s["by"] == "name"]
    tag_found = [s for s in searches if s["by"] == "tag"]
    metrics: dict[str, Any] = {
        "nodes": n,
        "packages_published": len(published) + 1,
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
        "seed_failures": sum(1 for i in installs if i["ok"] and not i["seeded"]),
        **_paid_metrics(price, purchases, books, received, buyer_peers, paid_by, unlicensed),
    }
    notes = [
        *[
            f"install failed: node {i['node']} {i['name']}: {i['error']}"
            for i in installs
            if not i["ok"]
        ][:10],
        *[f"paid install failed: node {p['node']}: {p['error']}" for p in purchases if not p["ok"]],
    ]
    if not after_loss["ok"]:
        notes.append(f"install after publisher loss failed: {after_loss['error']}")
    if ecash:
        metrics["seller_ecash_settled_sat"] = ecash["settled"]
        metrics["seller_ecash_shortfall_sat"] = (
            metrics["seller_revenue_received"] - ecash["settled"]
        )
        metrics["seller_ecash_balance_sat"] = ecash["balance"]
    notes.append(money_note(backend))
    return RunResult(metrics=metrics, events=events, notes=notes)


async def _buy(
    net: SimNetwork,
    node: int,
    paid: dict[str, Any],
    bad_peers: list[str],
    search_until_found: Any,
    search_timeout_s: float,
) -> dict[str, Any]:
    """One buyer and the paid skill: search it, ask below the price, buy, run, buy again."""
    name, price = paid["name"], int(paid["price"])
    found = await search_until_found(node, name=name)
    offer = next((o for o in found["offers"] if o["name"] == name), {})
    shown = offer.get("price") == price and offer.get("seller") == paid["seller_peer"]
    low = await _until_found(
        lambda: net.call(
            node,
            "market_buy_install",
            timeout_s=180,
            name=name,
            max_price=price - 1,
            first_providers=bad_peers,
            expression=EXPRESSION,
        ),
        deadline_s=search_timeout_s,
    )
    got = await _until_found(
        lambda: net.call(
            node,
            "market_buy_install",
            timeout_s=300,
            name=name,
            max_price=price,
            first_providers=bad_peers,
            expression=EXPRESSION,
        ),
        deadline_s=search_timeout_s,
    )
    out: dict[str, Any] = {
        "node": node,
        "found": found["found"],
        "offer_shown": shown,
        "low_refused": not low["ok"] and low.get("code") == "price_not_accepted",
        "low_paid": low["paid"],  # must be 0: refused before anything is paid
        "ok": got["ok"],
        "error": got.get("error", ""),
        "paid": got["paid"],
        "total_ms": got["total_ms"],
    }
    if not got["ok"]:
        return out
    again = await net.call(node, "market_buy_again", timeout_s=180, name=name, max_price=price)
    refused_first = got.get("refused_first") or {}
    out.update(
        path=got["path"],
        ran_ok=got["output"].endswith(EXPECTED),
        altered=got["installed_id"] != paid["plain_id"],
        altered_refused=all(refused_first.get(p, False) for p in bad_peers),
        again_paid=again["paid"],
        again_licensed=again["licensed"],
    )
    return out


def _paid_metrics(
    price: int,
    purchases: list[dict[str, Any]],
    books: dict[str, int],
    received: dict[str, int],
    buyer_peers: set[str],
    paid_by: dict[int, int],
    unlicensed: list[dict[str, Any]],
) -> dict[str, Any]:
    ok = [p for p in purchases if p["ok"]]
    expected = price * len(ok)
    got = sum(v for peer, v in received.items() if peer in buyer_peers)
    # what each buyer paid the seller in all, beyond the one price of the licence it got
    licensed = {p["node"] for p in ok}
    over = sum(
        max(0, total - (price if node in licensed else 0)) for node, total in paid_by.items()
    )
    return {
        "paid_price": price,
        "paid_offer_shows_price_and_seller_rate": rounded(
            rate(sum(p["offer_shown"] for p in purchases), len(purchases)), 4
        ),
        "paid_under_max_price_refused_rate": rounded(
            rate(sum(p["low_refused"] and p["low_paid"] == 0 for p in purchases), len(purchases)),
            4,
        ),
        "paid_installs_attempted": len(purchases),
        "paid_install_success_rate": rounded(rate(len(ok), len(purchases)), 4),
        "paid_skill_runs_correct": sum(1 for p in ok if p["ran_ok"]),
        "paid_altered_installed": sum(1 for p in ok if p["altered"]),
        "paid_altered_bytes_refused_rate": rounded(
            rate(sum(p["altered_refused"] for p in ok), len(ok)), 4
        ),
        "paid_overpayments": over,
        "paid_repeat_buys_charged": sum(1 for p in ok if p["again_paid"] > 0),
        "paid_install_latency_p50_ms": rounded(percentile([p["total_ms"] for p in ok], 50)),
        "seller_revenue_expected": expected,
        "seller_revenue_received": got,
        "seller_licenses_sold": books["licenses"],
        "seller_books_mismatch": abs(got - expected) + abs(books["amount"] - expected),
        "unlicensed_uses_attempted": len(unlicensed),
        # refused for the right reason: no licence (not some other failure)
        "unlicensed_runs_refused_rate": rounded(
            rate(sum(u.get("code") == "license_missing" for u in unlicensed), len(unlicensed)),
            4,
        ),
        "unlicensed_refusal_codes": {u["attempt"]: u.get("code", "") for u in unlicensed},
    }


async def _until_found(call: Callable[[], Awaitable[Any]], deadline_s: float) -> Any:
    """``call()`` again while the network answers "not found", until ``deadline_s``.

    A search that found the skill does not promise that the install's own lookup finds it:
    on a loaded machine a DHT query can time out and come back empty. The wait is on that
    condition, not a fixed sleep; at the deadline the last answer stands (or its error).
    The deadline only stops new attempts: a call under way (a purchase that opens a channel
    and locks a deposit at a mint) runs to its own timeout.
    """
    deadline = trio.current_time() + deadline_s
    while True:
        try:
            last = await call()
        except WorkerError as exc:
            if exc.code != "not_found" or trio.current_time() >= deadline:
                raise
        else:
            not_found = isinstance(last, dict) and last.get("code") == "not_found"
            if not not_found or trio.current_time() >= deadline:
                return last
        await trio.sleep(0.5)


async def _install(
    net: SimNetwork,
    node: int,
    name: str,
    bad_peers: list[str],
    published: dict[str, str],
    search_timeout_s: float,
) -> dict[str, Any]:
    try:
        got = await _until_found(
            lambda: net.call(
                node,
                "market_install",
                timeout_s=180,
                name=name,
                first_providers=bad_peers,
                expression=EXPRESSION,
            ),
            deadline_s=search_timeout_s,
        )
    except WorkerError as exc:
        return {"node": node, "name": name, "ok": False, "error": exc.message}
    seeded = True
    try:  # seeding asks the DHT again; on a loaded machine that lookup may come back empty
        await _until_found(
            lambda: net.call(node, "market_seed_copy", timeout_s=120, name=name),
            deadline_s=search_timeout_s,
        )
    except WorkerError:
        seeded = False
    return {
        "node": node,
        "name": name,
        "ok": True,
        "seeded": seeded,
        "altered": got["installed_id"] != published[name],
        "ran_ok": got["output"].endswith(EXPECTED),
        "penalized": any(got["penalties"].get(p, 0) >= 1 for p in bad_peers),
        "total_ms": got["total_ms"],
    }
