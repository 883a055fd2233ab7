"""Personalized, explainable trust over the attestation graph (EigenTrust with restart).

Peers trust peers through ``rep.trust`` statements. From the node's *roots* (its own key,
the keys configured as trusted auditors, and every peer the node itself vouched for) we
run a personalized EigenTrust: a random walk that follows vouch edges and, with
probability ``restart`` at each step, jumps back to a root. A peer's trust is the share of
time the walk spends there. Identities no trusted peer vouched for are never reached and
have trust exactly 0, however many of them there are and however they vouch for each
other: a Sybil flood carries no weight.

Skills are scored from ratings, audits, flags and revocations, each weighted by its
attester's trust. :meth:`TrustGraph.assess` returns the score, a tier (``flagged``,
``untrusted``, ``provisional``, ``trusted``) and the attestations that decided it.

Incremental: only ``rep.trust`` statements change peer trust; they mark the vector stale
and the next query recomputes it warm-started from the previous vector. Ratings, audits
and flags only touch their skill's index, and a skill is assessed on demand in time
proportional to its own attestations. Sans-IO: nothing here touches the clock or disk.
See SPEC.md section 11 for the parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .attestation import AUDIT, FLAG, RATING, REVOKE, TRUST, Attestation

FLAGGED = "flagged"
UNTRUSTED = "untrusted"
PROVISIONAL = "provisional"
TRUSTED = "trusted"
TIERS = (FLAGGED, UNTRUSTED, PROVISIONAL, TRUSTED)


@dataclass(frozen=True, slots=True)
class TrustParams:
    restart: float = 0.15  # probability the walk jumps back to a root at each step
    tolerance: float = 1e-9  # L1 change at which the power iteration stops
    max_iterations: int = 200
    trusted_min: float = 0.01  # trust at which a peer counts as a trusted attester
    trusted_support: float = 0.01  # rating+pass weight a skill needs to be "trusted"
    trusted_stars: float = 3.5  # weighted mean stars at or above: eligible for "trusted"
    untrusted_stars: float = 2.5  # weighted mean stars below: "untrusted"
    explain_limit: int = 10  # attestations listed in an explanation


@dataclass(frozen=True, slots=True)
class Evidence:
    """One attestation that counted, with the weight it carried and what it did."""

    attestation: Attestation
    weight: float
    trusted: bool
    effect: str

    def describe(self) -> dict[str, Any]:
        out = self.attestation.describe()
        out.update(weight=round(self.weight, 6), trusted=self.trusted, effect=self.effect)
        return out


@dataclass(frozen=True, slots=True)
class Assessment:
    skill: str
    tier: str
    score: float | None  # trust-weighted mean stars (1-5), None without weighted ratings
    support: float  # total trust weight of ratings and passing audits
    reasons: list[str]
    evidence: list[Evidence]
    ignored: int  # attestations from peers with zero trust
    total: int = field(default=0)

    def describe(self) -> dict[str, Any]:
        return {
            "skill": self.skill,
            "tier": self.tier,
            "score": None if self.score is None else round(self.score, 3),
            "support": round(self.support, 6),
            "reasons": list(self.reasons),
            "evidence": [e.describe() for e in self.evidence],
            "ignored": self.ignored,
            "total": self.total,
        }


class TrustGraph:
    """The latest statement per (attester, kind, subject), and trust computed from roots."""

    def __init__(
        self,
        self_key: bytes,
        roots: Iterable[bytes] = (),
        params: TrustParams | None = None,
    ) -> None:
        self.self_key = self_key
        self.configured_roots = frozenset(roots) - {self_key}
        self.params = params or TrustParams()
        # (attester, kind, subject) -> latest attestation
        self._latest: dict[tuple[bytes, str, str], Attestation] = {}
        self._by_skill: dict[str, dict[tuple[bytes, str], Attestation]] = {}
        self._vouch: dict[bytes, set[bytes]] = {}
        self._distrust: dict[bytes, set[bytes]] = {}
        self._trust: dict[bytes, float] = {}
        self._trust_first: dict[bytes, float] = {}  # before other peers' distrust is applied
        self.last_iterations_first = 0
        self._roots: frozenset[bytes] = frozenset()
        self._blocked: frozenset[bytes] = frozenset()
        self._stale = True
        self.recomputes = 0
        self.last_iterations = 0

    # --- input ----------------------------------------------------------------
    def add(self, att: Attestation) -> bool:
        """Take one verified attestation; True when it superseded or added a statement."""
        key = (att.attester, att.kind, att.subject)
        old = self._latest.get(key)
        if old is not None and old.seq >= att.seq:
            return False
        self._latest[key] = att
        if att.kind == TRUST:
            peer = att.payload["peer"]
            vouch = att.payload["stance"] == "vouch"
            vouched = self._vouch.setdefault(att.attester, set())
            distrusted = self._distrust.setdefault(att.attester, set())
            before = (peer in vouched, peer in distrusted)
            (vouched.add if vouch else vouched.discard)(peer)
            (distrusted.discard if vouch else distrusted.add)(peer)
            if before != (peer in vouched, peer in distrusted):
                self._stale = True
        else:
            skill: str = att.payload["skill"]
            self._by_skill.setdefault(skill, {})[(att.attester, att.kind)] = att
        return True

    def add_all(self, atts: Iterable[Attestation]) -> int:
        return sum(1 for a in atts if self.add(a))

    def __len__(self) -> int:
        return len(self._latest)

    def skills(self) -> list[str]:
        return sorted(self._by_skill)

    # --- peer trust -----------------------------------------------------------
    def roots(self) -> frozenset[bytes]:
        self._ensure()
        return self._roots

    def trust(self) -> dict[bytes, float]:
        """Trust of every reached peer (sums to 1); peers not in the map have trust 0."""
        self._ensure()
        return dict(self._trust)

    def trust_of(self, peer: bytes) -> float:
        self._ensure()
        return self._trust.get(peer, 0.0)

    def is_trusted(self, peer: bytes) -> bool:
        self._ensure()
        return peer in self._roots or self._trust.get(peer, 0.0) >= self.params.trusted_min

    def peer_info(self, peer: bytes) -> dict[str, Any]:
        self._ensure()
        weight = self._trust.get(peer, 0.0)
        if peer in self._blocked:
            standing = "blocked"
        elif peer in self._roots:
            standing = "root"
        elif weight >= self.params.trusted_min:
            standing = "trusted"
        elif weight > 0:
            standing = "known"
        else:
            standing = "unknown"
        vouchers = sorted(a.hex() for a, peers in self._vouch.items() if peer in peers)
        distrusters = sorted(a.hex() for a, peers in self._distrust.items() if peer in peers)
        return {
            "peer": peer.hex(),
            "trust": round(weight, 6),
            "standing": standing,
            "vouched_by": vouchers,
            "distrusted_by": distrusters,
        }

    def _ensure(self) -> None:
        if self._stale:
            self._recompute()

    def _recompute(self) -> None:
        own_vouch = self._vouch.get(self.self_key, set())
        own_distrust = self._distrust.get(self.self_key, set())
        roots = ({self.self_key} | self.configured_roots | own_vouch) - own_distrust
        roots.add(self.self_key)
        # A root's distrust blocks a peer outright, unless the node itself chose that peer.
        blocked = set(own_distrust)
        for root in roots - {self.self_key}:
            blocked |= self._distrust.get(root, set())
        blocked -= {self.self_key} | own_vouch | self.configured_roots
        # Each pass is warm-started from its own result of the previous recompute.
        trust = self._iterate(roots, blocked, self._trust_first)
        self._trust_first = trust
        self.last_iterations_first = self.last_iterations
        # Other peers' distrust: a non-root peer is dropped when the trust of the peers that
        # distrust it is at least its own trust; then trust is computed once more.
        against: dict[bytes, float] = {}
        for attester, peers in self._distrust.items():
            weight = trust.get(attester, 0.0)
            if weight <= 0:
                continue
            for peer in peers - roots - blocked:
                against[peer] = against.get(peer, 0.0) + weight
        dropped = {peer for peer, w in against.items() if w >= trust.get(peer, 0.0)}
        if dropped:
            blocked |= dropped
            trust = self._iterate(roots, blocked, self._trust or trust)
        self._roots = frozenset(roots)
        self._blocked = frozenset(blocked)
        self._trust = trust
        self._stale = False
        self.recomputes += 1

    def _iterate(
        self, roots: set[bytes], blocked: set[bytes], warm: dict[bytes, float]
    ) -> dict[bytes, float]:
        """Power iteration of t = restart*p + (1-restart)*C^T t over the peers roots reach."""
        p = self.params
        edges: dict[bytes, list[bytes]] = {}
        seen = set(roots)
        frontier = list(roots)
        while frontier:
            node = frontier.pop()
            out = [v for v in self._vouch.get(node, ()) if v not in blocked]
            out.sort()  # deterministic summation order, so every node computes the same
            edges[node] = out
            for v in out:
                if v not in seen:
                    seen.add(v)
                    frontier.append(v)
        share = 1.0 / len(roots)
        pre = {r: share for r in roots}
        t = {n: warm.get(n, 0.0) for n in seen}
        total = sum(t.values())
        t = (
            {n: v / total for n, v in t.items()}
            if total > 0
            else {n: pre.get(n, 0.0) for n in seen}
        )
        self.last_iterations = 0
        for _ in range(p.max_iterations):
            self.last_iterations += 1
            nxt = {n: p.restart * pre.get(n, 0.0) for n in seen}
            dangling = 0.0
            for node, out in edges.items():
                mass = t[node]
                if not out:
                    dangling += mass
                    continue
                step = (1.0 - p.restart) * mass / len(out)
                for v in out:
                    nxt[v] += step
            if dangling:
                for r in roots:
                    nxt[r] += (1.0 - p.restart) * dangling * share
            delta = sum(abs(nxt[n] - t[n]) for n in seen)
            t = nxt
            if delta < p.tolerance:
                break
        return {n: v for n, v in t.items() if v > 0}

    # --- skills ----------------------------------------------------------------
    def assess(self, skill: str, publisher: bytes | None = None) -> Assessment:
        """Score and tier of ``skill`` for this node, and the attestations that decided it.

        ``publisher`` is the key from the skill's signed manifest when the caller knows it;
        then only that key's revocation counts. Without it, a revocation counts when its
        signer has trust above 0.
        """
        self._ensure()
        p = self.params
        entries = list(self._by_skill.get(skill, {}).values())
        evidence: list[Evidence] = []
        reasons: list[str] = []
        revoked = flagged = trusted_pass = False
        stars_sum = support = negative = 0.0
        rating_weight = 0.0
        ignored = 0
        for att in entries:
            weight = self._trust.get(att.attester, 0.0)
            trusted = att.attester in self._roots or weight >= p.trusted_min
            kind = att.kind
            if kind == REVOKE:
                if publisher is not None:
                    effective = att.attester == publisher
                else:
                    effective = weight > 0
                if effective:
                    revoked = True
                    evidence.append(Evidence(att, weight, trusted, "revoked by the publisher"))
                    reasons.append("revoked by its publisher")
                else:
                    ignored += 1
                continue
            if weight <= 0:
                ignored += 1
                continue
            negative_kind = kind == FLAG or (kind == AUDIT and att.payload["verdict"] == "fail")
            if negative_kind:
                what = "flagged" if kind == FLAG else "failed the audit"
                if trusted:
                    flagged = True
                    evidence.append(Evidence(att, weight, True, f"{what} (trusted attester)"))
                    reasons.append(f"{what} by a trusted attester")
                else:
                    negative += weight
                    evidence.append(Evidence(att, weight, False, f"{what} (low trust)"))
            elif kind == AUDIT:
                support += weight
                trusted_pass = trusted_pass or trusted
                evidence.append(Evidence(att, weight, trusted, "passed the audit"))
            elif kind == RATING:
                stars = int(att.payload["stars"])
                stars_sum += weight * stars
                rating_weight += weight
                support += weight
                evidence.append(Evidence(att, weight, trusted, f"rated {stars} stars"))
        score = stars_sum / rating_weight if rating_weight > 0 else None
        if revoked or flagged:
            tier = FLAGGED
        elif negative > support:
            tier = UNTRUSTED
            reasons.append("flags from your web of trust outweigh its ratings")
        elif score is None and not trusted_pass:
            tier = UNTRUSTED
            reasons.append("nobody in your web of trust rated or audited it")
        elif score is not None and score < p.untrusted_stars:
            tier = UNTRUSTED
            reasons.append(f"weighted rating {score:.2f} is below {p.untrusted_stars}")
        elif trusted_pass or (support >= p.trusted_support and (score or 0) >= p.trusted_stars):
            tier = TRUSTED
            reasons.append(
                "passed an audit by a trusted auditor"
                if trusted_pass
                else f"rated {score:.2f} by peers you trust"
            )
        else:
            tier = PROVISIONAL
            reasons.append("some support from your web of trust, not enough to trust it yet")
        if ignored:
            reasons.append(f"{ignored} attestation(s) from peers outside your web of trust ignored")
        order = {"revoked": 0, "flagged": 1, "failed": 1}
        evidence.sort(key=lambda e: (order.get(e.effect.split()[0], 2), -e.weight))
        return Assessment(
            skill=skill,
            tier=tier,
            score=score,
            support=support,
            reasons=reasons,
            evidence=evidence[: p.explain_limit],
            ignored=ignored,
            total=len(entries),
        )
