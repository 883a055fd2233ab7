"""Payments between real nodes: libp2p hosts on 127.0.0.1, real LMDB, child processes for crashes."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio
from child_script import read_line, sigkill_after, spawn_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitterbot.node.home import Home
from bitterbot.node.p2p.peer_id import peer_id_from_public_key
from bitterbot.node.pay.ledger import LedgerBackend
from bitterbot.node.pay.service import (
    CHANNELS,
    SOLD,
    NoLicenseError,
    Payments,
    PriceTooHighError,
    attempt_cheats,
    find_license,
    open_databases,
)
from bitterbot.node.store import Store
from bitterbot.protocol import channel as ch
from bitterbot.protocol import paidpkg
from bitterbot.protocol.errors import PaymentError
from bitterbot.protocol.identity import Identity

KEY = bytes(range(32))
GRANT = 100_000


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    backend = LedgerBackend.open(tmp_path / "ledger")
    yield backend
    backend.shutdown()


@pytest.fixture
async def pair(
    tmp_path: Path, nursery: trio.Nursery, p2p_factory: Any, dial_addr: Any, ledger: LedgerBackend
) -> tuple[Payments, Payments]:
    """A buyer and a seller node, connected, sharing one test-money ledger."""
    clock = Clock()
    nodes = []
    for name in ("buyer", "seller"):
        host = await p2p_factory(name)
        home = Home(tmp_path / name)
        store = Store(tmp_path / f"{name}-pay")  # LMDB: one handle per environment per process
        pay = Payments(
            home.identity(), store, ledger, p2p=host, clock_ms=clock, dispute_window_ms=1000
        )
        await nursery.start(pay.run)
        nodes.append(pay)
    buyer, seller = nodes
    await buyer.p2p.connect(dial_addr(seller.p2p))
    ledger.faucet_sync(buyer.me, GRANT)
    buyer.clock = clock  # type: ignore[attr-defined]
    return buyer, seller


async def test_purchase_delivers_license_and_key_and_reuses_the_channel(
    pair: tuple[Payments, Payments], ledger: LedgerBackend
) -> None:
    buyer, seller = pair
    seller.offer_skill("summarize", 250, KEY, version_min="1.0.0", version_below="2.0.0")
    seller.offer_skill("translate", 400, bytes(32))
    peer = seller.p2p.peer_id
    with pytest.raises(NoLicenseError):
        buyer.license_for("summarize", "1.2.0")
    with pytest.raises(PriceTooHighError):
        await buyer.purchase(peer, "summarize", "1.2.0", max_price=100)

    first = await buyer.purchase(peer, "summarize", "1.2.0", max_price=300)
    assert first.content_key == KEY and first.license.amount == 250
    package = paidpkg.encrypt_package(b"skill bytes", KEY, nonce=b"n" * 24)
    assert paidpkg.decrypt_package(package, first.content_key) == b"skill bytes"
    assert buyer.license_for("summarize", "1.9.9").license.buyer == buyer.me
    with pytest.raises(NoLicenseError):
        buyer.license_for("summarize", "2.0.0")

    await buyer.purchase(peer, "translate", "0.1.0", max_price=400)
    chans = buyer.channels()
    assert len(chans) == 1 and chans[0]["paid"] == 650 and chans[0]["nonce"] == 2
    (payee_view,) = seller.channels()
    assert payee_view["paid"] == 650 and payee_view["role"] == "payee"

    again = await buyer.purchase(peer, "summarize", "1.2.0", max_price=300)
    assert again.purchase_id == first.purchase_id
    assert buyer.channels()[0]["paid"] == 650  # bought already: nothing paid twice

    result = await buyer.close_channel(peer)
    assert result["paid"] == 650 and result["refunded"] == 10_000 - 650
    assert ledger.balance_sync(seller.me) == 650
    assert ledger.balance_sync(buyer.me) == GRANT - 650
    assert seller.channels()[0]["state"] == ch.CLOSED


async def test_cheating_vouchers_are_all_rejected_with_typed_errors(
    pair: tuple[Payments, Payments],
) -> None:
    buyer, seller = pair
    peer = seller.p2p.peer_id
    honest = await buyer.pay(peer, 30)
    rec = seller.channel_record(honest.channel)
    assert rec is not None and rec["amount"] == 30
    state = ch.ChannelState(ch.OpenMessage.from_obj(rec["open"]).terms, rec["nonce"], rec["amount"])
    cheats = ch.cheating_vouchers(buyer.identity, Identity.generate(), state, honest)
    expected = {
        "forgery": ch.ForgedVoucherError,
        "over_capacity": ch.OverCapacityError,
        "rollback": ch.LowerCumulativeError,
        "stale_nonce": ch.ReplayedVoucherError,
        "unknown_channel": ch.UnknownChannelError,
        "replay": ch.ReplayedVoucherError,
    }
    assert set(cheats) == set(expected)
    for kind, voucher in cheats.items():
        with pytest.raises(expected[kind]) as info:
            await buyer.send_voucher(peer, voucher)
        assert info.value.code == expected[kind].code, kind
    rec = seller.channel_record(honest.channel)
    assert rec is not None and rec["amount"] == 30 and rec["nonce"] == 1

    report = await attempt_cheats(buyer, peer)  # the API simnet's cheaters scenario uses
    assert sum(report["accepted"].values()) == 0 and len(report["attempts"]) == 6
    assert report["codes"]["forgery"] == "voucher_forged"

    await buyer.close_channel(peer)
    after_close = ch.sign_voucher(buyer.identity, honest.channel, 9, 90)
    with pytest.raises(ch.ChannelClosedError):
        await buyer.send_voucher(peer, after_close)


async def test_pay_per_call_meters_each_call(pair: tuple[Payments, Payments]) -> None:
    buyer, seller = pair

    async def shout(data: bytes) -> bytes:
        return data.upper()

    seller.offer_service("shout", 7, shout)
    peer = seller.p2p.peer_id
    assert await buyer.quote_service(peer, "shout") == 7
    assert await buyer.call_service(peer, "shout", b"hi", max_price=7) == b"HI"
    assert await buyer.call_service(peer, "shout", b"yo", max_price=10) == b"YO"
    with pytest.raises(PriceTooHighError):
        await buyer.call_service(peer, "shout", b"no", max_price=6)
    assert seller.channels()[0]["paid"] == 14


async def test_unilateral_close_settles_then_refunds_after_the_window(
    pair: tuple[Payments, Payments], ledger: LedgerBackend
) -> None:
    buyer, seller = pair
    peer = seller.p2p.peer_id
    v = await buyer.pay(peer, 300)
    res = await buyer.close_channel(peer, unilateral=True)
    assert res["state"] == ch.CLOSING
    assert await seller.watch_closing() == [v.channel]  # the payee notices and settles
    assert await seller.watch_closing() == []
    with pytest.raises(Exception) as info:
        await buyer.refund(v.channel.hex())
    assert info.value.code == "dispute_window_open"  # type: ignore[attr-defined]
    buyer.clock.ms += 1000  # type: ignore[attr-defined]
    assert await buyer.refund(v.channel.hex()) == 10_000 - 300
    assert ledger.balance_sync(seller.me) == 300
    assert ledger.balance_sync(buyer.me) == GRANT - 300


async def test_group_commit_batches_concurrent_vouchers_durably(
    tmp_path: Path, ledger: LedgerBackend, nursery: trio.Nursery
) -> None:
    payee_id, payers = Identity.generate(), [Identity.generate() for _ in range(8)]
    store = Store(tmp_path / "payee")
    payee = Payments(payee_id, store, ledger, dispute_window_ms=0)
    await nursery.start(payee.run)
    vouchers: list[ch.Voucher] = []
    for i, payer in enumerate(payers):
        ledger.faucet_sync(payer.public_key, 1000)
        terms = ch.new_terms(
            payer.public_key,
            payee_id.public_key,
            1000,
            backend="ledger",
            dispute_window_ms=0,
            now_ms=1,
            salt=bytes([i]) * 16,
        )
        signed = ch.open_channel(terms, payer)
        refused = await payee.handle_request(
            "not-the-payer", {"t": "open", "open": signed.to_obj()}
        )
        assert refused["ok"] is False and refused["error"]["code"] == "channel_open_invalid"
        reply = await payee.handle_request(
            peer_id_from_public_key(payer.public_key), {"t": "open", "open": signed.to_obj()}
        )
        msg = ch.OpenMessage.from_obj(reply["open"])
        ledger.lock_deposit_sync(msg)
        vouchers += [ch.sign_voucher(payer, msg.channel_id, n, n * 10) for n in range(1, 26)]

    accepted = 0

    async def send_all(vs: list[ch.Voucher]) -> None:
        nonlocal accepted
        for v in vs:
            reply = await payee.handle_request("-", {"t": "pay", "voucher": v.to_obj()})
            assert reply["ok"], reply
            accepted += 1

    async with trio.open_nursery() as n:
        for i in range(8):
            n.start_soon(send_all, vouchers[i * 25 : (i + 1) * 25])
    assert accepted == 200
    assert payee.committer.items >= 200 and payee.committer.batches < 200
    store.close()
    reopened = _open_store(tmp_path / "payee")
    with reopened.read() as txn:
        amounts = sorted(rec["amount"] for _, rec in txn.items(CHANNELS))
    assert amounts == [250] * 8
    reopened.close()


# --- crash tests (child processes killed with SIGKILL) -----------------------------------

CHILD = r"""
import json, os, signal, sys
from pathlib import Path
import trio
from bitterbot.node.home import Home
from bitterbot.node.store import Store
from bitterbot.node.p2p.host import P2PConfig, P2PHost
from bitterbot.node.pay.ledger import LedgerBackend
from bitterbot.node.pay.service import Payments

async def main(home, ledger, role, target):
    h = Home(Path(home)).ensure()
    store = Store(h.db_path)
    backend = LedgerBackend.open(Path(ledger))
    host = P2PHost(h.identity(), P2PConfig(listen=["/ip4/127.0.0.1/tcp/0"]), store=store)
    async with trio.open_nursery() as n:
        await n.start(host.run)
        pay = Payments(h.identity(), store, backend, p2p=host, dispute_window_ms=1000)
        await n.start(pay.run)
        if role == "seller":
            pay.offer_skill("summarize", 250, bytes(range(32)))
            print([a for a in host.listen_addrs() if "/127.0.0.1/" in a][0], flush=True)
            await trio.sleep_forever()
        peer = await host.connect(target)
        if role == "buyer-crash":
            pay.fault_hook = lambda step: os.kill(os.getpid(), signal.SIGKILL)
        got = await pay.purchase(peer, "summarize", "1.0.0", max_price=300)
        print(json.dumps({"key": got.content_key.hex(), "paid": pay.channels()[0]["paid"]}), flush=True)
        n.cancel_scope.cancel()

trio.run(main, *sys.argv[1:])
"""


@pytest.mark.timeout(180)
async def test_payee_killed_right_after_acknowledging_keeps_the_voucher(
    tmp_path: Path, pair: Any, p2p_factory: Any, ledger: LedgerBackend
) -> None:
    buyer, _ = pair
    seller_home = tmp_path / "child-seller"
    proc = await spawn_script(
        tmp_path, CHILD, str(seller_home), str(tmp_path / "ledger"), "seller", "-"
    )

    async def pay_twenty() -> list[Any]:
        peer = await buyer.p2p.connect(await read_line(proc))
        return [await buyer.pay(peer, 5) for _ in range(20)]

    acked = await sigkill_after(proc, pay_twenty)  # killed right after the 20th acknowledgement
    store = _open_store(Home(seller_home).db_path)
    with store.read() as txn:
        rec = txn.get(CHANNELS, acked[-1].channel)
    store.close()
    assert rec["amount"] == 100 and rec["nonce"] == 20
    assert ch.Voucher.from_obj(rec["voucher"]) == acked[-1]


def _open_store(path: Path) -> Store:
    store = Store(path)
    open_databases(store, (CHANNELS, SOLD))  # see pay.core.open_databases
    return store


async def _wait_sold(home: Path, n: int) -> None:
    store = _open_store(Home(home).db_path)  # LMDB is safe across processes
    try:
        with trio.fail_after(15):
            while True:
                with store.read() as txn:
                    if txn.count(SOLD) >= n:
                        return
                await trio.sleep(0.05)
    finally:
        store.close()


@pytest.mark.timeout(240)
async def test_buyer_killed_mid_purchase_retries_without_paying_twice(tmp_path: Path) -> None:
    ledger_dir = tmp_path / "ledger"
    buyer_home = Home(tmp_path / "child-buyer").ensure()
    backend = LedgerBackend.open(ledger_dir)
    backend.faucet_sync(buyer_home.identity().public_key, GRANT)
    seller = await spawn_script(
        tmp_path, CHILD, str(tmp_path / "child-seller"), str(ledger_dir), "seller", "-"
    )
    try:
        addr = await read_line(seller)
        crashed = await spawn_script(
            tmp_path, CHILD, str(buyer_home.path), str(ledger_dir), "buyer-crash", addr
        )
        with trio.fail_after(90):
            await crashed.wait()
        assert crashed.returncode == -signal.SIGKILL  # killed after sending its voucher
        # the seller took the payment and delivered into the void: the worst case for a retry
        await _wait_sold(tmp_path / "child-seller", 1)
        retry = await spawn_script(
            tmp_path, CHILD, str(buyer_home.path), str(ledger_dir), "buyer", addr
        )
        line = await read_line(retry, timeout=90)
        await retry.wait()
    finally:
        seller.kill()
        await seller.wait()
    import json

    result = json.loads(line)
    assert result == {"key": bytes(range(32)).hex(), "paid": 250}
    store = _open_store(Home(tmp_path / "child-seller").db_path)
    with store.read() as txn:
        sold = list(txn.items(SOLD))
        (chan,) = [rec for _, rec in txn.items(CHANNELS)]
    store.close()
    assert len(sold) == 1 and chan["amount"] == 250 and chan["nonce"] == 1
    assert backend.balance_sync(buyer_home.identity().public_key) == GRANT - 10_000
    backend.shutdown()
    assert os.path.exists(ledger_dir)


# --- the node: starter, API over a real socket, CLI --------------------------------------


async def test_cli_and_api_open_buy_status_close_on_running_nodes(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    import json

    from click.testing import CliRunner

    from bitterbot.node.cli.main import cli
    from bitterbot.node.config import load_settings
    from bitterbot.node.pay.service import start_payments
    from bitterbot.node.service import NodeService

    services = []
    for name in ("seller", "buyer"):
        settings = load_settings(
            tmp_path / name,
            {
                "node.listen": ["/ip4/127.0.0.1/tcp/0"],
                "api.listen": "127.0.0.1:0",
                "metrics.listen": "127.0.0.1:0",
                "pay.ledger_path": str(tmp_path / "ledger"),
                "pay.test_grant": 50_000,
                "pay.dispute_window_ms": 0,
            },
            env={},
        )
        service = NodeService(settings, starters=[start_payments])
        await nursery.start(service.run)
        services.append(service)
    seller, buyer = (s.ctx for s in services)
    seller.payments.offer_skill("summarize", 120, KEY)
    addr = [a for a in seller.p2p.listen_addrs() if "/127.0.0.1/" in a][0]
    peer = seller.p2p.peer_id

    env = {"BITTERBOT_PAY_LEDGER_PATH": str(tmp_path / "ledger")}

    def run(*args: str) -> Any:
        result = CliRunner().invoke(
            cli, [*args, "--home", str(tmp_path / "buyer"), "--json"], env=env
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    opened = await trio.to_thread.run_sync(run, "pay", "open", addr, "5000")  # dials first
    bought = await trio.to_thread.run_sync(
        run, "pay", "buy", peer, "summarize", "1.0.0", "--max-price", "200"
    )
    assert bought["price"] == 120 and bought["license"]["amount"] == 120
    status = await trio.to_thread.run_sync(run, "pay", "status")
    assert "TEST MONEY" in status["money"]
    assert status["balance"] == 50_000 - 5000
    (chan,) = status["channels"]
    assert chan["channel"] == opened["channel"] and chan["paid"] == 120  # the channel was reused
    closed = await trio.to_thread.run_sync(run, "pay", "close", peer)
    assert closed["paid"] == 120 and closed["refunded"] == 5000 - 120
    assert seller.payments.backend.balance_sync(seller.identity.public_key) == 50_000 + 120
    for s in services:
        s.stop()


async def test_api_refuses_float_amounts_and_reports_payments_not_running(
    tmp_path: Path, ledger: LedgerBackend
) -> None:
    import httpx

    from bitterbot.node.api.app import build_app
    from bitterbot.node.config import load_settings
    from bitterbot.node.context import NodeContext

    home = Home(tmp_path / "api").ensure()
    store = Store(home.db_path)
    ctx = NodeContext(load_settings(home.path, env={}), home, store, home.identity())
    app = build_app(ctx, "t" * 40)
    headers = {"Authorization": "Bearer " + "t" * 40}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1", headers=headers
    ) as client:
        resp = await client.get("/v1/pay/status")
        assert resp.status_code == 503  # a part of the node that is not running
        assert resp.json()["error"]["code"] == "payments_not_running"
        ctx.payments = Payments(ctx.identity, store, ledger)
        resp = await client.post("/v1/pay/open", json={"peer": "12D3KooW", "amount": 1.5})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid"
        ledger.faucet_sync(ctx.identity.public_key, 77)
        resp = await client.get("/v1/pay/status")
        assert resp.json()["balance"] == 77 and resp.json()["money"] == "TEST MONEY"
        resp = await client.post("/v1/pay/close", json={"target": "deadbeefdeadbeef"})
        assert resp.status_code == 404
    store.close()


async def test_license_is_signed_by_a_separate_publisher_key(
    pair: tuple[Payments, Payments],
) -> None:
    buyer, seller = pair
    publisher = Identity.generate()
    seller.offer_skill("lint", 99, KEY, publisher=publisher)
    got = await buyer.purchase(seller.p2p.peer_id, "lint", "3.1.0", max_price=99)
    assert got.license.publisher == publisher.public_key
    found = buyer.license_for("lint", "3.1.0", publisher=publisher.public_key)
    assert found.content_key == KEY
    # the same check without a Payments object (the skill runtime, in-process)
    assert find_license(buyer.store, buyer.me, "lint", "3.1.0").purchase_id == found.purchase_id
    with pytest.raises(NoLicenseError):
        find_license(buyer.store, seller.me, "lint", "3.1.0")  # another node's key
    with pytest.raises(NoLicenseError):
        buyer.license_for("lint", "3.1.0", publisher=seller.me)  # not the skill's publisher


async def test_a_restarted_seller_signs_licenses_with_its_publisher_key_file(
    tmp_path: Path, nursery: trio.Nursery, pair: tuple[Payments, Payments], ledger: LedgerBackend
) -> None:
    from bitterbot.node.home import PUBLISHER_KEY_FILE, write_private

    buyer, seller = pair
    publisher = Identity.generate()
    home = Home(tmp_path / "seller")
    write_private(home.path / PUBLISHER_KEY_FILE, publisher.seed)
    seller.offer_skill("lint", 99, KEY, publisher=publisher)  # the offer is persisted
    # the seller restarts: a new Payments on the same store and host
    restarted = Payments(seller.identity, seller.store, ledger, p2p=seller.p2p)
    await nursery.start(restarted.run)
    with pytest.raises(PaymentError, match="publisher key"):
        await buyer.purchase(seller.p2p.peer_id, "lint", "1.0.0", max_price=99)
    restarted.load_publisher_key(home)  # what start_payments does at node start
    got = await buyer.purchase(seller.p2p.peer_id, "lint", "1.0.0", max_price=99)
    assert got.license.publisher == publisher.public_key
    assert home.publisher_identity().public_key == publisher.public_key


async def test_revenue_shares_are_shown_and_forwarded_once(
    tmp_path: Path,
    nursery: trio.Nursery,
    pair: tuple[Payments, Payments],
    p2p_factory: Any,
    dial_addr: Any,
    ledger: LedgerBackend,
) -> None:
    buyer, seller = pair
    host = await p2p_factory("coauthor")
    coauthor = Payments(
        Home(tmp_path / "coauthor").identity(),
        Store(tmp_path / "coauthor-pay"),
        ledger,
        p2p=host,
        dispute_window_ms=1000,
    )
    await nursery.start(coauthor.run)
    await seller.p2p.connect(dial_addr(host))
    ledger.faucet_sync(seller.me, GRANT)
    seller.offer_skill("audited", 500, KEY, splits=[(coauthor.me, 2000)])

    quote = await buyer.quote_skill(seller.p2p.peer_id, "audited")
    assert quote["price"] == 500 and quote["publisher_share"] == 400
    await buyer.purchase(seller.p2p.peer_id, "audited", "1.0.0", max_price=500)
    assert seller.owed() == {coauthor.me: 100}

    assert await seller.forward_shares() == {host.peer_id: 100}
    assert seller.owed() == {}
    assert await seller.forward_shares() == {}  # nothing is paid twice
    (received,) = coauthor.channels()
    assert received["role"] == "payee" and received["paid"] == 100


async def test_unacknowledged_vouchers_are_resent_before_the_next_payment(
    pair: tuple[Payments, Payments],
) -> None:
    """A voucher signed but never sent (crash), and one sent whose reply was lost."""
    buyer, seller = pair
    peer = seller.p2p.peer_id
    first = await buyer.pay(peer, 5)
    never_sent = await trio.to_thread.run_sync(
        buyer._sign_and_record, first.channel, 7, b"r1", {"kind": "pay", "peer": peer}
    )
    await buyer.pay(peer, 11)  # resends the 7 first, else the payee would see 18 at once
    assert seller.channels()[0]["paid"] == 23
    reply_lost = await trio.to_thread.run_sync(
        buyer._sign_and_record, first.channel, 13, b"r2", {"kind": "pay", "peer": peer}
    )
    await buyer.send_voucher(peer, reply_lost)  # delivered, but the record stays pending
    await buyer.pay(peer, 2)
    assert seller.channels()[0]["paid"] == 38
    assert buyer.bought(b"r1") is None and buyer.bought(b"r2") is None
    assert never_sent.nonce == 2 and reply_lost.nonce == 4


async def test_a_peer_cannot_pile_up_channels_without_deposits(
    tmp_path: Path, ledger: LedgerBackend
) -> None:
    from bitterbot.node.pay.seller import MAX_UNFUNDED_PER_PEER

    payee_id, payer = Identity.generate(), Identity.generate()
    store = Store(tmp_path / "payee")
    payee = Payments(payee_id, store, ledger, dispute_window_ms=0)
    peer = peer_id_from_public_key(payer.public_key)
    codes = []
    for i in range(MAX_UNFUNDED_PER_PEER + 2):
        terms = ch.new_terms(
            payer.public_key,
            payee_id.public_key,
            100,
            backend="ledger",
            dispute_window_ms=0,
            now_ms=1,
            salt=bytes([i]) * 16,
        )
        reply = await payee.handle_request(
            peer, {"t": "open", "open": ch.open_channel(terms, payer).to_obj()}
        )
        codes.append("ok" if reply["ok"] else reply["error"]["code"])
    assert codes == ["ok"] * MAX_UNFUNDED_PER_PEER + ["channel_open_invalid"] * 2
    voucher = ch.sign_voucher(payer, terms.channel_id, 1, 1)  # the refused open
    reply = await payee.handle_request(peer, {"t": "pay", "voucher": voucher.to_obj()})
    assert reply["error"]["code"] == "unknown_channel"
    first = payee.channels()[0]
    unfunded = ch.sign_voucher(payer, bytes.fromhex(first["channel"]), 1, 1)
    reply = await payee.handle_request(peer, {"t": "pay", "voucher": unfunded.to_obj()})
    assert reply["error"]["code"] == "deposit_missing"  # countersigned, but never locked
    store.close()


OUR_MODULES = {"errors", "channel", "settlement", "license", "paidpkg"}
OUR_MODULES = {f"bitterbot.protocol.{m}" for m in OUR_MODULES}
OUR_MODULES |= {"bitterbot.node.pay.ledger", "bitterbot.node.pay.core", "bitterbot.node.pay.seller"}
OUR_MODULES |= {"bitterbot.node.pay.buyer", "bitterbot.node.pay.service", "bitterbot.node.api.pay"}
OUR_MODULES |= {"bitterbot.protocol.cashu", "bitterbot.node.pay.cashu_wallet"}


def test_every_payment_error_code_is_documented_in_spec() -> None:
    import bitterbot.node.pay.service  # noqa: F401  (defines the node-side errors)
    import bitterbot.protocol.paidpkg  # noqa: F401
    import bitterbot.protocol.settlement  # noqa: F401
    from bitterbot.protocol.errors import PaymentError

    spec = (Path(__file__).parents[2] / "SPEC.md").read_text()
    section = spec[spec.index("## 12. Payments") : spec.index("## 13.")]
    todo, codes = [PaymentError], set()
    while todo:
        cls = todo.pop()
        if cls.__module__ in OUR_MODULES:
            codes.add(cls.code)
        todo.extend(cls.__subclasses__())
    codes.add("publisher_key_missing")  # raised with code=, no own class
    missing = sorted(c for c in codes if f"`{c}`" not in section)
    assert not missing, f"undocumented payment error codes: {missing}"


async def test_paid_package_round_trip_through_sell_buy_unlock(
    pair: tuple[Payments, Payments],
) -> None:
    buyer, seller = pair
    package = os.urandom(20_000)
    blob = seller.sell_package("weather", package, 300, version_min="2.0.0", version_below="3.0.0")
    assert paidpkg.is_paid_package(blob) and package not in blob  # what seeders serve
    with pytest.raises(NoLicenseError):
        buyer.unlock_package("weather", "2.1.0", blob)
    await buyer.purchase(seller.p2p.peer_id, "weather", "2.1.0", max_price=300)
    assert buyer.unlock_package("weather", "2.1.0", blob, publisher=seller.me) == package


def test_start_grant_is_minted_once_even_after_spending(ledger: LedgerBackend) -> None:
    me, payee = Identity.generate(), Identity.generate()
    assert ledger.grant_once_sync(me.public_key, 1000) is True
    terms = ch.new_terms(
        me.public_key,
        payee.public_key,
        1000,
        backend="ledger",
        dispute_window_ms=0,
        now_ms=1,
        salt=b"g" * 16,
    )
    ledger.lock_deposit_sync(ch.open_channel(terms, me).countersign(payee))
    assert ledger.balance_sync(me.public_key) == 0
    assert ledger.grant_once_sync(me.public_key, 1000) is False
    assert ledger.balance_sync(me.public_key) == 0
    with pytest.raises(Exception) as info:
        ledger.lock_deposit_sync(
            ch.open_channel(
                ch.new_terms(
                    me.public_key,
                    payee.public_key,
                    1,
                    backend="ledger",
                    dispute_window_ms=0,
                    now_ms=1,
                    salt=b"h" * 16,
                ),
                me,
            ).countersign(payee)
        )
    assert info.value.code == "insufficient_funds"  # type: ignore[attr-defined]


_fuzz_leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40)
_fuzz_requests = st.dictionaries(
    st.sampled_from(["t", "voucher", "open", "close", "skill", "version", "purchase", "id"]),
    st.recursive(
        _fuzz_leaf | st.sampled_from(["pay", "buy", "open", "close", "call", "quote", "info"]),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["v", "channel", "nonce", "amount", "sig"]), inner)
        ),
        max_leaves=12,
    ),
    max_size=6,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(req=_fuzz_requests | _fuzz_leaf)
def test_arbitrary_requests_get_an_error_reply_never_an_exception(
    tmp_path_factory: pytest.TempPathFactory, req: Any
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")

    async def main() -> dict[str, Any]:
        ledger = LedgerBackend.open(folder / "ledger")
        store = Store(folder / "payee")
        try:
            payee = Payments(Identity.from_seed(b"f" * 32), store, ledger)
            return await payee.handle_request("peer", req)
        finally:
            store.close()
            ledger.shutdown()

    reply = trio.run(main)
    assert isinstance(reply, dict) and reply["ok"] in (True, False)
    if not reply["ok"]:
        assert isinstance(reply["error"]["code"], str)
    else:
        assert req.get("t") == "info"  # nothing else can succeed without a real channel


async def test_a_used_up_channel_is_replaced_and_closed(
    pair: tuple[Payments, Payments], ledger: LedgerBackend
) -> None:
    buyer, seller = pair
    peer = seller.p2p.peer_id
    first = await buyer.pay(peer, 6000)
    second = await buyer.pay(peer, 6000)  # does not fit the 10,000 channel any more
    assert second.channel != first.channel
    states = {c["channel"]: c["state"] for c in buyer.channels()}
    assert states == {first.channel.hex(): ch.CLOSED, second.channel.hex(): ch.OPEN}
    assert ledger.balance_sync(seller.me) == 6000  # the first channel settled
    assert ledger.balance_sync(buyer.me) == GRANT - 6000 - 10_000


async def test_without_require_deposit_an_unfunded_channel_is_accepted(
    tmp_path: Path, ledger: LedgerBackend
) -> None:
    """pay.require_deposit = false: unsecured vouchers, for test networks without a shared rail."""
    payee_id, payer = Identity.generate(), Identity.generate()
    store = Store(tmp_path / "payee")
    payee = Payments(payee_id, store, ledger, dispute_window_ms=0, require_deposit=False)
    peer = peer_id_from_public_key(payer.public_key)
    terms = ch.new_terms(
        payer.public_key,
        payee_id.public_key,
        100,
        backend="ledger",
        dispute_window_ms=0,
        now_ms=1,
        salt=b"u" * 16,
    )
    opened = await payee.handle_request(
        peer, {"t": "open", "open": ch.open_channel(terms, payer).to_obj()}
    )
    assert opened["ok"]
    voucher = ch.sign_voucher(payer, terms.channel_id, 1, 40)
    reply = await payee.handle_request(peer, {"t": "pay", "voucher": voucher.to_obj()})
    assert reply == {"ok": True, "amount": 40}
    store.close()


def test_a_peer_can_only_report_payment_errors() -> None:
    from bitterbot.node.pay.core import remote_error
    from bitterbot.protocol.errors import ConfigError

    forged = remote_error({"code": "voucher_forged", "message": "no"})
    assert isinstance(forged, ch.ForgedVoucherError) and forged.code == "voucher_forged"
    odd = remote_error({"code": "config_error", "message": "x" * 10_000, "hint": 5})
    assert not isinstance(odd, ConfigError) and odd.code == "remote_config_error"
    assert len(odd.message) < 600
    assert remote_error("junk").code == "payment_error"
