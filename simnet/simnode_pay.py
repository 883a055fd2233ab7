"""Payment actions of a simnet node (node/pay/service.py on the node's P2PHost).

Payments start through the real node starter on the node's shared context (see
:func:`bitterbot.simnet.simnode_market.shared_context`) on one of two backends
(:func:`payment_options`, the scenario's ``backend``):

- ``ledger``: ``pay.ledger_path`` points every node of a run at the same test-money ledger
  folder (LMDB is safe across processes, and nodes in one worker share one handle), so
  deposits locked by a payer in one worker are visible to a payee in another. Each node
  gets its start grant of TEST MONEY once.
- ``cashu``: a real nutshell mint on 127.0.0.1 for the run; every node has its own wallet
  (HOME/cashu), mints its grant from the mint's fake Lightning at start, and nothing is
  shared but the mint.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from bitterbot.protocol.errors import PaymentError, ValidationError
from bitterbot.simnet.errors import ScenarioError
from bitterbot.simnet.simnode_market import shared_context

MAX_AMOUNT = 1_000_000
CASHU_GRANT = 1_000_000  # sat each node mints at start (the test mint's Lightning is fake)
BACKENDS = ("ledger", "cashu")


@contextlib.contextmanager
def payment_options(backend: str, run_dir: Path) -> Iterator[dict[str, Any]]:
    """Node options for payments on ``backend``; a Cashu mint runs while the block does."""
    if backend == "ledger":
        yield {"payments": True, "ledger_path": str(run_dir / "ledger")}
        return
    if backend != "cashu":
        raise ScenarioError(
            f"unknown payment backend {backend!r}", hint=f"backend is one of {', '.join(BACKENDS)}"
        )
    from bitterbot.node.pay.cashu_mint import LocalMint

    with LocalMint(run_dir / "mint") as mint:
        yield {"payments": True, "cashu_mint": mint.url}


def money_note(backend: str) -> str:
    if backend == "cashu":
        return "Amounts are sats of ecash on a local nutshell mint (FakeWallet Lightning)."
    return "All amounts are TEST MONEY on the shared test ledger."


class PayActions:
    pay: Any
    p2p: Any

    async def start_payments(self, nursery: trio.Nursery, store: Any, identity: Any) -> None:
        """Start payments as a real node does (:func:`bitterbot.node.pay.service.start_payments`)
        on the context the node's market shares, so the market sells and buys through them."""
        from bitterbot.node.pay.service import start_payments

        ctx = shared_context(self, store, identity)
        await start_payments(ctx, nursery)
        self.pay = ctx.payments
        if not self.pay.backend.test_money:  # a Cashu wallet: fund it from the test mint
            await self.pay.backend.wallet.mint(CASHU_GRANT, 60)

    def _need_pay(self) -> Any:
        if getattr(self, "pay", None) is None:
            raise ValidationError("this simnet node runs without payments")
        return self.pay

    async def action_pay(self, peer: str, amount: int) -> dict[str, Any]:
        """One honest payment; ``accepted`` says whether the payee took it."""
        amount = int(amount)
        if not 1 <= amount <= MAX_AMOUNT:
            raise ValidationError(f"amount must be 1..{MAX_AMOUNT}")
        started = time.perf_counter()
        try:
            voucher = await self._need_pay().pay(str(peer), amount)
        except PaymentError as exc:
            return {"accepted": False, "code": exc.code, "ms": _ms(started)}
        return {
            "accepted": True,
            "nonce": voucher.nonce,
            "total": voucher.amount,
            "ms": _ms(started),
        }

    async def action_cheat(self, peer: str, honest: int) -> dict[str, Any]:
        """Adversary: pay ``honest`` once, then send every cheating voucher kind."""
        from bitterbot.node.pay.service import attempt_cheats

        result: dict[str, Any] = await attempt_cheats(
            self._need_pay(), str(peer), honest=int(honest)
        )
        return result

    async def action_received(self) -> dict[str, int]:
        """Per payer peer: the cumulative amount this node accepted as payee."""
        out: dict[str, int] = {}
        for row in self._need_pay().channels():
            if row["role"] != "payer":
                out[row["peer"]] = out.get(row["peer"], 0) + int(row["paid"])
        return out

    async def action_paid_to(self, peer: str) -> int:
        """What this node has paid ``peer`` in total, over every channel it opened to it."""
        return sum(
            int(row["paid"])
            for row in self._need_pay().channels()
            if row["role"] == "payer" and row["peer"] == str(peer)
        )

    async def action_settle_all(self) -> dict[str, int]:
        """Payee: settle every channel on the backend; what it paid and the wallet's balance
        (Cashu: the sats the payer's signatures cover, swapped into this node's wallet)."""
        pay = self._need_pay()
        settled = 0
        for row in pay.channels():
            if row["role"] == "payee" and row["paid"]:
                settled += await pay.settle(bytes.fromhex(row["channel"]))
        return {"settled": settled, "balance": await pay.backend.balance(pay.me)}

    async def action_sales(self) -> dict[str, int]:
        """The seller's books: licenses sold and their total amount (``pay.sold`` records)."""
        from bitterbot.node.pay.core import SOLD

        pay = self._need_pay()
        with pay.store.read() as txn:
            sold = [v for _, v in txn.items(SOLD) if "license" in v]
        return {"licenses": len(sold), "amount": sum(int(v["amount"]) for v in sold)}


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
