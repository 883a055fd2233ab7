"""Sybil flood against reputation: fresh identities cannot lift a flagged skill.

Cast (node indices): node 0 is the auditor every honest node lists in its roots; nodes 1
and 2 are raters the auditor vouches for; the last node is the adversary; the rest are
observers. The auditor flags ``bad-skill`` and passes ``good-skill``; the trusted raters
rate ``good-skill`` 5 stars. Every honest node assesses both skills (before). The adversary
then mints ``sybils`` fresh identities that rate ``bad-skill`` 5 stars and ``good-skill``
1 star and vouch for each other, and every honest node pulls them through repsync. Every
honest node assesses again (after). Finally one trusted rater rates a fresh skill, to show
that a single rating with a trust path does move a score.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import trio

from bitterbot.simnet.harness import SimNetwork, node_seed
from bitterbot.simnet.runners import RunResult
from bitterbot.simnet.scenarios import Scenario
from bitterbot.simnet.stats import rounded

DEFAULTS: dict[str, Any] = {
    "sybils": 1000,
    "spread_timeout_s": 20.0,
    "mesh_settle_s": 3.0,
}

BAD, GOOD, FRESH = "bad-skill", "good-skill", "fresh-skill"
LIFTED = {"provisional", "trusted"}


async def run(scenario: Scenario, run_dir: Path) -> RunResult:
    from bitterbot.protocol.identity import Identity

    work = scenario.section("workload")
    net_cfg = scenario.section("network")
    n = scenario.nodes
    if n < 5:
        from bitterbot.simnet.errors import ScenarioError

        raise ScenarioError("the sybil scenario needs at least 5 nodes", hint="--nodes 5")
    auditor, raters, adversary = 0, [1, 2], n - 1
    auditor_key = Identity.from_seed(node_seed(scenario.seed, auditor)).public_key
    options = {"reputation": True, "rep_roots": [auditor_key.hex()], "rep_sync_interval_s": 3600}
    network = SimNetwork.from_section(net_cfg, run_dir, scenario.seed, options)
    honest = [i for i in range(n) if i != adversary]
    timeout = float(work["spread_timeout_s"])

    async with network.running() as net:
        await net.start_all()
        await trio.sleep(float(work["mesh_settle_s"]) + float(net_cfg["settle_s"]))
        keys = {i: await net.call(i, "rep_attester") for i in range(n)}

        made = [await net.call(auditor, "attest", kind="flag", skill=BAD)]
        made.append(await net.call(auditor, "attest", kind="audit_pass", skill=GOOD))
        for r in raters:
            made.append(await net.call(auditor, "attest", kind="vouch", peer=keys[r]))
        for r in raters:
            made.append(await net.call(r, "attest", kind="rate", skill=GOOD, stars=5))
        await _everyone_holds(net, honest, made, timeout)

        before = await _assess_all(net, honest)
        flood = await net.call(
            adversary,
            "sybil_flood",
            timeout_s=600,
            count=int(work["sybils"]),
            skill=BAD,
            stars=5,
            against=GOOD,
            seed=scenario.seed,
        )
        net.note("sybil_flood", identities=flood["identities"])
        pulled: list[int] = []
        # A node serves MAX_SYNC_SESSIONS syncs at once and refuses more (peers retry).
        limiter = trio.CapacityLimiter(3)

        async def pull(index: int) -> None:
            # honest nodes sync with whoever they meet; make sure they meet the adversary
            await net.call(index, "connect", addr=net.nodes[adversary].addrs[0])
            async with limiter:
                got = await net.call(
                    index, "rep_sync", timeout_s=600, peer_id=net.nodes[adversary].peer_id
                )
            pulled.append(int(got["new"]))

        async with trio.open_nursery() as nursery:
            for index in honest:
                nursery.start_soon(pull, index)
        after = await _assess_all(net, honest)

        observers = [i for i in honest if i not in raters and i != auditor]
        fresh_before = await net.call(observers[0], "assess", skill=FRESH)
        fresh = await net.call(raters[0], "attest", kind="rate", skill=FRESH, stars=5)
        await _everyone_holds(net, [observers[0]], [fresh], timeout)
        fresh_after = await net.call(observers[0], "assess", skill=FRESH)
        events = list(net.log)

    def tiers(view: dict[int, dict[str, Any]], skill: str) -> dict[str, int]:
        return dict(Counter(view[i][skill]["tier"] for i in honest))

    def support(view: dict[int, dict[str, Any]], skill: str) -> list[float]:
        return [float(view[i][skill]["support"]) for i in honest]

    lifted = sum(1 for i in honest if after[i][BAD]["tier"] in LIFTED)
    good_demoted = sum(1 for i in honest if after[i][GOOD]["tier"] != before[i][GOOD]["tier"])
    metrics: dict[str, Any] = {
        "nodes": n,
        "honest_nodes": len(honest),
        "sybil_identities": flood["identities"],
        "sybil_attestations": flood["attestations"],
        "sybil_attestations_pulled_mean": rounded(sum(pulled) / len(pulled)) if pulled else 0,
        "flagged_skill_tiers_before": tiers(before, BAD),
        "flagged_skill_tiers_after": tiers(after, BAD),
        "flagged_skill_lifted_nodes": lifted,
        "flagged_skill_support_after_max": rounded(max(support(after, BAD)), 6),
        "honest_skill_tiers_before": tiers(before, GOOD),
        "honest_skill_tiers_after": tiers(after, GOOD),
        "honest_skill_tier_changed_nodes": good_demoted,
        "honest_skill_score_after_mean": rounded(
            _mean([after[i][GOOD]["score"] for i in honest]), 3
        ),
        "sybil_attestations_ignored_mean": rounded(
            _mean([after[i][BAD]["ignored"] for i in honest]), 1
        ),
        "trusted_rating_score_before": fresh_before["score"],
        "trusted_rating_score_after": fresh_after["score"],
        "trusted_rating_tier_after": fresh_after["tier"],
        "trusted_rating_moves_score": fresh_after["score"] is not None
        and fresh_after["score"] != fresh_before["score"],
    }
    series = {
        "trust_scores": {
            "honest skill (after flood)": support(after, GOOD),
            "Sybil-rated skill (after flood)": support(after, BAD),
        }
    }
    notes = [
        "Plotted: the trust weight (support) behind each skill at every honest node; "
        "Sybil identities have no trust path from the roots, so they add none.",
    ]
    return RunResult(metrics=metrics, series=series, events=events, notes=notes)


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if v is not None]
    return sum(nums) / len(nums) if nums else None


async def _everyone_holds(
    net: SimNetwork, nodes: list[int], made: list[dict[str, Any]], timeout: float
) -> None:
    async def one(index: int) -> None:
        for att in made:
            await net.call(
                index,
                "wait_for",
                timeout_s=timeout + 30,
                attester=att["attester"],
                seq=att["seq"],
                timeout=timeout,
            )

    async with trio.open_nursery() as nursery:
        for index in nodes:
            nursery.start_soon(one, index)


async def _assess_all(net: SimNetwork, nodes: list[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for index in nodes:
        out[index] = {
            BAD: await net.call(index, "assess", skill=BAD),
            GOOD: await net.call(index, "assess", skill=GOOD),
        }
    return out
