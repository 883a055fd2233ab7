"""Payment actions of a simnet node (node/payments.py on the node's P2PHost).

Every node of a run opens the same test-money ledger folder (LMDB is safe across processes,
and nodes in one worker share one handle), so deposits locked by a payer in one worker are
visible to a payee in another. TEST MONEY only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

from bitterbot.protocol.errors import PaymentError, ValidationError

GRANT = 1_000_000
MAX_AMOUNT = 1_000_000


class PayActions:
    pay: Any
    p2p: Any

    async def start_payments(self, nursery: trio.Nursery, store: Any, identity: Any) -> None:
        from bitterbot.node.ledger_backend import LedgerBackend
        from bitterbot.node.payments import Payments

        backend = LedgerBackend.open(Path(str(self.options["ledger_path"])))  # type: ignore[attr-defined]
        self.pay = Payments(identity, store, backend, p2p=self.p2p, default_capacity=100_000)
        if backend.balance_sync(identity.public_key) == 0:
            await backend.faucet(identity.public_key, GRANT)

        async def serve(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await self.pay.run(task_status=task_status)
            finally:
                backend.shutdown()

        await nursery.start(serve)

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
        from bitterbot.node.payments import attempt_cheats

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


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
