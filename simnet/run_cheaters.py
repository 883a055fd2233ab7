"""Cheating payers against honest payees over real payment channels.

Cast: the first ``payees`` nodes sell; the last ``cheaters`` nodes cheat; the rest pay
honestly. Honest payers pay every payee ``payments_per_pair`` random amounts. Each cheater,
``rounds`` times per payee, pays once honestly and then sends every cheating voucher kind
(forgery, over capacity, rollback, stale nonce, unknown channel, replay of the last
accepted voucher). Afterwards every payee's books must show exactly the honest amounts.

``backend``: ``ledger`` (TEST MONEY) or ``cashu`` (a real nutshell mint on loopback; then
each payee also settles at the end, and its wallet must hold what the payers' signatures
cover: ``payee_ecash_settled_sat`` and ``payee_ecash_shortfall_sat``, below one cover unit
per channel).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import trio

from bitterbot.simnet.errors import ScenarioError
from bitterbot.simnet.harness import SimNetwork
from bitterbot.simnet.runners import RunResult
from bitterbot.simnet.scenarios import Scenario
from bitterbot.simnet.simnode_pay import money_note, payment_options
from bitterbot.simnet.stats import percentile, rate, rounded

DEFAULTS: dict[str, Any] = {
    "payees": 2,
    "cheaters": 2,
    "payments_per_pair": 5,
    "rounds": 3,
    "honest_part": 10,
    "backend": "ledger",
}


async def run(scenario: Scenario, run_dir: Path) -> RunResult:
    rng = random.Random(scenario.seed)
    work = scenario.section("workload")
    net_cfg = scenario.section("network")
    n = scenario.nodes
    n_payees, n_cheaters = int(work["payees"]), int(work["cheaters"])
    if n_payees + n_cheaters + 1 > n:
        raise ScenarioError(
            f"{n} nodes cannot hold {n_payees} payees, {n_cheaters} cheaters and an honest payer",
            hint="raise --nodes or lower payees/cheaters",
        )
    payees = list(range(n_payees))
    cheaters = list(range(n - n_cheaters, n))
    honest = [i for i in range(n) if i not in payees and i not in cheaters]
    backend = str(work["backend"])
    with payment_options(backend, run_dir) as options:
        network = SimNetwork.from_section(net_cfg, run_dir, scenario.seed, options)
        return await _run(network, work, net_cfg, n, payees, cheaters, honest, backend, rng)


async def _run(
    network: SimNetwork,
    work: dict[str, Any],
    net_cfg: dict[str, Any],
    n: int,
    payees: list[int],
    cheaters: list[int],
    honest: list[int],
    backend: str,
    rng: random.Random,
) -> RunResult:
    async with network.running() as net:
        await net.start_all()
        await trio.sleep(float(net_cfg["settle_s"]))
        peer = {i: net.nodes[i].peer_id for i in range(n)}
        expected: dict[tuple[int, int], int] = {}
        honest_results: list[dict[str, Any]] = []

        async def pay_all(payer: int) -> None:
            for payee in payees:
                for _ in range(int(work["payments_per_pair"])):
                    amount = rng.randint(1, 100)
                    got = await net.call(payer, "pay", peer=peer[payee], amount=amount)
                    honest_results.append(got)
                    if got["accepted"]:
                        expected[(payer, payee)] = expected.get((payer, payee), 0) + amount

        cheat_results: list[dict[str, Any]] = []

        async def cheat_all(cheater: int) -> None:
            for _ in range(int(work["rounds"])):
                for payee in payees:
                    result = await net.call(
                        cheater, "cheat", peer=peer[payee], honest=int(work["honest_part"])
                    )
                    cheat_results.append(result)
                    key = (cheater, payee)
                    expected[key] = expected.get(key, 0) + int(work["honest_part"])

        async with trio.open_nursery() as nursery:
            for payer in honest:
                nursery.start_soon(pay_all, payer)
            for cheater in cheaters:
                nursery.start_soon(cheat_all, cheater)

        books = {payee: await net.call(payee, "received") for payee in payees}
        ecash = (
            {p: await net.call(p, "settle_all", timeout_s=300) for p in payees}
            if backend == "cashu"
            else {}
        )
        events = list(net.log)

    by_id = {peer[i]: i for i in range(n)}
    booked = {
        (by_id.get(payer_peer, -1), payee): amount
        for payee, received in books.items()
        for payer_peer, amount in received.items()
    }
    mismatches = [
        {"payer": payer, "payee": payee, "booked": booked.get((payer, payee), 0), "honest": want}
        for (payer, payee) in sorted(set(expected) | set(booked))
        if (want := expected.get((payer, payee), 0)) != booked.get((payer, payee), 0)
    ]
    kinds = sorted({k for r in cheat_results for k in r["attempts"]})
    accepted = {k: sum(r["accepted"].get(k, 0) for r in cheat_results) for k in kinds}
    codes: dict[str, list[str]] = {
        k: sorted({r["codes"][k] for r in cheat_results if k in r["codes"]}) for k in kinds
    }
    ok = [r for r in honest_results if r["accepted"]]
    latencies = [r["ms"] for r in ok]
    metrics: dict[str, Any] = {
        "nodes": n,
        "payees": len(payees),
        "honest_payers": len(honest),
        "cheaters": len(cheaters),
        "honest_payments": len(honest_results),
        "honest_payment_acceptance_rate": rounded(rate(len(ok), len(honest_results)), 4),
        "cheating_attempts_total": sum(sum(r["attempts"].values()) for r in cheat_results),
        "cheating_vouchers_accepted": sum(accepted.values()),
        "replayed_vouchers_accepted": accepted.get("replay", 0),
        "cheating_accepted_by_kind": accepted,
        "cheating_rejection_codes": codes,
        "payee_books_mismatches": len(mismatches),
        "voucher_latency_p50_ms": rounded(percentile(latencies, 50)),
        "voucher_latency_p95_ms": rounded(percentile(latencies, 95)),
    }
    if backend == "cashu":
        booked_total = sum(sum(books[p].values()) for p in payees)
        settled = sum(e["settled"] for e in ecash.values())
        metrics["payee_ecash_settled_sat"] = settled
        metrics["payee_ecash_shortfall_sat"] = booked_total - settled
        metrics["payee_ecash_balance_sat"] = sum(e["balance"] for e in ecash.values())
    notes = [money_note(backend)]
    if mismatches:
        notes.append(f"payee books differ from the honest amounts: {mismatches[:5]}")
    return RunResult(metrics=metrics, series={"voucher_ms": latencies}, events=events, notes=notes)
