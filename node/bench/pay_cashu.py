"""``bitterbot bench vouchers --backend cashu``: vouchers on a real Cashu mint (loopback).

Measures, against a nutshell mint on 127.0.0.1 (started here unless ``--mint`` names one):
vouchers verified per second offline (decode, ed25519 signature, channel rules, the payer's
Schnorr signatures beside the voucher and the cover rule, no mint round trip), vouchers
durably accepted per second through the payee's group commit (LMDB, fsync), and the
latency of the operations that do talk to the mint: lock a deposit, check it, settle
(co-sign and swap the signed proofs) and refund after the locktime.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import trio

from bitterbot.node.p2p.peer_id import peer_id_from_public_key
from bitterbot.node.pay.cashu import CashuBackend
from bitterbot.node.pay.service import Payments
from bitterbot.node.store import Store
from bitterbot.protocol import cashu as rules
from bitterbot.protocol import channel as ch
from bitterbot.protocol.identity import Identity

STEP = 10  # sat per voucher: a metered call
REFUND_WINDOW_MS = 6_000


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0


class _Payer:
    """A payer with its own store and wallet, opening a channel to ``payee`` in-process."""

    def __init__(self, folder: Path, url: str, name: str) -> None:
        self.identity = Identity.generate()
        self.store = Store(folder / f"{name}-db")
        self.backend = CashuBackend(self.store, self.identity, folder / f"{name}-cashu", url)
        self.peer = peer_id_from_public_key(self.identity.public_key)

    async def open(self, payee: Payments, capacity: int, window_ms: int) -> dict[str, Any]:
        await self.backend.wallet.mint(capacity, 30)
        terms = ch.new_terms(
            self.identity.public_key,
            payee.me,
            capacity,
            backend=self.backend.name,
            dispute_window_ms=window_ms,
            now_ms=time.time_ns() // 1_000_000,
            salt=os.urandom(16),
        )
        reply = await payee.handle_request(
            self.peer, {"t": "open", "open": ch.open_channel(terms, self.identity).to_obj()}
        )
        full = ch.OpenMessage.from_obj(reply["open"])
        await self.backend.note_open(full, reply["cashu"])
        started = time.perf_counter()
        await self.backend.lock_deposit(full, 0)
        lock_ms = _ms(started)
        deposit = self.backend.deposit_message(full.channel_id)
        started = time.perf_counter()
        got = await payee.handle_request(
            self.peer, {"t": "deposit", "channel": full.channel_id, "cashu": deposit}
        )
        assert got["ok"], got
        self.channel = ch.PayerChannel(ch.ChannelState(terms), self.identity)
        return {"lock_ms": lock_ms, "accept_deposit_ms": _ms(started)}

    def sign(self, count: int) -> list[dict[str, Any]]:
        """``count`` vouchers of STEP with their Cashu signatures (one LMDB commit)."""

        def fn(txn: Any) -> list[dict[str, Any]]:
            out = []
            for _ in range(count):
                v = self.channel.pay(STEP)
                extra = self.backend.voucher_extra(txn, v)
                out.append({"t": "pay", "voucher": v.to_obj(), "cashu": extra})
            return out

        result: list[dict[str, Any]] = self.store.transact(fn)
        return result

    def close(self) -> None:
        self.store.close()


def bench_cashu_verify(payer: _Payer, payee: CashuBackend, count: int) -> dict[str, Any]:
    """Vouchers decoded and checked offline: signature, rules, Schnorr signatures, cover."""
    from bitterbot.protocol.codec import encode

    reqs = payer.sign(count)
    wire = [(encode(r["voucher"]), r["cashu"]) for r in reqs]
    terms = payer.channel.state.terms
    side = ch.PayeeChannel(ch.ChannelState(terms))
    rec = payee.record(terms.channel_id)
    assert rec is not None
    amounts = [p[0] for p in rec["deposit"]["proofs"]]
    signed: set[int] = set()
    covered = new_sigs = 0
    capacity = sum(amounts)
    started = time.perf_counter()
    for data, extra in wire:
        voucher = ch.Voucher.from_bytes(data)
        side.accept(voucher)
        sigs = payee.check_voucher_extra(terms, voucher, extra)
        new = [i for i, _ in sigs]
        covered = rules.check_cover(
            amounts, signed, new, voucher.amount, covered=covered, capacity=capacity
        )
        signed.update(new)
        new_sigs += len(sigs)
    elapsed = time.perf_counter() - started
    return {
        "vouchers": count,
        "seconds": round(elapsed, 3),
        "verified_per_s": round(count / elapsed),
        "proof_signatures_checked": new_sigs,
        "capacity": terms.capacity,
        "deposit_proofs": len(amounts),
    }


async def bench_cashu(
    folder: Path, url: str, count: int, channels: int, per_channel: int
) -> dict[str, Any]:
    payee_id = Identity.generate()
    store = Store(folder / "payee-db")
    backend = CashuBackend(store, payee_id, folder / "payee-cashu", url)
    payee = Payments(payee_id, store, backend, dispute_window_ms=0)
    opens: list[dict[str, Any]] = []

    # offline verification: one channel big enough for ``count`` vouchers
    big = _Payer(folder, url, "verify")
    opens.append(await big.open(payee, count * STEP, 600_000))
    verify = bench_cashu_verify(big, backend, count)
    big.close()

    # durable acceptance through the group commit, then settling each channel
    payers = [_Payer(folder, url, f"p{i}") for i in range(channels)]
    for p in payers:
        opens.append(await p.open(payee, max(10_000, per_channel * STEP), 600_000))
    jobs = [(p.peer, p.sign(per_channel)) for p in payers]
    from bitterbot.node.bench.pay import send_all

    async with trio.open_nursery() as nursery:
        await nursery.start(payee.committer.run)
        refused, elapsed = await send_all(payee, jobs)
        nursery.cancel_scope.cancel()
    total = channels * per_channel
    settles = []
    settled_sat = 0
    for p in payers:
        started = time.perf_counter()
        settled_sat += await payee.settle(p.channel.state.channel_id)
        settles.append(_ms(started))

    # refund after the locktime (a 6 s window: the deposit must stay locked half of it)
    short = _Payer(folder, url, "refund")
    await short.open(payee, 1_000, REFUND_WINDOW_MS)
    short.sign(3)
    terms = short.channel.state.terms
    await trio.sleep(max(0.0, (terms.created_ms + REFUND_WINDOW_MS) / 1000 + 1.2 - time.time()))
    started = time.perf_counter()
    refunded = await short.backend.refund(terms.channel_id, time.time_ns() // 1_000_000)
    refund_ms = _ms(started)
    for p in [*payers, short]:
        p.close()
    store.close()
    return {
        "verified_per_s": verify["verified_per_s"],
        "durably_accepted_per_s": round((total - refused) / elapsed),
        "settle_ms_p50": _p50(settles),
        "settle_ms_max": max(settles),
        "refund_ms": refund_ms,
        "lock_ms_p50": _p50([o["lock_ms"] for o in opens]),
        "accept_deposit_ms_p50": _p50([o["accept_deposit_ms"] for o in opens]),
        "verify": verify,
        "group_commit": {
            "channels": channels,
            "vouchers": total,
            "refused": refused,
            "seconds": round(elapsed, 3),
            "commits": payee.committer.batches,
            "mean_batch": round(payee.committer.items / max(1, payee.committer.batches), 1),
        },
        "settled": {"channels": channels, "sat": settled_sat, "of_vouchers_sat": total * STEP},
        "refund": {"capacity": 1_000, "paid": 3 * STEP, "refunded": refunded},
    }


def run(
    count: int, channels: int, per_channel: int, folder: Path, mint: str | None
) -> dict[str, Any]:
    from bitterbot.node.pay.cashu_mint import LocalMint

    with contextlib.ExitStack() as stack:
        url = mint or stack.enter_context(LocalMint(folder / "mint")).url
        out = trio.run(bench_cashu, folder, url, count, channels, per_channel)
    from bitterbot.node.bench.pay import bench_verify

    # the same offline check without the Cashu part, in this run: the machine's baseline
    baseline = bench_verify(count)["verified_per_s"]
    return {
        "backend": f"cashu:{url}",
        **out,
        "ledger_verified_per_s_same_run": baseline,
        "targets": {"verified_per_s": 5000, "settle_ms": 200},
        "money": "sats of ecash on a local test mint (FakeWallet Lightning)"
        if mint is None
        else "sats of ecash on the given mint",
    }
