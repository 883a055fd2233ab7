"""The reputation ledger: LMDB storage, gossip, anti-entropy sync, and the install gate.

- :class:`Ledger`: append-only, deduplicated attestations in LMDB, keyed by attester and
  sequence number; the node's own attestations wait in ``rep.pending`` until gossiped.
- :class:`Reputation`: the node's view (a :class:`~bitterbot.protocol.trust.TrustGraph` fed
  from the ledger), the gossip validator of ``/bitterbot/reputation/1`` (rejects bad
  signatures, unknown kinds, oversize, stale or far-future, duplicates, and attesters over
  their rate), batching, and the ``/bitterbot/repsync/1.0.0`` catch-up protocol.
- :func:`check_install`: what the market calls before installing a skill.

SPEC.md section 11 describes the wire formats and parameters.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from bitterbot.node.rep.ledger import Ledger, RateBuckets
from bitterbot.protocol import attestation as att_mod
from bitterbot.protocol.attestation import Attestation
from bitterbot.protocol.errors import (
    BitterbotError,
    DecodeError,
    NetworkError,
    SkillError,
    StaleError,
    UnknownVersionError,
    ValidationError,
)
from bitterbot.protocol.identity import Identity, decode_key
from bitterbot.protocol.trust import FLAGGED, Assessment, TrustGraph, TrustParams

logger = logging.getLogger(__name__)

TOPIC = "/bitterbot/reputation/1"
SYNC_PROTOCOL = "/bitterbot/repsync/1.0.0"
SYNC_VERSION = 1
MAX_SYNC_FRAME = 256 * 1024
MAX_SYNC_HEADS = 4096  # attesters listed in one sync request (about 170 KiB)
MAX_SYNC_SEND = 50_000  # attestations one sync session sends at most
SYNC_TIMEOUT_S = 20.0
MAX_SYNC_SESSIONS = 4  # sync requests served at once
COPY_WINDOW_MS = 10_000  # identical gossip messages within this share the first verdict
MAX_REMEMBERED_COPIES = 10_000


class RateLimited(StaleError):
    code = "rate_limited"


class InstallRefused(SkillError):
    code = "install_refused"


@dataclass
class RepConfig:
    roots: list[bytes] = field(default_factory=list)
    gossip_max_age_ms: int = 24 * 3600 * 1000  # older attestations arrive by sync only
    rate_per_min: float = 60.0  # attestations per minute accepted per attester via gossip
    burst: int = 64  # attestations an attester may send at once before the rate applies
    sync_interval_s: float = 60.0
    sync_peers: int = 3
    publish_interval_s: float = 0.25  # <= 4 gossip messages/s, under py-libp2p's 10/s
    params: TrustParams = field(default_factory=TrustParams)

    @classmethod
    def from_settings(cls, settings: Any) -> RepConfig:
        def get(name: str, default: Any) -> Any:
            try:
                return settings[name]
            except KeyError:
                return default

        roots = []
        for text in get("rep.roots", []):
            roots.append(decode_key(text))
        return cls(
            roots=roots,
            gossip_max_age_ms=int(get("rep.gossip_max_age_s", 86400)) * 1000,
            rate_per_min=float(get("rep.rate_per_min", 60)),
            sync_interval_s=float(get("rep.sync_interval_s", 60)),
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


class Reputation:
    """This node's reputation subsystem (see the module docstring)."""

    def __init__(
        self,
        store: Any,
        identity: Identity,
        config: RepConfig | None = None,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        from bitterbot.node.p2p.peer_id import peer_id_of

        self.identity = identity
        self.config = config or RepConfig()
        self.clock_ms = clock_ms
        self.ledger = Ledger(store)
        self.graph = TrustGraph(identity.public_key, self.config.roots, self.config.params)
        self.graph.add_all(self.ledger.load_all())
        self.peer_id = peer_id_of(identity)
        self._buckets = RateBuckets(
            self.config.rate_per_min, self.config.burst, lambda: self.clock_ms() / 1000
        )
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(2)
        self._serving = trio.Semaphore(MAX_SYNC_SESSIONS)
        self._copies: dict[bytes, tuple[bool, int]] = {}  # gossip message hash -> verdict, when
        # accepted by gossip, not yet stored (in acceptance order); set while non-empty:
        self._unwritten: dict[tuple[bytes, int], Attestation] = {}
        self._queued = trio.Event()
        self._write_lock = trio.Lock()
        self.rejected = 0  # gossip messages refused by the validator
        self.sync_rounds = 0  # catch-up rounds done (tests wait on it)
        self.rejected_by: dict[str, int] = {}  # ... by error code (bad_signature, stale, ...)
        self.p2p: Any = None

    # --- the node's own statements -----------------------------------------------------
    def _attest(self, make: Callable[[int, int], Attestation]) -> Attestation:
        now = self.clock_ms()
        att = self.ledger.create(lambda seq: make(seq, now), self.identity.public_key)
        self.graph.add(att)
        self._wake.set()
        return att

    def rate(
        self, skill: str, stars: int, text: str = "", publisher: bytes | None = None
    ) -> Attestation:
        ident = self.identity
        return self._attest(lambda s, t: att_mod.rating(ident, s, t, skill, stars, text, publisher))

    def flag(self, skill: str, evidence_hash: bytes, reason: str = "") -> Attestation:
        ident = self.identity
        return self._attest(lambda s, t: att_mod.flag(ident, s, t, skill, evidence_hash, reason))

    def audit(
        self, skill: str, passed: bool, report_hash: bytes, findings: list[str] | None = None
    ) -> Attestation:
        ident = self.identity
        return self._attest(
            lambda s, t: att_mod.audit(ident, s, t, skill, passed, report_hash, findings)
        )

    def revoke(self, skill: str, reason: str = "") -> Attestation:
        ident = self.identity
        return self._attest(lambda s, t: att_mod.revoke(ident, s, t, skill, reason))

    def vouch(self, peer: bytes, vouch: bool = True) -> Attestation:
        ident = self.identity
        return self._attest(lambda s, t: att_mod.trust(ident, s, t, peer, vouch))

    # --- queries --------------------------------------------------------------------------
    def assess(self, skill: str, publisher: bytes | None = None) -> Assessment:
        return self.graph.assess(skill, publisher)

    def tier_of(self, skill: str, publisher: bytes | None = None) -> str:
        """The tier for search results: flagged, untrusted, provisional or trusted."""
        return self.graph.assess(skill, publisher).tier

    def check_install(
        self, skill: str, publisher: bytes | None = None, *, override: bool = False
    ) -> Assessment:
        """Refuse (``InstallRefused``) a revoked skill or one flagged by a trusted attester."""
        assessment = self.graph.assess(skill, publisher)
        if assessment.tier == FLAGGED and not override:
            raise InstallRefused(
                f"{skill} is refused: " + "; ".join(assessment.reasons[:2]),
                hint="see `bitterbot rep show SKILL`; install anyway with --ignore-reputation",
            )
        return assessment

    def status(self) -> dict[str, Any]:
        return {
            "attestations": self.ledger.count(),
            "pending": len(self.ledger.pending()),
            "attesters": len(self.ledger.heads()),
            "statements": len(self.graph),
            "rejected": self.rejected,
            "rejected_by": dict(self.rejected_by),
            "roots": len(self.graph.roots()),
        }

    # --- network input ---------------------------------------------------------------------
    def _reject(self, message: str, cls: type[BitterbotError] = ValidationError) -> bool:
        error = cls(message)
        self._count_rejection(error)
        raise error

    def _count_rejection(self, error: BitterbotError) -> None:
        self.rejected += 1
        self.rejected_by[error.code] = self.rejected_by.get(error.code, 0) + 1

    def accept_gossip(self, from_peer: str, data: bytes) -> bool:
        """Gossip validator: True accepts the batch and lets gossipsub forward it at once.

        Synchronous on purpose: gossipsub marks a message seen only after its validator
        returns, so an awaiting validator lets every concurrent copy through and each is
        forwarded again. Everything decided here is decided from memory and LMDB reads
        (signatures, age, duplicates, equivocation, rate); the durable write (an fsync)
        follows in :meth:`flush_writes`, batched, off the forwarding path. A node killed
        in between loses only what anti-entropy sync brings back.
        Raising or returning False drops the message everywhere downstream of this node.
        """
        from bitterbot.node.p2p.peer_id import peer_id_from_public_key

        own = from_peer == self.peer_id
        try:
            atts = att_mod.decode_batch(
                data,
                now_ms=self.clock_ms(),
                max_age_ms=None if own else self.config.gossip_max_age_ms,
            )
        except BitterbotError as exc:
            self._count_rejection(exc)
            raise
        attester = atts[0].attester
        if peer_id_from_public_key(attester) != from_peer:
            return self._reject("gossip batch attester is not the publishing peer")
        if own:
            return True  # already in our ledger; rate limits are for others
        # The same message arriving again from another mesh peer shortly after (before
        # gossipsub's seen-cache has it, or after a restart of its cache) gets the first
        # copy's verdict, so honest forwarders are never counted as replaying.
        digest = hashlib.sha256(data).digest()
        now = self.clock_ms()
        first = self._copies.get(digest)
        if first is not None and now - first[1] <= COPY_WINDOW_MS:
            if first[0]:
                return True
            return self._reject("copy of a rejected gossip message")
        try:
            new = self._new_statements(atts)
            if not new:
                raise StaleError("duplicate attestations (replay)")
            if not self._buckets.take(attester, len(new)):
                raise RateLimited("attester is over its gossip rate")
        except BitterbotError as exc:
            self._remember_copy(digest, False, now)
            self._count_rejection(exc)
            raise
        self._remember_copy(digest, True, now)
        for att in new:
            self._unwritten[(att.attester, att.seq)] = att
        self._queued.set()
        return True

    def _new_statements(self, atts: list[Attestation]) -> list[Attestation]:
        """The statements of ``atts`` not held yet; raises on a reused sequence number."""
        new = []
        for att in atts:
            unwritten = self._unwritten.get((att.attester, att.seq))
            held = unwritten.data if unwritten else self.ledger.get(att.attester, att.seq)
            if held is None:
                new.append(att)
            elif held != att.data:
                raise ValidationError("attester reused a sequence number (equivocation)")
        return new

    def _remember_copy(self, digest: bytes, ok: bool, now: int) -> None:
        self._copies[digest] = (ok, now)
        if len(self._copies) > MAX_REMEMBERED_COPIES:
            for old in list(self._copies)[: MAX_REMEMBERED_COPIES // 2]:
                del self._copies[old]

    async def flush_writes(self) -> int:
        """Durably store the statements gossip accepted so far (one transaction); returns
        how many were new. They enter the trust graph once written."""
        async with self._write_lock:
            batch = list(self._unwritten.values())
            if not batch:
                self._queued = trio.Event()
                return 0
            # on failure they stay in _unwritten, and the next flush retries them
            stored, conflicts = await trio.to_thread.run_sync(
                self.ledger.add_many, batch, limiter=self._limiter
            )
            for att in batch:
                del self._unwritten[(att.attester, att.seq)]
            if not self._unwritten:  # more may have arrived during the write
                self._queued = trio.Event()
            self.graph.add_all(stored)
            if conflicts:  # sync stored another version meanwhile; the ledger keeps the first
                logger.info("%d gossiped attestations conflicted with stored ones", conflicts)
            return len(stored)

    async def _writer(self) -> None:
        while True:
            await self._queued.wait()
            try:
                await self.flush_writes()
            except BitterbotError as exc:  # e.g. a full disk: they stay queued; retry in 1 s
                logger.warning("storing gossiped attestations failed: %s", exc)
                await trio.sleep(1.0)

    def ingest(self, datas: Iterable[bytes]) -> tuple[int, int]:
        """Verify and store attestations from sync; returns (new, invalid)."""
        new, bad = self._verify_and_store(list(datas))
        self.graph.add_all(new)
        return len(new), bad

    def _verify_and_store(self, datas: list[bytes]) -> tuple[list[Attestation], int]:
        # Safe in a worker thread: touches only the ledger, never the in-memory graph.
        now = self.clock_ms()
        good, bad = [], 0
        for data in datas:
            try:
                good.append(att_mod.parse(data, now_ms=now))
            except BitterbotError:
                bad += 1
        new, conflicts = self.ledger.add_many(good)
        return new, bad + conflicts

    # --- network tasks ---------------------------------------------------------------------
    async def run(self, p2p: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Gossip, publish pending attestations, serve and run sync, until cancelled."""
        self.p2p = p2p
        p2p.set_stream_handler(SYNC_PROTOCOL, self.serve_sync)
        try:
            async with p2p.subscribe(TOPIC, self.accept_gossip) as sub, trio.open_nursery() as n:
                n.start_soon(self._drain, sub)
                n.start_soon(self._writer)
                n.start_soon(self._publisher, p2p)
                n.start_soon(self._sync_loop, p2p)
                task_status.started(self)
        finally:  # what gossip accepted is stored before the node stops
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush_writes()

    async def _drain(self, sub: Any) -> None:
        # The validator already stored each accepted batch; the queue only needs emptying.
        async for _msg in sub:
            pass

    async def _publisher(self, p2p: Any) -> None:
        while True:
            try:
                await self.publish_pending(p2p)
            except BitterbotError as exc:  # kept pending; the next round retries
                logger.info("publishing attestations failed: %s", exc)
            with trio.move_on_after(1.0):
                await self._wake.wait()
            self._wake = trio.Event()

    async def publish_pending(self, p2p: Any) -> int:
        """Gossip the node's pending attestations in batches; returns how many were sent.

        Kept pending while no peer listens on the topic (sync covers later joiners too).
        """
        pending = [a for a in self.ledger.pending() if a.attester == self.identity.public_key]
        self.graph.add_all(pending)  # the CLI may have written them from another process
        if not pending or not p2p.topic_peers(TOPIC):
            return 0
        # Peers refuse gossip older than the age limit (and score the sender down for it):
        # statements that old travel by sync only.
        oldest = self.clock_ms() - self.config.gossip_max_age_ms + 60_000
        too_old = [a for a in pending if a.ts < oldest]
        if too_old:
            self.ledger.mark_sent(too_old)
            pending = [a for a in pending if a.ts >= oldest]
        pending.sort(key=lambda a: a.seq)
        sent = 0
        for batch in att_mod.split_batches(pending):
            await p2p.publish(TOPIC, att_mod.encode_batch(batch))
            self.ledger.mark_sent(batch)
            sent += len(batch)
            await trio.sleep(self.config.publish_interval_s)
        return sent

    async def _sync_loop(self, p2p: Any) -> None:
        await p2p.bootstrapped.wait()
        while True:
            peers = p2p.connected_peers()
            random.shuffle(peers)
            for peer in peers[: self.config.sync_peers]:
                try:
                    await self.sync_with(p2p, peer)
                except BitterbotError as exc:
                    logger.info("reputation sync with %s failed: %s", peer, exc)
            self.sync_rounds += 1
            await trio.sleep(self.config.sync_interval_s)

    async def sync_with(self, p2p: Any, peer_id: str) -> int:
        """Fetch from ``peer_id`` every attestation above our contiguous heads."""
        from bitterbot.node.p2p.framing import read_message, write_message

        heads = self.ledger.heads()
        listed = sorted(heads.items(), key=lambda kv: -kv[1][2])[:MAX_SYNC_HEADS]
        request = {"v": SYNC_VERSION, "heads": [[k, h[0]] for k, h in listed]}
        total = 0
        async with await p2p.open_stream(peer_id, SYNC_PROTOCOL) as stream:
            await write_message(stream, request, max_size=MAX_SYNC_FRAME)
            received = 0
            while True:
                msg = await read_message(stream, max_size=MAX_SYNC_FRAME, timeout=SYNC_TIMEOUT_S)
                datas, done = _parse_sync_page(msg)
                received += len(datas)
                if received > MAX_SYNC_SEND:
                    raise ValidationError(f"sync peer {peer_id} sent too many attestations")
                stored, bad = await trio.to_thread.run_sync(
                    self._verify_and_store, datas, limiter=self._limiter
                )
                self.graph.add_all(stored)  # in the trio thread: the graph is not shared
                total += len(stored)
                if bad:
                    logger.info("sync from %s: %d invalid attestations dropped", peer_id, bad)
                if done:
                    break
        return total

    async def serve_sync(self, stream: Any) -> None:
        """Answer one catch-up request (a few at once; more are refused, peers retry)."""
        try:
            self._serving.acquire_nowait()
        except trio.WouldBlock:
            raise NetworkError("busy serving other reputation syncs", code="busy") from None
        try:
            await self._serve_sync(stream)
        finally:
            self._serving.release()

    async def _serve_sync(self, stream: Any) -> None:
        from bitterbot.node.p2p.framing import read_message, write_message

        msg = await read_message(stream, max_size=MAX_SYNC_FRAME, timeout=SYNC_TIMEOUT_S)
        heads = _parse_sync_request(msg)
        datas = await trio.to_thread.run_sync(
            self.ledger.newer_than, heads, MAX_SYNC_SEND, limiter=self._limiter
        )
        page: list[bytes] = []
        size = 0
        for data in datas:
            if size + len(data) + 8 > MAX_SYNC_FRAME - 64:
                await write_message(
                    stream,
                    {"v": SYNC_VERSION, "atts": page, "done": False},
                    max_size=MAX_SYNC_FRAME,
                )
                page, size = [], 0
            page.append(data)
            size += len(data) + 8
        await write_message(
            stream, {"v": SYNC_VERSION, "atts": page, "done": True}, max_size=MAX_SYNC_FRAME
        )


def _parse_sync_request(msg: Any) -> dict[bytes, int]:
    if not isinstance(msg, dict) or msg.get("v") != SYNC_VERSION:
        raise UnknownVersionError("repsync: unsupported request version")
    heads = msg.get("heads")
    if not isinstance(heads, list) or len(heads) > MAX_SYNC_HEADS:
        raise DecodeError(f"repsync: 'heads' must list at most {MAX_SYNC_HEADS} entries")
    out: dict[bytes, int] = {}
    for entry in heads:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not isinstance(entry[0], bytes)
            or len(entry[0]) != 32
            or isinstance(entry[1], bool)
            or not isinstance(entry[1], int)
            or entry[1] < 0
        ):
            raise DecodeError("repsync: a head is [attester(32 bytes), seq]")
        out[entry[0]] = entry[1]
    return out


def _parse_sync_page(msg: Any) -> tuple[list[bytes], bool]:
    if not isinstance(msg, dict) or msg.get("v") != SYNC_VERSION:
        raise UnknownVersionError("repsync: unsupported response version")
    atts, done = msg.get("atts"), msg.get("done")
    if not isinstance(atts, list) or not isinstance(done, bool):
        raise DecodeError("repsync: a page is {'atts': [bytes], 'done': bool}")
    if not all(isinstance(a, bytes) for a in atts):
        raise DecodeError("repsync: attestations are byte strings")
    return atts, done


# --- what the node and the market call -------------------------------------------------


def reputation_of(ctx: Any) -> Reputation:
    """The running node's :class:`Reputation`, or one opened on the node's store."""
    if ctx.reputation is None:
        ctx.reputation = Reputation(ctx.store, ctx.identity, RepConfig.from_settings(ctx.settings))
    rep: Reputation = ctx.reputation
    return rep


async def start_reputation(ctx: Any, nursery: trio.Nursery) -> Reputation:
    """Attach reputation to the node; with a running P2P host, start gossip and sync.

    Pending local attestations (made with the CLI while the node was stopped) are published
    as soon as a peer listens on the topic.
    """
    rep = reputation_of(ctx)
    if ctx.p2p is not None:
        await nursery.start(rep.run, ctx.p2p)
    return rep


def check_install(
    ctx: Any, skill: str, publisher: bytes | None = None, *, override: bool = False
) -> Assessment:
    """The install gate: raises :class:`InstallRefused` for flagged or revoked skills."""
    return reputation_of(ctx).check_install(skill, publisher, override=override)
