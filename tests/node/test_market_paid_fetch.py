"""Buying a paid skill when the DHT names only a bad provider: the seller is asked last.

Three real nodes (market and payments, one shared TEST MONEY ledger): a seller, a node
holding an altered copy of the encrypted package that it provides, and a buyer whose
provider lookups never return the seller (its records did not reach the buyer; a small
network whose provide calls ran before the routing tables filled shows exactly this).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from bitterbot.agent.skills import read_folder
from bitterbot.node.config import load_settings
from bitterbot.node.market import start_market
from bitterbot.node.pay.service import start_payments
from bitterbot.node.service import NodeService
from bitterbot.protocol.errors import BitterbotError
from bitterbot.protocol.skillpkg import build_package, sign_package

pytestmark = pytest.mark.timeout(120)
BUILTIN_CALC = Path(__file__).parents[2] / "agent" / "builtin" / "calculator"
PRICE = 40


def paid_calc(identity: Any) -> bytes:
    files = {k: v for k, v in read_folder(BUILTIN_CALC).items() if not k.startswith("src/")}
    files["SKILL.md"] = files["SKILL.md"].replace(b"name: calculator", b"name: calc-paid")
    files["bitterbot.toml"] = files["bitterbot.toml"].replace(
        b"price = 0\n", f"price = {PRICE}\n".encode()
    )
    return sign_package(build_package(files), identity, int(time.time() * 1000)).to_bytes()


async def _node(tmp_path: Path, nursery: trio.Nursery, name: str, seeds: list[str]) -> Any:
    settings = load_settings(
        tmp_path / name,
        {
            "node.listen": ["/ip4/127.0.0.1/tcp/0"],
            "node.seeds": seeds,
            "api.listen": "127.0.0.1:0",
            "metrics.listen": "127.0.0.1:0",
            "pay.ledger_path": str(tmp_path / "ledger"),
            "pay.test_grant": 10_000,
        },
        env={},
    )
    service = NodeService(settings, starters=[start_market, start_payments])
    await nursery.start(service.run)
    return service.ctx


async def _until(predicate: Any, timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.2)


async def test_a_paid_skill_is_bought_from_its_seller_when_only_a_bad_provider_is_found(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    seller = await _node(tmp_path, nursery, "seller", [])
    seed = [f"{a}/p2p/{seller.p2p.peer_id}" for a in seller.p2p.listen_addrs()][:1]
    bad = await _node(tmp_path, nursery, "bad", seed)
    buyer = await _node(tmp_path, nursery, "buyer", seed)
    for node in (bad, buyer):
        await _until(lambda n=node: _true(n.p2p.routing_table_size() >= 1))
    published = await seller.market.publish(paid_calc(seller.identity))
    assert published["seller"] == seller.p2p.peer_id and published["price"] == PRICE

    # the bad node holds the encrypted package with one byte flipped, and provides it
    [offer] = await _search_until(bad, "calc-paid")
    blob = bytearray((seller.market.dir / f"{offer.entry.package_id}.bbpaid").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (bad.market.dir / f"{offer.entry.package_id}.bbpaid").write_bytes(bytes(blob))
    await bad.market._serve_paid_blob(offer)

    # the buyer's lookups never return the seller
    lookup = buyer.p2p.find_providers

    async def without_seller(key: bytes, count: int = 20) -> list[Any]:
        return [p for p in await lookup(key, count) if p.peer_id != seller.p2p.peer_id]

    buyer.p2p.find_providers = without_seller
    [seen] = await _search_until(buyer, "calc-paid")
    assert seen.providers == [bad.p2p.peer_id] and seen.entry.seller == seller.p2p.peer_id

    fetched = await buyer.market.fetch("calc-paid", max_price=PRICE)
    assert fetched["paid"]["amount"] == PRICE and fetched["name"] == "calc-paid"
    assert buyer.market.penalties() == {bad.p2p.peer_id: 1}  # its altered bytes were refused
    paid = [c["paid"] for c in buyer.payments.channels() if c["peer"] == seller.p2p.peer_id]
    assert paid == [PRICE]


async def _true(value: bool) -> bool:
    return value


async def _search_until(ctx: Any, name: str) -> list[Any]:
    offers: list[Any] = []

    async def found() -> bool:
        nonlocal offers
        try:
            offers = await ctx.market.search(name=name)
        except BitterbotError:
            return False
        return bool(offers)

    await _until(found)
    return offers
