"""The skill market on a node: publish, discover through the DHT, transfer, seed.

Publishing keeps the signed package in ``<home>/packages/<id>.bbskill``, adds it to this
node's signed publisher catalog (sequence number +1), stores the catalog as a DHT value
record and announces provider records for the package, the skill's name and each tag
(SPEC.md section 10). Everything is announced again every ``market.reannounce_s`` seconds
and right after the node first joins a network, so records outlive their DHT expiry.

Searching asks the DHT for providers of the name (or tag) key, asks each provider for the
signed catalogs it holds (``find`` on ``/bitterbot/skill/1.0.0``), checks each catalog's
signature and sequence number (a catalog older than the newest one seen for its publisher
is refused: rollback), and cross-checks the publisher's catalog record in the DHT.

Fetching downloads from providers in turn, verifying order, size and the content hash
(:class:`bitterbot.protocol.transfer.Download`). A provider that sends wrong bytes, breaks
the protocol or trickles is dropped and penalized; after three penalties it is not asked
again. A node that installed a free skill provides it too (seeding) unless
``skills.seed_installed`` is off.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from bitterbot.node.context import NodeContext
from bitterbot.node.p2p import framing
from bitterbot.node.skills_store import packages_dir
from bitterbot.node.store import Txn
from bitterbot.protocol import transfer
from bitterbot.protocol.catalog import (
    NAMESPACE,
    Catalog,
    CatalogEntry,
    catalog_key,
    make_catalog,
    name_key,
    package_key,
    parse_catalog,
    select_newest,
    tag_key,
)
from bitterbot.protocol.errors import (
    BitterbotError,
    NetworkError,
    NotFoundError,
    NotRunningError,
    PaymentError,
    StaleError,
    ValidationError,
)
from bitterbot.protocol.identity import encode_key
from bitterbot.protocol.paidpkg import is_paid_package
from bitterbot.protocol.skill_manifest import compare_versions
from bitterbot.protocol.skillpkg import (
    PACKAGE_SUFFIX,
    Limits,
    VerifiedPackage,
    content_id,
    is_content_id,
    read_package,
    verify_package,
)

if TYPE_CHECKING:
    from bitterbot.node.p2p.host import P2PHost

logger = logging.getLogger(__name__)

OWN_DB = "market_own"  # name -> catalog entry object of this node's published skills
META_DB = "market_meta"  # "seq" -> this node's catalog sequence number
SEEN_DB = "catalog_seen"  # publisher hex -> highest catalog seq seen (rollback guard)
RECORDS_DB = "catalog_records"  # publisher hex -> newest raw catalog record held
SERVED_DB = "market_served"  # package id -> {"name", "publisher", "tags", "own"}
PENALTY_DB = "peer_penalties"  # peer id -> penalty count

PAID_SUFFIX = ".bbpaid"
BAN_THRESHOLD = 3
FRAME_TIMEOUT_S = 10.0
MIN_RATE_BYTES_S = 64 * 1024  # a provider slower than this after the grace period trickles
TRICKLE_GRACE_S = 3.0
FIND_TIMEOUT_S = 8.0
MAX_PROVIDERS = 8


class BadProviderError(transfer.BadProviderError):
    code = "bad_provider"


@dataclass
class Offer:
    """One search result: a skill version from one publisher, and who provides it."""

    entry: CatalogEntry
    publisher: bytes
    seq: int
    providers: list[str]
    record: bytes

    def to_obj(self) -> dict[str, Any]:
        return {
            **self.entry.to_obj(),
            "publisher": encode_key(self.publisher),
            "catalog_seq": self.seq,
            "providers": self.providers,
        }


class Market:
    def __init__(self, ctx: NodeContext, *, reannounce_s: float = 3600.0) -> None:
        if ctx.p2p is None:
            raise NotRunningError(
                "the market needs the p2p host, which is not running",
                hint="start the node's network first (bitterbot node start)",
                code="p2p_not_running",
            )
        self.ctx = ctx
        self.p2p: P2PHost = ctx.p2p
        self.store = ctx.store
        self.dir = packages_dir(ctx.home.path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.reannounce_s = reannounce_s
        self.limits = Limits(max_package_bytes=int(ctx.settings["skills.max_package_bytes"]))
        self.announced = trio.Event()  # set after each full announcement round
        self.last_announce: dict[str, Any] = {}
        self._lock = trio.Lock()

    # --- lifecycle ----------------------------------------------------------------------
    def register(self) -> None:
        """Register the DHT validator and the transfer protocol on the host."""
        self.p2p.register_namespace(
            NAMESPACE, self._validate_record, select_newest, max_value_bytes=32 * 1024
        )
        self.p2p.set_stream_handler(transfer.PROTOCOL_ID, self.handle_stream)

    async def run(self) -> None:
        """Announce now, again when the node first joins a network, then periodically."""
        await self.announce_all()
        if not self.p2p.bootstrapped.is_set():
            await self.p2p.bootstrapped.wait()
            await self.announce_all()
        while True:
            await trio.sleep(self.reannounce_s)
            await self.announce_all()

    # --- DHT record validation ------------------------------------------------------------
    def _validate_record(self, key: str, value: bytes) -> None:
        """DHT validator: a valid catalog for this key, not older than the newest seen."""
        self.check_catalog(value, key=key)

    def _seen(self, publisher: bytes) -> int:
        with self.store.read() as txn:
            return int(txn.get(SEEN_DB, publisher.hex(), 0))

    def _remember(self, catalog: Catalog) -> None:
        """Persist the highest sequence seen for the publisher, and the record itself."""

        def fn(txn: Txn) -> None:
            key = catalog.publisher.hex()
            if catalog.seq > int(txn.get(SEEN_DB, key, 0)):
                txn.put(SEEN_DB, key, catalog.seq)
                txn.put(RECORDS_DB, key, catalog.to_bytes())

        self.store.transact(fn)

    def check_catalog(self, record: bytes, key: str | None = None) -> Catalog:
        """Parse a catalog from the network, refusing one older than the newest seen."""
        catalog = parse_catalog(record, key=key)
        seen = self._seen(catalog.publisher)
        if catalog.seq < seen:
            raise StaleError(
                f"catalog {catalog.seq} of {encode_key(catalog.publisher)} is older than "
                f"{seen} already seen (rollback)"
            )
        if catalog.seq > seen:
            self._remember(catalog)
        return catalog

    # --- publishing -----------------------------------------------------------------------
    async def publish(self, data: bytes) -> dict[str, Any]:
        """Publish a signed package file signed by this node's publisher key."""
        verified = verify_package(data, self.limits)
        async with self._lock:
            catalog = await trio.to_thread.run_sync(self._add_to_catalog, verified, data)
        await self.announce_all()
        entry = catalog.find(verified.manifest.name)
        assert entry is not None
        return {
            **entry.to_obj(),
            "publisher": encode_key(catalog.publisher),
            "catalog_seq": catalog.seq,
            "announced": self.last_announce,
        }

    def _add_to_catalog(self, verified: VerifiedPackage, data: bytes) -> Catalog:
        man = verified.manifest
        identity = self._publisher_identity(verified.publisher)
        package_id, served, seller = verified.id, data, ""
        if man.price > 0:
            served = self._sell(verified, data, identity)
            package_id, seller = content_id(served), self.p2p.peer_id
        self._save_package(package_id, served)
        entry = CatalogEntry(
            man.name,
            man.version,
            package_id,
            len(served),
            man.price,
            discovery_tags(man),
            man.description[:280],
            seller,
        )

        def fn(txn: Txn) -> Catalog:
            current = txn.get(OWN_DB, man.name)
            if current and compare_versions(man.version, current["version"]) < 0:
                raise ValidationError(
                    f"{man.name} {man.version} is older than the published {current['version']}",
                    hint="publish a higher version",
                )
            txn.put(OWN_DB, man.name, entry.to_obj())
            seq = int(txn.get(META_DB, "seq", 0)) + 1
            txn.put(META_DB, "seq", seq)
            entries = [_entry_from(obj) for _, obj in txn.items(OWN_DB)]
            catalog = make_catalog(identity, seq, entries, int(time.time() * 1000))
            key = identity.public_key.hex()
            txn.put(SEEN_DB, key, seq)
            txn.put(RECORDS_DB, key, catalog.to_bytes())
            txn.put(
                SERVED_DB,
                package_id,
                {"name": man.name, "publisher": key, "tags": list(entry.tags), "own": True},
            )
            return catalog

        return self.store.transact(fn)

    def _sell(self, verified: VerifiedPackage, data: bytes, identity: Any) -> bytes:
        """Encrypt a paid package and offer licenses for its major version."""
        from bitterbot.protocol.skill_manifest import parse_version

        if self.ctx.payments is None:
            raise PaymentError(
                "payments are not running on this node, so it cannot sell",
                hint="restart the node (payments start with it)",
            )
        man = verified.manifest
        blob: bytes = self.ctx.payments.sell_package(
            man.name,
            data,
            man.price,
            version_min=man.version,
            version_below=f"{parse_version(man.version)[0] + 1}.0.0",
            publisher=identity,
        )
        return blob

    def _publisher_identity(self, publisher: bytes) -> Any:
        """The key that signed the package must be one this node holds."""
        if publisher == self.ctx.identity.public_key:
            return self.ctx.identity
        ident = self.ctx.home.publisher_identity()
        if ident is not None and ident.public_key == publisher:
            return ident
        raise ValidationError(
            f"the package is signed by {encode_key(publisher)}, a key this node does not hold",
            hint="publish from the node that holds the publisher key (bitterbot key show)",
        )

    def path_for(self, package_id: str, data: bytes | None = None) -> Path:
        """``<id>.bbskill`` for packages, ``<id>.bbpaid`` for encrypted paid packages."""
        paid = self.dir / f"{package_id}{PAID_SUFFIX}"
        if (data is not None and is_paid_package(data)) or (data is None and paid.exists()):
            return paid
        return self.dir / f"{package_id}{PACKAGE_SUFFIX}"

    def _save_package(self, package_id: str, data: bytes) -> Path:
        from bitterbot.node.home import write_private

        path = self.path_for(package_id, data)
        if not path.exists():
            write_private(path, data)
        return path

    async def announce_all(self) -> dict[str, Any]:
        """Put this node's catalog record and provide every served package's keys."""
        with self.store.read() as txn:
            own_record = txn.get(RECORDS_DB, self.ctx.identity.public_key.hex())
            publisher_key = self._own_publisher_hex(txn)
            if publisher_key and publisher_key != self.ctx.identity.public_key.hex():
                own_record = txn.get(RECORDS_DB, publisher_key)
            served = [(pid, info) for pid, info in txn.items(SERVED_DB)]
        keys: list[bytes] = []
        for pid, info in served:
            keys.append(package_key(pid.decode()))
            keys.append(name_key(info["name"]))
            keys.extend(tag_key(t) for t in info.get("tags", []))
        ok = failed = 0
        if own_record is not None and publisher_key:
            try:
                await self.p2p.put_value(catalog_key(bytes.fromhex(publisher_key)), own_record)
                ok += 1
            except BitterbotError as exc:
                failed += 1
                logger.info("catalog announcement failed: %s", exc)
        for key in dict.fromkeys(keys):
            try:
                await self.p2p.provide(key)
                ok += 1
            except BitterbotError as exc:
                failed += 1
                logger.info("provider announcement failed: %s", exc)
        self.last_announce = {"records": ok, "failed": failed, "at": int(time.time())}
        self.announced.set()
        return self.last_announce

    @staticmethod
    def _own_publisher_hex(txn: Txn) -> str | None:
        for _, info in txn.items(SERVED_DB):
            if info.get("own"):
                return str(info["publisher"])
        return None

    # --- serving ----------------------------------------------------------------------------
    async def handle_stream(self, stream: Any) -> None:
        raw = await framing.read_frame(stream, max_size=transfer.MAX_FRAME, timeout=FRAME_TIMEOUT_S)
        req = transfer.decode_request(raw)
        if self._penalty(stream.peer_id) >= BAN_THRESHOLD * 3:
            await stream.write(framing.frame(transfer.encode_error("refused", "banned")))
            return
        if req["t"] == "find":
            records = self._records_for(req["name"], req["tag"])
            await stream.write(framing.frame(transfer.encode_catalogs(records)))
            return
        await self._serve_package(stream, req["id"], req["offset"])

    def _records_for(self, name: str | None, tag: str | None) -> list[bytes]:
        with self.store.read() as txn:
            publishers = {
                info["publisher"]
                for _, info in txn.items(SERVED_DB)
                if (name is not None and info["name"] == name.strip().lower())
                or (tag is not None and tag.strip().lower() in info.get("tags", []))
            }
            return [r for p in sorted(publishers) if (r := txn.get(RECORDS_DB, p)) is not None]

    async def _serve_package(self, stream: Any, package_id: str, offset: int) -> None:
        with self.store.read() as txn:
            served = txn.get(SERVED_DB, package_id) is not None
        path = self.path_for(package_id)
        if not served or not is_content_id(package_id) or not path.is_file():
            await stream.write(
                framing.frame(transfer.encode_error("not_found", "not provided here"))
            )
            return
        size = path.stat().st_size
        if offset > size:
            await stream.write(framing.frame(transfer.encode_error("bad_offset", "past the end")))
            return
        await stream.write(framing.frame(transfer.encode_meta(size)))
        with path.open("rb") as f:
            f.seek(offset)
            position = offset
            while True:
                chunk = await trio.to_thread.run_sync(f.read, transfer.CHUNK_SIZE)
                if not chunk:
                    break
                await stream.write(framing.frame(transfer.encode_data(position, chunk)))
                position += len(chunk)
        await stream.write(framing.frame(transfer.encode_end()))

    # --- searching --------------------------------------------------------------------------
    async def search(self, name: str | None = None, tag: str | None = None) -> list[Offer]:
        if (name is None) == (tag is None):
            raise ValidationError("search by a skill name or by --tag")
        key = name_key(name) if name is not None else tag_key(tag or "")
        providers = [
            p.peer_id
            for p in await self.p2p.find_providers(key, count=MAX_PROVIDERS)
            if p.peer_id != self.p2p.peer_id and self._penalty(p.peer_id) < BAN_THRESHOLD
        ]
        offers: dict[tuple[bytes, str], Offer] = {}
        answers: list[tuple[str, list[bytes]]] = []
        for record in self._records_for(name, tag):  # what this node itself holds
            answers.append((self.p2p.peer_id, [record]))

        async def ask(peer: str) -> None:
            with trio.move_on_after(FIND_TIMEOUT_S):
                try:
                    answers.append((peer, await self._find(peer, name, tag)))
                except transfer.BadProviderError as exc:
                    self._penalize(peer, str(exc))
                except BitterbotError as exc:
                    logger.info("find at %s failed: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in providers:
                nursery.start_soon(ask, peer)
        for peer, records in answers:
            for record in records:
                try:
                    catalog = self.check_catalog(record)
                except BitterbotError as exc:
                    logger.info("catalog from %s refused: %s", peer, exc)
                    continue
                for entry in catalog.entries:
                    if name is not None and entry.name != name.strip().lower():
                        continue
                    if tag is not None and tag.strip().lower() not in entry.tags:
                        continue
                    self._merge(offers, catalog, entry, record, peer)
        await self._cross_check(offers)
        return sorted(offers.values(), key=lambda o: (o.entry.name, encode_key(o.publisher)))

    def _merge(
        self,
        offers: dict[tuple[bytes, str], Offer],
        catalog: Catalog,
        entry: CatalogEntry,
        record: bytes,
        peer: str,
    ) -> None:
        k = (catalog.publisher, entry.name)
        current = offers.get(k)
        if current is None or catalog.seq > current.seq:
            providers = [peer] if current is None or current.entry != entry else current.providers
            offers[k] = Offer(entry, catalog.publisher, catalog.seq, providers, record)
        elif current.entry == entry and peer not in current.providers:
            current.providers.append(peer)

    async def _cross_check(self, offers: dict[tuple[bytes, str], Offer]) -> None:
        """Replace offers with the publisher's newer catalog from the DHT, if any."""
        for (publisher, skill_name), offer in list(offers.items()):
            try:
                record = await self.p2p.get_value(catalog_key(publisher))
            except BitterbotError as exc:
                logger.info("catalog lookup failed: %s", exc)
                continue
            if record is None:
                continue
            try:
                catalog = self.check_catalog(record, key=catalog_key(publisher))
            except BitterbotError as exc:
                logger.info("DHT catalog refused: %s", exc)
                continue
            entry = catalog.find(skill_name)
            if catalog.seq > offer.seq and entry is not None:
                same = entry.package_id == offer.entry.package_id
                offers[(publisher, skill_name)] = Offer(
                    entry, publisher, catalog.seq, offer.providers if same else [], record
                )

    async def _find(self, peer: str, name: str | None, tag: str | None) -> list[bytes]:
        stream = await self.p2p.open_stream(peer, transfer.PROTOCOL_ID)
        async with stream:
            await stream.write(framing.frame(transfer.encode_find(name=name, tag=tag)))
            raw = await framing.read_frame(
                stream, max_size=transfer.MAX_FRAME, timeout=FIND_TIMEOUT_S
            )
        return transfer.decode_catalogs(raw)

    # --- fetching ---------------------------------------------------------------------------
    async def resolve(self, source: str, publisher: str | None = None) -> Offer:
        """The offer to install for a skill name or package ID."""
        if is_content_id(source):
            return await self._resolve_id(source)
        offers = await self.search(name=source)
        if publisher is not None:
            offers = [o for o in offers if encode_key(o.publisher) == publisher]
        if not offers:
            raise NotFoundError(
                f"no skill named {source!r} found on the network",
                hint="check the name with: bitterbot skill search NAME",
            )
        if len(offers) > 1:
            names = ", ".join(encode_key(o.publisher) for o in offers)
            raise ValidationError(
                f"several publishers offer {source!r}: {names}",
                hint="choose one with --publisher KEY",
            )
        return offers[0]

    async def _resolve_id(self, package_id: str) -> Offer:
        found = await self.p2p.find_providers(package_key(package_id), count=MAX_PROVIDERS)
        providers = [p.peer_id for p in found if p.peer_id != self.p2p.peer_id]
        if not providers:
            raise NotFoundError(f"no provider of {package_id} found on the network")
        entry = CatalogEntry("?", "?", package_id, self.limits.max_package_bytes, 0, (), "")
        return Offer(entry, b"", 0, providers, b"")

    async def fetch(
        self, source: str, publisher: str | None = None, max_price: int = 0
    ) -> dict[str, Any]:
        """Download and verify a package from the network into the package folder.

        A paid skill is bought first (at most ``max_price``), over a payment channel to its
        seller, then decrypted with the content key that came with the license.
        """
        offer = await self.resolve(source, publisher)
        entry = offer.entry
        if entry.price > 0 and entry.price > max_price:
            raise PaymentError(
                f"{entry.name} {entry.version} costs {entry.price} (smallest unit)",
                hint=f"to buy it, run again with --max-price {entry.price}",
                code="price_not_accepted",
            )
        path = self.path_for(entry.package_id)
        if path.is_file():
            data = path.read_bytes()
        else:
            providers = list(offer.providers)
            for extra in await self.p2p.find_providers(
                package_key(entry.package_id), count=MAX_PROVIDERS
            ):
                if extra.peer_id not in providers and extra.peer_id != self.p2p.peer_id:
                    providers.append(extra.peer_id)
            if entry.seller and entry.seller not in providers and entry.seller != self.p2p.peer_id:
                # the seller serves what it sells, and we pay it anyway: ask it last, for
                # when its provider records never reached us but someone else's did
                providers.append(entry.seller)
            data = await self.download(entry.package_id, providers, entry.size)
            path = self._save_package(entry.package_id, data)
        bought = None
        if is_paid_package(data):
            data, bought = await self._buy(offer, data)
        verified = verify_package(data, self.limits)
        if offer.publisher and verified.publisher != offer.publisher:
            raise ValidationError("the package is signed by another key than its catalog's")
        if bought is not None:
            path = self._save_package(verified.id, data)
            await self._serve_paid_blob(offer)
        return {
            "id": verified.id,
            "path": str(path),
            "name": verified.manifest.name,
            "version": verified.manifest.version,
            "price": verified.manifest.price,
            "paid": bought,
            "publisher": encode_key(verified.publisher),
            "record": offer.record,
        }

    async def _buy(self, offer: Offer, blob: bytes) -> tuple[bytes, dict[str, Any]]:
        entry = offer.entry
        payments = self.ctx.payments
        if payments is None:
            raise PaymentError("payments are not running on this node", hint="restart the node")
        if not entry.seller:
            raise PaymentError(f"{entry.name} is paid but its catalog names no seller")
        purchase = await payments.purchase(
            entry.seller, entry.name, entry.version, max_price=entry.price
        )
        package: bytes = payments.unlock_package(entry.name, entry.version, blob, offer.publisher)
        return package, {"amount": purchase.price, "purchase_id": purchase.purchase_id.hex()}

    async def _serve_paid_blob(self, offer: Offer) -> None:
        """Seed an encrypted paid package: useless to others without their own license."""
        if not self.ctx.settings["skills.seed_installed"]:
            return
        entry = offer.entry

        def fn(txn: Txn) -> None:
            txn.put(
                SERVED_DB,
                entry.package_id,
                {"name": entry.name, "publisher": offer.publisher.hex(), "tags": list(entry.tags),
                 "own": False},
            )  # fmt: skip

        self.store.transact(fn)
        for key in (package_key(entry.package_id), name_key(entry.name)):
            try:
                await self.p2p.provide(key)
            except BitterbotError as exc:
                logger.info("seeding announcement failed: %s", exc)

    async def download(self, package_id: str, providers: list[str], max_size: int) -> bytes:
        def verify(data: bytes) -> bool:
            if is_paid_package(data):
                return content_id(data) == package_id
            try:
                return content_id(read_package(data, self.limits).archive) == package_id
            except BitterbotError:
                return False

        dl = transfer.Download(package_id, verify, max_size)
        errors: list[str] = []
        for peer in [p for p in providers if self._penalty(p) < BAN_THRESHOLD]:
            try:
                await self._download_from(peer, dl)
            except transfer.BadProviderError as exc:
                errors.append(f"{peer}: {exc.message}")
                suspects = dl.verdict() if "signed hash" in exc.message else [peer]
                for suspect in suspects:
                    self._penalize(suspect, exc.message)
                continue
            except BitterbotError as exc:  # gone, refused, timed out: resume elsewhere
                errors.append(f"{peer}: {exc.message}")
                continue
            if dl.done:
                return dl.data
        raise NetworkError(
            f"could not download {package_id} from {len(providers)} provider(s)",
            hint="; ".join(errors[-3:]) or "no provider is reachable; try again later",
        )

    async def _download_from(self, peer: str, dl: transfer.Download) -> None:
        stream = await self.p2p.open_stream(peer, transfer.PROTOCOL_ID)
        async with stream:
            await stream.write(framing.frame(dl.start(peer)))
            started, start_bytes = time.monotonic(), len(dl.received)
            while True:
                raw = await framing.read_frame(
                    stream, max_size=transfer.MAX_FRAME, timeout=FRAME_TIMEOUT_S
                )
                if dl.receive(raw):
                    return
                elapsed = time.monotonic() - started
                rate = (len(dl.received) - start_bytes) / max(elapsed, 1e-6)
                if elapsed > TRICKLE_GRACE_S and rate < MIN_RATE_BYTES_S:
                    raise BadProviderError(f"trickling at {rate / 1024:.0f} KiB/s")

    # --- seeding ----------------------------------------------------------------------------
    async def seed(self, package_id: str, record: bytes | None = None) -> dict[str, Any]:
        """Provide an installed free package to others (no-op when seeding is off)."""
        if not self.ctx.settings["skills.seed_installed"]:
            return {"seeding": False, "reason": "skills.seed_installed is off"}
        path = self.dir / f"{package_id}{PACKAGE_SUFFIX}"
        if not path.is_file():
            raise NotFoundError(f"package {package_id} is not on this node")
        verified = verify_package(path.read_bytes(), self.limits)
        man = verified.manifest
        if man.price > 0:
            return {"seeding": False, "reason": "paid skills are served by their publisher"}
        if record is not None:
            self.check_catalog(record)
        publisher = verified.publisher.hex()

        def fn(txn: Txn) -> None:
            txn.put(
                SERVED_DB,
                package_id,
                {"name": man.name, "publisher": publisher, "tags": list(tags), "own": False},
            )

        tags = discovery_tags(man)
        self.store.transact(fn)
        keys = [package_key(package_id), name_key(man.name), *(tag_key(t) for t in tags)]
        for key in keys:
            try:
                await self.p2p.provide(key)
            except BitterbotError as exc:
                logger.info("seeding announcement failed: %s", exc)
        return {"seeding": True, "id": package_id}

    # --- penalties --------------------------------------------------------------------------
    def _penalty(self, peer: str) -> int:
        with self.store.read() as txn:
            return int(txn.get(PENALTY_DB, peer, 0))

    def _penalize(self, peer: str, reason: str) -> None:
        logger.warning("provider %s penalized: %s", peer, reason)

        def fn(txn: Txn) -> None:
            txn.put(PENALTY_DB, peer, int(txn.get(PENALTY_DB, peer, 0)) + 1)

        self.store.transact(fn)

    def penalties(self) -> dict[str, int]:
        with self.store.read() as txn:
            return {k.decode(): int(v) for k, v in txn.items(PENALTY_DB)}


def discovery_tags(man: Any) -> tuple[str, ...]:
    """A manifest's tags plus one ``cap:<capability>`` tag per declared permission."""
    perms = man.permissions
    caps = {
        "cap:llm": perms.llm_tokens > 0,
        "cap:docs": perms.docs,
        f"cap:files-{perms.files}": perms.files != "none",
        "cap:net": bool(perms.net),
        "cap:none": perms.is_empty(),
    }
    return tuple(sorted(set(man.tags) | {tag for tag, on in caps.items() if on}))[:16]


def _entry_from(obj: dict[str, Any]) -> CatalogEntry:
    return CatalogEntry(
        obj["name"], obj["version"], obj["package_id"], obj["size"], obj["price"],
        tuple(obj["tags"]), obj["description"], obj.get("seller", ""),
    )  # fmt: skip


async def start_market(ctx: NodeContext, nursery: trio.Nursery) -> None:
    """Node subsystem starter: attach the market to ``ctx`` and announce in the background."""
    market = Market(ctx, reannounce_s=float(ctx.settings["market.reannounce_s"]))
    market.register()
    ctx.market = market
    nursery.start_soon(market.run)
