"""``bitterbot bench vouchers``: vouchers verified and durably accepted per second.

``--backend ledger`` (default, TEST MONEY) or ``--backend cashu`` (a real nutshell mint on
loopback, node/bench/pay_cashu.py: also deposit, settle and refund latency).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bitterbot.node.cli.common import bench
from bitterbot.node.cli.pay import TEST_MONEY_NOTE

# --- benchmark ---------------------------------------------------------------------------


def bench_verify(count: int) -> dict[str, Any]:
    """Vouchers decoded and checked (signature, nonce, amount, capacity) per second."""
    import time

    from bitterbot.protocol import channel as ch
    from bitterbot.protocol.identity import Identity

    payer, payee = Identity.generate(), Identity.generate()
    terms = ch.new_terms(
        payer.public_key,
        payee.public_key,
        count * 10,
        backend="ledger",
        dispute_window_ms=0,
        now_ms=0,
        salt=b"b" * 16,
    )
    side = ch.PayeeChannel.from_open(
        ch.open_channel(terms, payer).countersign(payee), payee.public_key
    )
    wire = [
        ch.sign_voucher(payer, terms.channel_id, n, n * 10).to_bytes() for n in range(1, count + 1)
    ]
    started = time.perf_counter()
    for data in wire:
        side.accept(ch.Voucher.from_bytes(data))
    elapsed = time.perf_counter() - started
    return {
        "vouchers": count,
        "seconds": round(elapsed, 3),
        "verified_per_s": round(count / elapsed),
    }


async def bench_durable(
    folder: Path, channels: int, per_channel: int, max_batch: int
) -> dict[str, Any]:
    """Vouchers durably accepted per second: the payee's whole path (decode, verify, check,
    LMDB commit with fsync) through group commit, ``channels`` payers sending concurrently."""

    import trio

    from bitterbot.node.p2p.peer_id import peer_id_from_public_key
    from bitterbot.node.pay.ledger import LedgerBackend
    from bitterbot.node.pay.service import Payments
    from bitterbot.node.store import Store
    from bitterbot.protocol import channel as ch
    from bitterbot.protocol.identity import Identity

    store, ledger = Store(folder / "payee"), LedgerBackend.open(folder / "ledger")
    payee_id = Identity.generate()
    payee = Payments(payee_id, store, ledger, dispute_window_ms=0, max_batch=max_batch)
    jobs: list[tuple[str, list[dict[str, Any]]]] = []
    for i in range(channels):
        payer = Identity.generate()
        ledger.faucet_sync(payer.public_key, per_channel)
        terms = ch.new_terms(
            payer.public_key,
            payee_id.public_key,
            per_channel,
            backend="ledger",
            dispute_window_ms=0,
            now_ms=0,
            salt=i.to_bytes(16, "big"),
        )
        peer = peer_id_from_public_key(payer.public_key)
        reply = await payee.handle_request(
            peer, {"t": "open", "open": ch.open_channel(terms, payer).to_obj()}
        )
        ledger.lock_deposit_sync(ch.OpenMessage.from_obj(reply["open"]))
        vs = [ch.sign_voucher(payer, terms.channel_id, n, n) for n in range(1, per_channel + 1)]
        jobs.append((peer, [{"t": "pay", "voucher": v.to_obj()} for v in vs]))
    total = channels * per_channel
    async with trio.open_nursery() as nursery:
        await nursery.start(payee.run)
        refused, elapsed = await send_all(payee, jobs)
        nursery.cancel_scope.cancel()
    store.close()
    ledger.shutdown()
    return {
        "vouchers": total,
        "refused": refused,
        "seconds": round(elapsed, 3),
        "accepted_per_s": round((total - refused) / elapsed),
        "commits": payee.committer.batches,
        "mean_batch": round(payee.committer.items / max(1, payee.committer.batches), 1),
        "max_batch": max_batch,
    }


async def send_all(payee: Any, jobs: list[tuple[str, list[dict[str, Any]]]]) -> tuple[int, float]:
    """Each payer's requests in order, the payers at once; returns (refused, seconds)."""
    import time

    import trio

    refused = 0

    async def send(peer: str, reqs: list[dict[str, Any]]) -> None:
        nonlocal refused
        for req in reqs:
            reply = await payee.handle_request(peer, req)
            refused += not reply["ok"]

    started = time.perf_counter()
    async with trio.open_nursery() as senders:
        for peer, reqs in jobs:
            senders.start_soon(send, peer, reqs)
    return refused, time.perf_counter() - started


@bench.command("vouchers")
@click.option("--count", default=20_000, show_default=True, help="vouchers to verify")
@click.option(
    "--channels", type=int, default=None, help="concurrent payers (durable) [ledger 64, cashu 8]"
)
@click.option("--per-channel", default=100, show_default=True, help="vouchers per payer")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None, help="LMDB folder")
@click.option(
    "--backend",
    type=click.Choice(["ledger", "cashu"]),
    default="ledger",
    show_default=True,
    help="TEST MONEY ledger, or a real Cashu mint on loopback",
)
@click.option("--mint", default=None, help="cashu: this mint's URL (default: start a local one)")
@click.option("--json", "as_json", is_flag=True, help="print JSON (the default output)")
def bench_vouchers(
    count: int,
    channels: int | None,
    per_channel: int,
    folder: Path | None,
    backend: str,
    mint: str | None,
    as_json: bool,
) -> None:
    """Vouchers verified/s, and durably accepted/s with and without group commit."""
    import shutil
    import tempfile

    import trio

    base = Path(tempfile.mkdtemp(prefix="bench-vouchers-", dir=folder))
    if backend == "cashu":
        from bitterbot.node.bench import pay_cashu

        try:
            out = pay_cashu.run(count, channels or 8, per_channel, base, mint)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        click.echo(json.dumps(out, indent=2))
        return
    channels = channels or 64
    try:
        verify = bench_verify(count)
        grouped = trio.run(bench_durable, base / "grouped", channels, per_channel, 256)
        single = trio.run(bench_durable, base / "single", 4, 50, 1)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    click.echo(
        json.dumps(
            {
                "verified_per_s": verify["verified_per_s"],
                "durably_accepted_per_s": grouped["accepted_per_s"],
                "durably_accepted_per_s_without_group_commit": single["accepted_per_s"],
                "verify": verify,
                "group_commit": grouped,
                "one_commit_per_voucher": single,
                "targets": {"verified_per_s": 5000, "durably_accepted_per_s": 2000},
                "money": TEST_MONEY_NOTE,
            },
            indent=2,
        )
    )
