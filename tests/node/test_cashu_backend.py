"""The Cashu backend against a real nutshell mint on 127.0.0.1 (cdk-python wallet, real LMDB).

Payer and payee are two backends with separate stores and wallets: nothing is shared but
the mint. Channel messages are built directly here; tests/node/test_cashu_nodes.py runs
the same over the pay protocol between two node processes.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from cashu_mint_fixture import cashu_mint  # noqa: F401  (fixture)

from bitterbot.node.pay.cashu import CHANNELS, CashuBackend
from bitterbot.node.pay.cashu_mint import LocalMint
from bitterbot.node.pay.cashu_wallet import MintRefusedError, MintUnreachableError
from bitterbot.node.store import Store
from bitterbot.protocol import cashu as rules
from bitterbot.protocol import channel as ch
from bitterbot.protocol.identity import Identity

pytestmark = pytest.mark.timeout(120)


def _now() -> int:
    return time.time_ns() // 1_000_000


def _backend(tmp: Path, name: str, url: str) -> CashuBackend:
    return CashuBackend(Store(tmp / f"{name}-db"), Identity.generate(), tmp / f"{name}-cashu", url)


async def _channel(
    payer: CashuBackend, payee: CashuBackend, capacity: int, window_ms: int = 600_000
) -> tuple[ch.ChannelTerms, ch.PayerChannel]:
    """Open, lock and hand over a deposit, as the pay protocol does."""
    terms = ch.new_terms(
        payer.identity.public_key,
        payee.identity.public_key,
        capacity,
        backend=payer.name,
        dispute_window_ms=window_ms,
        now_ms=_now(),
        salt=os.urandom(16),
    )
    msg = ch.open_channel(terms, payer.identity).countersign(payee.identity)
    await payer.note_open(msg, payee.open_extra(terms))
    await payer.lock_deposit(msg, _now())
    await payee.accept_deposit(terms, payer.deposit_message(msg.channel_id), _now())
    return terms, ch.PayerChannel(ch.ChannelState(terms), payer.identity)


def _pay(payer: CashuBackend, payee: CashuBackend, chan: ch.PayerChannel, amount: int) -> Any:
    """Sign a voucher with its Cashu signatures (payer) and accept it (payee)."""
    voucher = chan.pay(amount)
    extra = payer.store.transact(lambda txn: payer.voucher_extra(txn, voucher))
    sigs = payee.check_voucher_extra(chan.state.terms, voucher, extra)
    payee.store.transact(lambda txn: payee.apply_voucher_extra(txn, voucher, sigs))
    return voucher


async def test_wallet_mints_sends_and_receives_p2pk_ecash_from_trio(
    tmp_path: Path,
    cashu_mint: LocalMint,  # noqa: F811
) -> None:
    alice, bob = _backend(tmp_path, "a", cashu_mint.url), _backend(tmp_path, "b", cashu_mint.url)
    minted = await alice.wallet.mint(1000, wait_s=20)
    assert minted["minted"] == 1000 and minted["invoice"].startswith("lnbc")
    mode = stat.S_IMODE(os.stat(tmp_path / "a-cashu" / "mnemonic").st_mode)
    assert mode == 0o600 and len(alice.wallet.mnemonic().split()) == 12

    key = os.urandom(32).hex()
    from bitterbot.node.pay.cashu_wallet import _pub_hex

    token = await alice.wallet.send(200, lock_to=bytes.fromhex(_pub_hex(key)))
    assert await alice.balance(b"") == 800
    with pytest.raises(MintRefusedError) as refused:
        await bob.wallet.receive_token(token, [os.urandom(32).hex()])  # another key
    assert refused.value.code == "cashu_invalid"
    assert await bob.balance(b"") == 0  # refused before the mint: nothing foreign counted
    assert await bob.wallet.receive_token(token, [key]) == 200
    assert await bob.balance(b"") == 200
    with pytest.raises(MintRefusedError) as again:
        await bob.wallet.receive_token(token, [key])
    assert again.value.code == "proofs_spent"
    assert await bob.balance(b"") == 200


async def test_deposit_vouchers_settle_and_cooperative_close_pay_exactly(
    tmp_path: Path,
    cashu_mint: LocalMint,  # noqa: F811
) -> None:
    payer, payee = (_backend(tmp_path, n, cashu_mint.url) for n in ("payer", "payee"))
    await payer.wallet.mint(15_000, wait_s=20)
    terms, chan = await _channel(payer, payee, 10_000)
    assert await payer.balance(b"") == 5_000
    rec = payee.record(terms.channel_id)
    assert rec is not None
    assert sorted(p[0] for p in rec["deposit"]["proofs"]) == rules.denominations(10_000)

    for amount in (250, 250, 37):
        voucher = _pay(payer, payee, chan, amount)
    covered = payee.covered(terms.channel_id)
    assert covered == sum(rec["deposit"]["proofs"][i][0] for i, _ in payee.signed(terms.channel_id))
    assert 537 - rules.cover_unit(10_000) < covered <= 537

    settled = await payee.settle(voucher, _now())
    assert settled == covered and await payee.balance(b"") == covered
    assert await payee.settle(voucher, _now()) == 0  # nothing signed since

    close = ch.sign_close(payer.identity, terms.channel_id, 3, 537)
    extra = await payer.close_extra(close)
    assert ("gap" in extra) == (covered < 537)
    signed = ch.countersign_close(close, payee.identity)
    reply = await payee.accept_close(signed, extra, _now())
    await payer.note_close_reply(signed, reply)
    escrow = await payer.close(signed, _now())
    assert escrow.state == "closed" and escrow.refunded == 10_000 - covered
    assert await payee.balance(b"") == 537  # exactly the total of the highest voucher
    assert await payer.balance(b"") == 15_000 - 537


async def test_refund_after_the_locktime_and_a_double_spend_is_refused(
    tmp_path: Path,
    cashu_mint: LocalMint,  # noqa: F811
) -> None:
    payer, payee = (_backend(tmp_path, n, cashu_mint.url) for n in ("payer", "payee"))
    await payer.wallet.mint(1_000, wait_s=20)
    terms, chan = await _channel(payer, payee, 1_000, window_ms=8_000)  # locking takes ~1 s
    voucher = _pay(payer, payee, chan, 300)
    with pytest.raises(Exception) as early:
        await payer.refund(terms.channel_id, _now())
    assert early.value.code == "dispute_window_open"  # type: ignore[attr-defined]
    assert await payee.settle(voucher, _now()) == 300
    await trio.sleep(max(0.0, terms.created_ms / 1000 + 8 + 1.5 - time.time()))
    assert await payer.refund(terms.channel_id, _now()) == 700
    assert await payer.balance(b"") == 700 and await payee.balance(b"") == 300

    # the payee swaps the same proofs again: the mint refuses, the wallet stays right
    rec = payee.record(terms.channel_id)
    rec["swapped"] = []
    payee.store.transact(lambda txn: txn.put(CHANNELS, terms.channel_id, rec))
    with pytest.raises(MintRefusedError):
        await payee.settle(voucher, _now())
    assert await payee.balance(b"") == 300


async def test_forged_over_covering_and_tampered_material_is_refused(
    tmp_path: Path,
    cashu_mint: LocalMint,  # noqa: F811
) -> None:
    payer, payee = (_backend(tmp_path, n, cashu_mint.url) for n in ("payer", "payee"))
    await payer.wallet.mint(2_000, wait_s=20)
    terms, chan = await _channel(payer, payee, 1_000)
    deposit = rules.Deposit.from_obj(payer.deposit_message(terms.channel_id))
    voucher = chan.pay(10)
    forged = {"sigs": [[0, os.urandom(64)]]}
    with pytest.raises(rules.CashuError, match="not the payer's"):
        payee.check_voucher_extra(terms, voucher, forged)
    # a payer signing more than it owes is refused by the payee's rule, before any write
    extra = payer.store.transact(lambda txn: payer.voucher_extra(txn, ch.sign_voucher(
        payer.identity, terms.channel_id, 1, 600)))  # fmt: skip
    sigs = payee.check_voucher_extra(terms, voucher, extra)
    with pytest.raises(rules.CashuError, match="exceed"):
        payee.store.transact(lambda txn: payee.apply_voucher_extra(txn, voucher, sigs))
    assert payee.signed(terms.channel_id) == [] and payee.covered(terms.channel_id) == 0

    # a deposit whose mint signature was altered fails the DLEQ check
    bad = deposit.to_obj()
    bad["proofs"][0][2] = deposit.proofs[1].c
    other = _backend(tmp_path, "other", cashu_mint.url)
    other.identity = payee.identity
    with pytest.raises(rules.CashuError, match="DLEQ"):
        await other.accept_deposit(terms, bad, _now())


async def test_a_mint_that_is_down_gives_typed_errors_and_loses_nothing(tmp_path: Path) -> None:
    with LocalMint(tmp_path / "mint") as mint:
        payer, payee = (_backend(tmp_path, n, mint.url) for n in ("payer", "payee"))
        await payer.wallet.mint(3_000, wait_s=20)
        terms, chan = await _channel(payer, payee, 1_000)
        voucher = _pay(payer, payee, chan, 64)
    with pytest.raises(MintUnreachableError) as down:
        await payee.settle(voucher, _now())
    assert down.value.code == "mint_unreachable" and "settled later" in (down.value.hint or "")
    assert await payer.balance(b"") == 2_000  # the wallet's proofs are local: still there
    with LocalMint(tmp_path / "mint", port=mint.port):  # back up, same database
        assert await payee.settle(voucher, _now()) == 64
        assert await payer.balance(b"") == 2_000


def test_a_missing_cdk_binding_says_how_to_supply_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from bitterbot.node.pay.cashu_wallet import load_cdk
    from bitterbot.protocol.settlement import SettlementError

    monkeypatch.setitem(sys.modules, "cdk", None)  # as if cdk/cdk.py were absent
    with pytest.raises(SettlementError) as err:
        load_cdk()
    assert err.value.code == "cashu_wallet_missing"
    assert err.value.hint is not None and "supply_cdk_py.py" in err.value.hint
