"""Trust: personalized EigenTrust, Sybil resistance, tiers and explanations."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.protocol import attestation as A
from bitterbot.protocol.identity import Identity
from bitterbot.protocol.trust import (
    FLAGGED,
    PROVISIONAL,
    TRUSTED,
    UNTRUSTED,
    TrustGraph,
)

NOW = 1_800_000_000_000
H = hashlib.sha256(b"evidence").digest()


def ident(n: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(b"id%d" % n).digest())


ME, AUDITOR, FRIEND, STRANGER = ident(0), ident(1), ident(2), ident(3)


def graph(*atts: A.Attestation) -> TrustGraph:
    g = TrustGraph(ME.public_key, roots=[AUDITOR.public_key])
    g.add_all(atts)
    return g


def test_roots_hold_all_trust_until_someone_vouches() -> None:
    g = graph()
    trust = g.trust()
    assert set(trust) == {ME.public_key, AUDITOR.public_key}
    assert sum(trust.values()) == pytest.approx(1.0)
    assert g.trust_of(STRANGER.public_key) == 0.0


def test_vouch_chain_carries_decaying_trust() -> None:
    g = graph(
        A.trust(ME, 1, NOW, FRIEND.public_key, True),
        A.trust(FRIEND, 1, NOW, STRANGER.public_key, True),
    )
    t = g.trust()
    assert sum(t.values()) == pytest.approx(1.0)
    assert t[STRANGER.public_key] > 0
    assert t[STRANGER.public_key] < t[FRIEND.public_key]
    assert FRIEND.public_key in g.roots()  # the node's own vouches are roots


def test_later_statement_supersedes_and_old_replay_is_ignored() -> None:
    vouch = A.trust(ME, 1, NOW, FRIEND.public_key, True)
    distrust = A.trust(ME, 2, NOW, FRIEND.public_key, False)
    g = graph(vouch, distrust)
    assert g.add(vouch) is False
    assert g.trust_of(FRIEND.public_key) == 0.0
    assert g.peer_info(FRIEND.public_key)["standing"] == "blocked"


def test_root_distrust_cuts_a_peer_and_everything_only_it_vouched_for() -> None:
    g = graph(
        A.trust(AUDITOR, 1, NOW, FRIEND.public_key, True),
        A.trust(FRIEND, 1, NOW, STRANGER.public_key, True),
    )
    assert g.trust_of(STRANGER.public_key) > 0
    g.add(A.trust(AUDITOR, 2, NOW, FRIEND.public_key, False))
    assert g.trust_of(FRIEND.public_key) == 0.0
    assert g.trust_of(STRANGER.public_key) == 0.0


def test_sybil_flood_cannot_lift_a_flagged_skill_but_a_trusted_rating_moves_it() -> None:
    skill, honest = "pkg:malware", "pkg:honest"
    g = graph(A.flag(AUDITOR, 1, NOW, skill, H, "steals keys"))
    before = g.assess(skill)
    assert before.tier == FLAGGED and before.score is None
    sybils = [ident(1000 + i) for i in range(1000)]
    for i, s in enumerate(sybils):
        g.add(A.rating(s, 1, NOW, skill, 5, "great"))
        g.add(A.rating(s, 2, NOW, honest, 5))
        # the Sybils vouch for each other in a ring, and for themselves via the ring
        g.add(A.trust(s, 3, NOW, sybils[(i + 1) % len(sybils)].public_key, True))
    after = g.assess(skill)
    assert after.tier == FLAGGED
    assert after.score is None
    assert after.ignored == 1000
    assert g.assess(honest).tier == UNTRUSTED
    assert all(g.trust_of(s.public_key) == 0.0 for s in sybils)
    # one rating by a peer the node vouched for moves both scores
    g.add(A.trust(ME, 1, NOW, FRIEND.public_key, True))
    g.add(A.rating(FRIEND, 1, NOW, skill, 1, "it read my ssh keys"))
    g.add(A.rating(FRIEND, 2, NOW, honest, 5))
    moved = g.assess(skill)
    assert moved.tier == FLAGGED and moved.score == pytest.approx(1.0)
    good = g.assess(honest)
    assert good.tier == TRUSTED and good.score == pytest.approx(5.0)
    assert good.evidence[0].attestation.attester == FRIEND.public_key


def test_sybils_vouched_by_a_low_trust_peer_stay_below_trusted_threshold() -> None:
    # A friend-of-a-friend who vouches for 1,000 fresh keys spreads thin trust among them.
    g = graph(
        A.trust(ME, 1, NOW, FRIEND.public_key, True),
        A.trust(FRIEND, 1, NOW, STRANGER.public_key, True),
    )
    sybils = [ident(5000 + i) for i in range(1000)]
    for i, s in enumerate(sybils):
        g.add(A.trust(STRANGER, i + 2, NOW, s.public_key, True))
    total = sum(g.trust_of(s.public_key) for s in sybils)
    assert total < g.trust_of(STRANGER.public_key)
    assert not any(g.is_trusted(s.public_key) for s in sybils)


def test_tiers_follow_weighted_ratings() -> None:
    g = graph(A.trust(ME, 1, NOW, FRIEND.public_key, True))
    assert g.assess("pkg:new").tier == UNTRUSTED
    g.add(A.rating(FRIEND, 1, NOW, "pkg:meh", 2))
    assert g.assess("pkg:meh").tier == UNTRUSTED
    g.add(A.rating(FRIEND, 2, NOW, "pkg:meh", 4))  # supersedes the 2-star rating
    assessed = g.assess("pkg:meh")
    assert assessed.tier == TRUSTED and assessed.score == pytest.approx(4.0)
    assert assessed.total == 1


def test_low_trust_rating_is_only_provisional() -> None:
    g = graph(
        A.trust(ME, 1, NOW, FRIEND.public_key, True),
        A.trust(FRIEND, 1, NOW, STRANGER.public_key, True),
        *[A.trust(FRIEND, i + 2, NOW, ident(200 + i).public_key, True) for i in range(60)],
    )
    g.add(A.rating(STRANGER, 1, NOW, "pkg:x", 5))
    assert 0 < g.trust_of(STRANGER.public_key) < g.params.trusted_min
    assert g.assess("pkg:x").tier == PROVISIONAL


def test_publisher_revocation_flags_only_when_from_the_publisher() -> None:
    pub = ident(9)
    g = graph(A.revoke(pub, 1, NOW, "pkg:x", "bad build"))
    assert g.assess("pkg:x", publisher=pub.public_key).tier == FLAGGED
    assert g.assess("pkg:x", publisher=FRIEND.public_key).tier == UNTRUSTED
    # without knowing the publisher, an unknown key's revocation carries no weight
    assert g.assess("pkg:x").tier == UNTRUSTED


def test_trusted_pass_audit_makes_trusted_and_explanation_names_it() -> None:
    g = graph(A.audit(AUDITOR, 1, NOW, "pkg:x", True, H))
    a = g.assess("pkg:x")
    assert a.tier == TRUSTED
    d = a.describe()
    assert d["evidence"][0]["effect"] == "passed the audit"
    assert d["evidence"][0]["attester"] == AUDITOR.public_key.hex()


def test_rating_does_not_recompute_peer_trust() -> None:
    g = graph(A.trust(ME, 1, NOW, FRIEND.public_key, True))
    g.trust()
    n = g.recomputes
    g.add(A.rating(FRIEND, 1, NOW, "pkg:x", 5))
    g.assess("pkg:x")
    assert g.recomputes == n
    g.add(A.trust(FRIEND, 1, NOW, STRANGER.public_key, True))
    g.assess("pkg:x")
    assert g.recomputes == n + 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12), st.booleans()), max_size=60))
def test_trust_is_a_distribution_only_over_reachable_peers(
    edges: list[tuple[int, int, bool]],
) -> None:
    ids = [ident(300 + i) for i in range(13)]
    g = TrustGraph(ids[0].public_key, roots=[ids[1].public_key])
    seqs: dict[int, int] = {}
    for a, b, vouch in edges:
        if a == b:
            continue
        seqs[a] = seqs.get(a, 0) + 1
        g.add(A.trust(ids[a], seqs[a], NOW, ids[b].public_key, vouch))
    t = g.trust()
    assert sum(t.values()) == pytest.approx(1.0)
    assert all(v > 0 for v in t.values())
    # warm-started recomputation agrees with a fresh graph fed the same statements
    fresh = TrustGraph(ids[0].public_key, roots=[ids[1].public_key])
    fresh.add_all(g._latest.values())
    for k, v in fresh.trust().items():
        assert t.get(k, 0.0) == pytest.approx(v, abs=1e-6)


def test_sybil_flags_cannot_sink_an_honest_skill() -> None:
    g = graph(A.trust(ME, 1, NOW, FRIEND.public_key, True), A.rating(FRIEND, 1, NOW, "pkg:ok", 5))
    for i in range(300):
        s = ident(7000 + i)
        g.add(A.flag(s, 1, NOW, "pkg:ok", H, "fake"))
        g.add(A.audit(s, 2, NOW, "pkg:ok", False, H))
        g.add(A.revoke(s, 3, NOW, "pkg:ok"))  # a stranger claiming to be the publisher
    assessed = g.assess("pkg:ok")
    assert assessed.tier == TRUSTED
    assert assessed.ignored == 900
    assert "900 attestation(s) from peers outside your web of trust ignored" in assessed.reasons


def test_distrust_by_weightier_peers_drops_a_peer_but_weak_distrust_does_not() -> None:
    weak = ident(20)
    g = graph(
        A.trust(ME, 1, NOW, FRIEND.public_key, True),
        A.trust(FRIEND, 1, NOW, STRANGER.public_key, True),
        A.trust(FRIEND, 2, NOW, weak.public_key, True),
        *[A.trust(weak, i + 1, NOW, ident(400 + i).public_key, True) for i in range(20)],
    )
    fan = ident(400)  # reached only through `weak`, so it holds little trust
    assert 0 < g.trust_of(fan.public_key) < g.trust_of(STRANGER.public_key)
    # the faint peer distrusting the stranger changes nothing: it holds less trust
    g.add(A.trust(fan, 1, NOW, STRANGER.public_key, False))
    assert g.trust_of(STRANGER.public_key) > 0
    assert g.peer_info(STRANGER.public_key)["distrusted_by"] == [fan.public_key.hex()]
    # the stranger (as trusted as `weak`) distrusting `weak`: dropped, with its vouches
    g.add(A.trust(STRANGER, 1, NOW, weak.public_key, False))
    assert g.trust_of(weak.public_key) == 0.0
    assert g.trust_of(fan.public_key) == 0.0
    assert g.peer_info(weak.public_key)["standing"] == "blocked"
