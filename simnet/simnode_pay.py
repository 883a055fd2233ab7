"""Payment actions of a simnet node (node/pay/service.py on the node's P2PHost).

Payments start through the real node starter on the node's shared context (see
:func:`bitterbot.simnet.simnode_market.shared_context`), with ``pay.ledger_path`` pointing
every node of a run at the same test-money ledger folder (LMDB is safe across processes,
and nodes in one worker share one handle), so deposits locked by a payer in one worker are
visible to a payee in another. Each node gets its start grant of TEST MONEY once.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from bitterbot.protocol.errors import PaymentError, ValidationError
from bitterbot.simnet.simnode_market import shared_context

MAX_AMOUNT = 1_000_000


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

    async def action_sales(self) -> dict[str, int]:
        """The seller's books: licenses sold and their total amount (``pay.sold`` records)."""
        from bitterbot.node.pay.core import SOLD

        pay = self._need_pay()
        with pay.store.read() as txn:
            sold = [v for _, v in txn.items(SOLD) if "license" in v]
        return {"licenses": len(sold), "amount": sum(int(v["amount"]) for v in sold)}


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
