"""The skill market across real libp2p nodes on loopback: publish, discover, transfer, seed.

Five-plus nodes in one process: a seed A, a publisher P, bystanders, and a user U that only
knows A. Skills are real signed packages (the built-in WebAssembly calculator, renamed).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from bitterbot.agent.skills import SkillManager, accept_declared, read_folder
from bitterbot.node.config import load_settings
from bitterbot.node.context import NodeContext
from bitterbot.node.home import Home
from bitterbot.node.market import BAN_THRESHOLD, Market
from bitterbot.node.p2p.framing import frame as frame_bytes
from bitterbot.node.p2p.host import P2PConfig, P2PHost
from bitterbot.node.skills_store import LmdbSkillRecords
from bitterbot.node.store import Store
from bitterbot.protocol import transfer
from bitterbot.protocol.catalog import catalog_key, parse_catalog
from bitterbot.protocol.errors import BitterbotError, StaleError
from bitterbot.protocol.identity import Identity, encode_key
from bitterbot.protocol.skillpkg import build_package, sign_package

BUILTIN_CALC = Path(__file__).parents[2] / "agent" / "builtin" / "calculator"


def calc_package(publisher: Identity, name: str = "calc-net", version: str = "1.0.0") -> bytes:
    files = {k: v for k, v in read_folder(BUILTIN_CALC).items() if not k.startswith("src/")}
    skill_md = files["SKILL.md"].decode().replace("name: calculator", f"name: {name}")
    files["SKILL.md"] = skill_md.encode()
    manifest = (
        files["bitterbot.toml"].decode().replace('version = "1.0.0"', f'version = "{version}"')
    )
    files["bitterbot.toml"] = manifest.encode()
    return sign_package(build_package(files), publisher, int(time.time() * 1000)).to_bytes()


@dataclass
class MarketNode:
    name: str
    p2p: P2PHost
    market: Market
    ctx: NodeContext
    cancel: trio.CancelScope

    async def stop(self) -> None:
        await self.p2p.stop()
        self.cancel.cancel()


class AlteringMarket(Market):
    """A provider that serves the right size but flips one byte of every package."""

    async def _serve_package(self, stream: Any, package_id: str, offset: int) -> None:
        data = bytearray((self.dir / f"{package_id}.bbskill").read_bytes())
        data[len(data) // 2] ^= 0xFF
        for frame in transfer.iter_response(bytes(data), offset):
            await stream.write(frame_bytes(frame))


@pytest.fixture
async def market_factory(
    tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Callable[..., Any]]:
    nodes: list[MarketNode] = []
    stores: list[Store] = []

    async def make(
        name: str, seeds: list[MarketNode] = (), cls: type[Market] = Market
    ) -> MarketNode:  # type: ignore[assignment]
        home = Home(tmp_path / name).ensure()
        store = Store(home.db_path)
        stores.append(store)
        settings = load_settings(home.path, env={})
        p2p = P2PHost(
            home.identity(),
            P2PConfig(
                seeds=[_addr(s.p2p) for s in seeds],
                refresh_interval_s=1.0,
                backoff_initial_s=0.2,
            ),
            store=store,
        )
        ctx = NodeContext(settings, home, store, home.identity())
        ctx.p2p = p2p
        market = cls(ctx, reannounce_s=3600)
        market.register()
        ctx.market = market
        await nursery.start(p2p.run)
        scope = trio.CancelScope()

        async def run_market() -> None:
            with scope:
                await market.run()

        nursery.start_soon(run_market)
        node = MarketNode(name, p2p, market, ctx, scope)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.stop()
    for store in stores:
        store.close()


def _addr(p2p: P2PHost) -> str:
    return next(a for a in p2p.listen_addrs() if a.startswith("/ip4/127.0.0.1/"))


async def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> None:
    with trio.move_on_after(timeout):
        while not await predicate():
            await trio.sleep(0.2)
        return
    raise AssertionError(f"not within {timeout} s")


async def found_by(user: MarketNode, **query: str) -> bool:
    try:
        return bool(await user.market.search(**query))
    except BitterbotError:
        return False


def install(node: MarketNode, data: bytes) -> SkillManager:
    manager = SkillManager(node.ctx.home.path / "skills", LmdbSkillRecords(node.ctx.store))
    manager.install(data, accept_declared)
    return manager


async def test_publish_find_install_run_and_survive_cheaters_and_publisher_loss(
    market_factory: Callable[..., Any],
) -> None:
    seed = await market_factory("seed")
    publisher = await market_factory("publisher", [seed])
    bystander = await market_factory("bystander", [seed])
    cheat = await market_factory("cheat", [seed], AlteringMarket)
    user = await market_factory("user", [seed])
    late = await market_factory("late", [seed])
    for node in (publisher, bystander, cheat, user, late):
        await wait_for(lambda n=node: _ready(n))

    ident = publisher.ctx.identity
    data = calc_package(ident)
    published = await publisher.market.publish(data)
    assert published["name"] == "calc-net" and published["catalog_seq"] == 1
    package_id = published["package_id"]

    # the user was only ever given the seed's address: it finds the skill through the DHT,
    # by name and by tag
    assert user.p2p.config.seeds == [_addr(seed.p2p)]
    await wait_for(lambda: found_by(user, name="calc-net"))
    [offer] = await user.market.search(name="calc-net")
    assert offer.publisher == ident.public_key and offer.entry.package_id == package_id
    assert publisher.p2p.peer_id in offer.providers
    by_tag = await user.market.search(tag="math")
    assert [o.entry.name for o in by_tag] == ["calc-net"]
    assert await user.market.search(tag="cap:none")  # capability tags are announced too

    # a cheating provider serving altered bytes is dropped; the honest one completes it
    cheat.market._save_package(package_id, data)
    await cheat.market.seed(package_id)
    got = await user.market.download(
        package_id, [cheat.p2p.peer_id, publisher.p2p.peer_id], len(data)
    )
    assert got == data
    assert user.market.penalties().get(cheat.p2p.peer_id) == 1

    # install (verified, no code run) and run the skill on the user's node
    fetched = await user.market.fetch("calc-net")
    assert fetched["id"] == package_id and fetched["publisher"] == encode_key(ident.public_key)
    manager = install(user, Path(fetched["path"]).read_bytes())
    out = await manager.run("calc-net", "6 * 7")
    assert out.text.strip().endswith("= 42")
    manager.close()
    seeded = await user.market.seed(package_id, fetched["record"])
    assert seeded["seeding"] is True

    # with the publisher gone, a late node still gets it, from the seeding user
    await publisher.stop()
    await wait_for(lambda: found_by(late, name="calc-net"), timeout=30)
    late_fetch = await late.market.fetch("calc-net")
    assert late_fetch["id"] == package_id
    assert Path(late_fetch["path"]).read_bytes() == data


async def _ready(node: MarketNode) -> bool:
    return node.p2p.routing_table_size() >= 1


async def test_replayed_older_catalog_is_rejected(market_factory: Callable[..., Any]) -> None:
    seed = await market_factory("seed")
    publisher = await market_factory("publisher", [seed])
    user = await market_factory("user", [seed])
    for node in (publisher, user):
        await wait_for(lambda n=node: _ready(n))
    ident = publisher.ctx.identity
    await publisher.market.publish(calc_package(ident, version="1.0.0"))
    with publisher.ctx.store.read() as txn:
        old_record = txn.get("catalog_records", ident.public_key.hex())
    await publisher.market.publish(calc_package(ident, version="1.1.0"))

    await wait_for(lambda: found_by(user, name="calc-net"))
    [offer] = await user.market.search(name="calc-net")
    assert offer.entry.version == "1.1.0" and offer.seq == 2

    # the user has seen catalog 2: the old catalog 1 is a rollback, wherever it comes from
    with pytest.raises(StaleError, match="rollback"):
        user.market.check_catalog(old_record, key=catalog_key(ident.public_key))
    with pytest.raises(BitterbotError):
        await user.p2p.put_value(catalog_key(ident.public_key), old_record)
    # the DHT lookup itself picks the newest of the records it is handed
    newest = await user.p2p.get_value(catalog_key(ident.public_key))
    assert newest is not None and parse_catalog(newest).seq == 2
    # whatever record the DHT hands back, search only ever offers the newest catalog
    [offer] = await user.market.search(name="calc-net")
    assert offer.entry.version == "1.1.0" and offer.seq == 2
    # the highest sequence seen is persisted: a restarted market still refuses the replay
    restarted = Market(user.ctx)
    with pytest.raises(StaleError):
        restarted.check_catalog(old_record)


async def test_banned_provider_is_not_asked_again(market_factory: Callable[..., Any]) -> None:
    seed = await market_factory("seed")
    publisher = await market_factory("publisher", [seed])
    cheat = await market_factory("cheat", [seed], AlteringMarket)
    user = await market_factory("user", [seed])
    for node in (publisher, cheat, user):
        await wait_for(lambda n=node: _ready(n))
    data = calc_package(publisher.ctx.identity)
    package_id = (await publisher.market.publish(data))["package_id"]
    cheat.market._save_package(package_id, data)
    await cheat.market.seed(package_id)

    for _ in range(BAN_THRESHOLD):
        await user.market.download(
            package_id, [cheat.p2p.peer_id, publisher.p2p.peer_id], len(data)
        )
    assert user.market.penalties()[cheat.p2p.peer_id] == BAN_THRESHOLD
    await user.market.download(package_id, [cheat.p2p.peer_id, publisher.p2p.peer_id], len(data))
    assert user.market.penalties()[cheat.p2p.peer_id] == BAN_THRESHOLD  # not asked again
