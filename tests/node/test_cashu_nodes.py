"""Payments on a real Cashu mint between nodes that share nothing but the mint.

Separate homes, separate LMDB stores and wallets, no ledger folder: a buyer's node and a
developer's node (``bitterbot node start`` processes driven by the CLI), in-process nodes on
real libp2p hosts for the cheating payer and the refund, and a payee child process killed
with SIGKILL right after acknowledging, which still settles after its restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from cashu_mint_fixture import cashu_mint  # noqa: F401  (fixture)
from child_script import read_line, sigkill_after, spawn_script
from test_market_cli import SHARED, calculator_named, cli, start_developer_and_user

from bitterbot.node.home import Home
from bitterbot.node.pay.cashu import CashuBackend
from bitterbot.node.pay.cashu_mint import LocalMint
from bitterbot.node.pay.service import CHANNELS, Payments, attempt_cheats, open_databases
from bitterbot.node.store import Store
from bitterbot.protocol import cashu as rules
from bitterbot.protocol import channel as ch

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def procs():
    started: list[Any] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()


def _json(out: Any) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_paid_skill_is_bought_on_cashu_and_the_seller_can_spend_its_ecash(
    tmp_path: Path,
    procs: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    cashu_mint: LocalMint,  # noqa: F811
) -> None:
    monkeypatch.setitem(SHARED, "BITTERBOT_PAY_BACKEND", f"cashu:{cashu_mint.url}")
    dev_home, user_home, dev_info = start_developer_and_user(tmp_path, procs)
    minted = _json(cli(user_home, "pay", "wallet", "mint", "20000", "--wait", "30", "--json"))
    assert minted["minted"] == 20_000 and minted["invoice"].startswith("lnbc")

    folder = calculator_named(tmp_path, "cashu-calc")
    published = _json(
        cli(dev_home, "skill", "publish", str(folder), "--price", "250", "--node-key", "--json")
    )
    assert published["price"] == 250
    deadline = time.monotonic() + 60
    offers: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not offers:
        offers = _json(cli(user_home, "skill", "search", "cashu-calc", "--json"))
        time.sleep(0.5)
    assert offers and offers[0]["price"] == 250

    dev_addr = next(a for a in dev_info["listen_addrs"] if a.startswith("/ip4/127.0.0.1/"))
    too_big = cli(user_home, "pay", "open", dev_addr, "50000")
    assert too_big.returncode != 0 and "pay wallet mint" in too_big.stderr  # 20,000 in the wallet
    opened = _json(cli(user_home, "pay", "open", dev_addr, "5000", "--json"))
    assert opened["test_money"] is False and opened["backend"].startswith("cashu:")
    bought = _json(
        cli(user_home, "skill", "install", "cashu-calc", "--yes", "--max-price", "250", "--json")
    )
    assert bought["paid"]["amount"] == 250
    ran = _json(cli(user_home, "skill", "run", "cashu-calc", "2 + 2", "--json"))
    assert ran["output"].strip().endswith("= 4")
    status = _json(cli(user_home, "pay", "status", "--json"))
    assert status["test_money"] is False and status["balance"] == 20_000 - 5_000
    (chan,) = status["channels"]  # the purchase used the channel opened by hand
    assert chan["channel"] == opened["channel"] and chan["paid"] == 250

    # the developer settles: its wallet now holds 250 sat of ecash, which it can spend
    settled = _json(cli(dev_home, "pay", "close", chan["channel"][:16], "--json"))
    assert settled["settled"] == 250
    assert settled["test_money"] is False and "TEST MONEY" not in settled["money"]
    assert _json(cli(dev_home, "pay", "wallet", "balance", "--json"))["balance"] == 250
    token = _json(cli(dev_home, "pay", "wallet", "send", "100", "--json"))["token"]
    assert _json(cli(user_home, "pay", "wallet", "receive", token, "--json"))["received"] == 100
    assert _json(cli(dev_home, "pay", "wallet", "balance", "--json"))["balance"] == 150

    # the buyer closes: the 4,750 it did not spend come back at once
    closed = _json(cli(user_home, "pay", "close", dev_info["peer_id"], "--json"))
    assert closed["paid"] == 250 and closed["refunded"] == 4_750
    assert closed["money"].startswith("sats of ecash (cashu:")  # never labelled TEST MONEY
    balance = _json(cli(user_home, "pay", "wallet", "balance", "--json"))["balance"]
    assert balance == 20_000 - 250 + 100


# --- in-process nodes on real libp2p hosts, each with its own store and wallet ------------


@pytest.fixture
async def cashu_pair(
    tmp_path: Path,
    nursery: trio.Nursery,
    p2p_factory: Any,
    dial_addr: Any,
    cashu_mint: LocalMint,  # noqa: F811
) -> tuple[Payments, Payments]:
    nodes = []
    for name in ("buyer", "seller"):
        host = await p2p_factory(name)
        home = Home(tmp_path / name)
        store = Store(tmp_path / f"{name}-pay")
        backend = CashuBackend(store, home.identity(), tmp_path / f"{name}-cashu", cashu_mint.url)
        pay = Payments(home.identity(), store, backend, p2p=host, dispute_window_ms=8_000)
        await nursery.start(pay.run)
        nodes.append(pay)
    buyer, seller = nodes
    await buyer.p2p.connect(dial_addr(seller.p2p))
    await buyer.backend.wallet.mint(30_000, 20)
    return buyer, seller


async def test_replayed_forged_and_over_capacity_vouchers_are_refused_on_cashu(
    cashu_pair: tuple[Payments, Payments],
) -> None:
    buyer, seller = cashu_pair
    report = await attempt_cheats(buyer, seller.p2p.peer_id, honest=10)
    assert sum(report["accepted"].values()) == 0
    assert report["codes"] == {
        "forgery": "voucher_forged",
        "over_capacity": "over_capacity",
        "rollback": "voucher_rolled_back",
        "stale_nonce": "voucher_replayed",
        "unknown_channel": "unknown_channel",
        "replay": "voucher_replayed",
    }
    (chan,) = seller.channels()
    assert chan["paid"] == 10
    # a correctly signed voucher without the proof signatures that cover it is refused too
    rec = buyer.channel_record(bytes.fromhex(chan["channel"]))
    assert rec is not None
    bare = ch.sign_voucher(buyer.identity, bytes.fromhex(chan["channel"]), 50, 5_000)
    with pytest.raises(Exception) as uncovered:
        await buyer.send_voucher(seller.p2p.peer_id, bare)
    assert uncovered.value.code == "cashu_invalid"  # type: ignore[attr-defined]


async def test_the_payer_refunds_after_the_locktime(cashu_pair: tuple[Payments, Payments]) -> None:
    buyer, seller = cashu_pair
    peer = seller.p2p.peer_id
    voucher = await buyer.pay(peer, 300)
    closing = await buyer.close_channel(peer, unilateral=True)
    with pytest.raises(Exception) as early:
        await buyer.refund(voucher.channel.hex())
    assert early.value.code == "dispute_window_open"  # type: ignore[attr-defined]
    assert await seller.settle(voucher.channel) == 300  # the payee settles in time
    await trio.sleep(max(0.0, closing["refund_after_ms"] / 1000 - time.time() + 1.5))
    assert await buyer.refund(voucher.channel.hex()) == 10_000 - 300
    assert await buyer.backend.balance(buyer.me) == 30_000 - 300
    assert await seller.backend.balance(seller.me) == 300


async def test_the_payee_settles_by_itself_before_the_locktime(
    cashu_pair: tuple[Payments, Payments],
) -> None:
    buyer, seller = cashu_pair
    voucher = await buyer.pay(seller.p2p.peer_id, 300)
    terms = ch.OpenMessage.from_obj(seller.channel_record(voucher.channel)["open"]).terms
    assert await seller.watch_closing() == []  # the locktime is far (more than half a window)
    due = (terms.created_ms + terms.dispute_window_ms // 2) / 1000  # margin: half the window
    await trio.sleep(max(0.0, due - time.time() + 0.2))
    assert await seller.watch_closing() == [voucher.channel]  # what the node's loop runs
    assert await seller.backend.balance(seller.me) == 300
    assert await seller.watch_closing() == []  # nothing more to swap


# --- a payee killed with SIGKILL right after acknowledging --------------------------------

CHILD = r"""
import sys
from pathlib import Path
import trio
from bitterbot.node.home import Home
from bitterbot.node.store import Store
from bitterbot.node.p2p.host import P2PConfig, P2PHost
from bitterbot.node.pay.cashu import CashuBackend
from bitterbot.node.pay.service import Payments

async def main(home, mint, action, channel):
    h = Home(Path(home)).ensure()
    store = Store(h.db_path)
    backend = CashuBackend(store, h.identity(), h.path / "cashu", mint)
    host = P2PHost(h.identity(), P2PConfig(listen=["/ip4/127.0.0.1/tcp/0"]), store=store)
    async with trio.open_nursery() as n:
        await n.start(host.run)
        pay = Payments(h.identity(), store, backend, p2p=host, dispute_window_ms=600_000)
        await n.start(pay.run)
        if action == "settle":
            print(await pay.settle(bytes.fromhex(channel)), await backend.balance(b""), flush=True)
            n.cancel_scope.cancel()
            return
        print([a for a in host.listen_addrs() if "/127.0.0.1/" in a][0], flush=True)
        await trio.sleep_forever()

trio.run(main, *sys.argv[1:])
"""


async def test_a_payee_killed_after_acknowledging_settles_after_restart(
    tmp_path: Path,
    cashu_pair: tuple[Payments, Payments],
    cashu_mint: LocalMint,  # noqa: F811
) -> None:
    buyer, _ = cashu_pair
    seller_home = tmp_path / "child-seller"
    proc = await spawn_script(tmp_path, CHILD, str(seller_home), cashu_mint.url, "serve", "-")

    async def pay_twenty() -> list[Any]:
        peer = await buyer.p2p.connect(await read_line(proc))
        return [await buyer.pay(peer, 5) for _ in range(20)]

    acked = await sigkill_after(proc, pay_twenty)  # killed right after the 20th acknowledgement
    store = Store(Home(seller_home).db_path)
    open_databases(store, (CHANNELS,))
    with store.read() as txn:
        rec = txn.get(CHANNELS, acked[-1].channel)
    store.close()
    assert rec["amount"] == 100 and ch.Voucher.from_obj(rec["voucher"]) == acked[-1]

    cid = acked[-1].channel.hex()
    restarted = await spawn_script(tmp_path, CHILD, str(seller_home), cashu_mint.url, "settle", cid)
    paid, balance = map(int, (await read_line(restarted, timeout=90)).split())
    await restarted.wait()
    # what the payer's signatures cover of the 100 acknowledged: the cover of 20 x 5
    amounts, signed = rules.denominations(10_000), set()
    for owed in range(5, 101, 5):
        signed |= set(rules.extend_cover(amounts, signed, owed))
    covered = sum(amounts[i] for i in signed)
    assert 100 - rules.cover_unit(10_000) < covered <= 100
    assert paid == balance == covered  # in the payee's own wallet, after a kill -9


def test_the_wallet_command_says_what_to_do_when_the_mint_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bitterbot.node.pay.cashu_mint import free_port

    monkeypatch.setitem(SHARED, "BITTERBOT_PAY_BACKEND", f"cashu:http://127.0.0.1:{free_port()}")
    out = cli(tmp_path / "home", "pay", "wallet", "mint", "100", "--wait", "5")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "cannot be reached" in out.stderr and "proofs stay in the wallet" in out.stderr
    balance = _json(cli(tmp_path / "home", "pay", "wallet", "balance", "--json"))
    assert balance["balance"] == 0  # local: answers without the mint
    faucet = cli(tmp_path / "home", "pay", "faucet", "10")
    assert faucet.returncode != 0 and "pay wallet mint" in faucet.stderr  # no test money here
