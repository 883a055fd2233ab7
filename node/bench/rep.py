"""``bitterbot bench trust``: trust recompute and assessment time."""

from __future__ import annotations

import click

from bitterbot.node.cli.common import bench, print_json


@bench.command("trust")
@click.option("--attestations", "count", default=10_000, show_default=True, help="ledger size")
@click.option("--peers", default=1_000, show_default=True, help="attesters")
@click.option("--json", "as_json", is_flag=True, help="print JSON (the default output)")
def bench_trust(count: int, peers: int, as_json: bool) -> None:
    """Trust recompute time: full, after one new vouch (warm start), and per-skill assessment."""
    import random
    import time

    from bitterbot.protocol import attestation as A
    from bitterbot.protocol.identity import Identity
    from bitterbot.protocol.trust import TrustGraph

    rng = random.Random(7)
    ids = [Identity.from_seed(rng.randbytes(32)) for _ in range(peers)]
    seqs = [0] * peers
    skills = [f"pkg:{i:04d}" for i in range(max(1, count // 20))]
    started = time.perf_counter()
    atts = []
    for n in range(count):
        i = rng.randrange(peers)
        seqs[i] += 1
        if n % 3 == 0:  # a third are trust statements, mostly vouches
            j = rng.randrange(peers - 1)
            j += j >= i
            atts.append(A.trust(ids[i], seqs[i], 0, ids[j].public_key, rng.random() < 0.9))
        else:
            atts.append(A.rating(ids[i], seqs[i], 0, rng.choice(skills), rng.randint(1, 5)))
    signed_s = time.perf_counter() - started
    started = time.perf_counter()
    for att in atts[:2000]:
        A.parse(att.data)
    verify_per_s = min(2000, len(atts)) / (time.perf_counter() - started)
    graph = TrustGraph(ids[0].public_key)
    started = time.perf_counter()
    graph.add_all(atts)
    graph.trust()
    full_s = time.perf_counter() - started
    full_iterations = graph.last_iterations_first + graph.last_iterations
    # one new vouch by the most trusted ordinary peer (a root's vouch would change the roots)
    trust = graph.trust()
    by_key = {ident.public_key: n for n, ident in enumerate(ids)}
    voucher = max((k for k in trust if k not in graph.roots()), key=trust.__getitem__)
    v = by_key[voucher]
    seqs[v] += 1
    target = ids[(v + peers // 2) % peers].public_key
    graph.add(A.trust(ids[v], seqs[v], 0, target, True))
    started = time.perf_counter()
    graph.trust()
    incremental_s = time.perf_counter() - started
    started = time.perf_counter()
    tiers: dict[str, int] = {}
    for skill in skills:
        tier = graph.assess(skill).tier
        tiers[tier] = tiers.get(tier, 0) + 1
    assess_s = time.perf_counter() - started
    print_json(
        {
            "attestations": count,
            "peers": peers,
            "reached_peers": len(graph.trust()),
            "sign_s": round(signed_s, 3),
            "verify_per_s": round(verify_per_s),
            "full_recompute_s": round(full_s, 4),
            "full_iterations": full_iterations,
            "incremental_recompute_s": round(incremental_s, 4),
            "incremental_iterations": graph.last_iterations_first + graph.last_iterations,
            "assess_per_skill_ms": round(1000 * assess_s / len(skills), 4),
            "skills": len(skills),
            "tiers": tiers,
        }
    )
