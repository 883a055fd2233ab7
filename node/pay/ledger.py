"""The test-money ledger: a settlement backend for test networks and simnet. TEST MONEY.

Balances and channel escrows live in an LMDB environment. Nodes on one machine (tests,
simnet, a local demo network) point ``pay.ledger_path`` at the same folder and so share one
ledger: LMDB is safe across processes. The money is not real and anyone with the folder
can mint it (:meth:`LedgerBackend.faucet`); it exists so channels, vouchers, licenses and
the whole purchase flow run end to end before a real rail (Cashu, Lightning; SPEC 12.6)
is plugged in behind the same :class:`~bitterbot.protocol.settlement.SettlementBackend`.

The escrow rules are the shared pure functions of :mod:`bitterbot.protocol.settlement`;
this module only persists their results atomically (escrow state and balances change in
one LMDB transaction).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from bitterbot.node.store import Store, Txn
from bitterbot.protocol import settlement as rules
from bitterbot.protocol.channel import ChannelTerms, CloseMessage, OpenMessage, Voucher
from bitterbot.protocol.errors import PaymentError

T = TypeVar("T")
ACCOUNTS = "ledger.accounts"
ESCROWS = "ledger.escrows"
GRANTS = "ledger.grants"  # accounts that received their start grant
NAME = "ledger"
TEST_MONEY = "TEST MONEY"


#: ledgers open in this process, by folder: [backend, users]
_OPEN: dict[Path, list[Any]] = {}


class LedgerError(PaymentError):
    code = "ledger_error"


def escrow_from_obj(obj: dict[str, Any]) -> rules.Escrow:
    return rules.Escrow(
        ChannelTerms.from_obj(obj["terms"]),
        settled=obj["settled"],
        settled_nonce=obj["settled_nonce"],
        state=obj["state"],
        deadline_ms=obj["deadline_ms"],
        refunded=obj["refunded"],
    )


class LedgerBackend:
    """Test-money settlement backend over an LMDB environment (shared or per node)."""

    name = NAME
    test_money = True

    def __init__(self, store: Store) -> None:
        self.store = store
        # handles first opened in a read transaction are unusable (see payments.open_databases)
        store.transact(lambda txn: (txn.count(ACCOUNTS), txn.count(ESCROWS), txn.count(GRANTS)))
        self._limiter = trio.CapacityLimiter(1)
        self._key: Path | None = None

    @classmethod
    def open(cls, path: Path) -> LedgerBackend:
        """The ledger in ``path``, shared by every node of this process that names it.

        LMDB allows one open environment per folder per process, and simnet runs several
        nodes in one process on one ledger: they share one handle, closed by the last
        :meth:`shutdown`.
        """
        key = Path(path).expanduser().absolute()
        entry = _OPEN.get(key)
        if entry is None:
            entry = _OPEN[key] = [cls(Store(key)), 0]
        entry[1] += 1
        backend: LedgerBackend = entry[0]
        backend._key = key
        return backend

    def shutdown(self) -> None:
        key = self._key
        entry = _OPEN.get(key) if key is not None else None
        if key is None or entry is None:
            self.store.close()
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _OPEN[key]
            self.store.close()

    # --- synchronous core (one LMDB transaction each) ----------------------------------
    def balance_sync(self, account: bytes) -> int:
        with self.store.read() as txn:
            return int(txn.get(ACCOUNTS, account, 0))

    def faucet_sync(self, account: bytes, amount: int) -> int:
        """Mint ``amount`` of TEST MONEY to ``account``; returns the new balance."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise LedgerError("faucet amount must be a positive integer")

        def mint(txn: Txn) -> int:
            new = int(txn.get(ACCOUNTS, account, 0)) + amount
            txn.put(ACCOUNTS, account, new)
            return new

        return self.store.transact(mint)

    def grant_once_sync(self, account: bytes, amount: int) -> bool:
        """Mint a new node's start grant of TEST MONEY, once per account ever."""

        def grant(txn: Txn) -> bool:
            if txn.get(GRANTS, account) is not None:
                return False
            txn.put(GRANTS, account, amount)
            txn.put(ACCOUNTS, account, int(txn.get(ACCOUNTS, account, 0)) + amount)
            return True

        return self.store.transact(grant)

    def escrow_sync(self, channel_id: bytes) -> rules.Escrow | None:
        with self.store.read() as txn:
            obj = txn.get(ESCROWS, channel_id)
        return None if obj is None else escrow_from_obj(obj)

    def lock_deposit_sync(self, msg: OpenMessage) -> rules.Escrow:
        escrow = rules.escrow_lock(msg)
        payer, capacity = msg.terms.payer, msg.terms.capacity

        def lock(txn: Txn) -> rules.Escrow:
            existing = txn.get(ESCROWS, escrow.channel_id)
            if existing is not None:
                return escrow_from_obj(existing)  # idempotent: a retried lock takes nothing
            balance = int(txn.get(ACCOUNTS, payer, 0))
            if balance < capacity:
                raise rules.InsufficientFundsError(
                    f"the payer has {balance} {TEST_MONEY} units, the channel needs {capacity}",
                    hint="get test money: bitterbot pay faucet AMOUNT",
                )
            txn.put(ACCOUNTS, payer, balance - capacity)
            txn.put(ESCROWS, escrow.channel_id, escrow.to_obj())
            return escrow

        return self.store.transact(lock)

    def _apply(
        self,
        channel_id: bytes,
        step: Callable[[rules.Escrow | None], tuple[rules.Escrow, list[rules.Transfer]]],
    ) -> tuple[rules.Escrow, int]:
        def run(txn: Txn) -> tuple[rules.Escrow, int]:
            obj = txn.get(ESCROWS, channel_id)
            escrow, transfers = step(None if obj is None else escrow_from_obj(obj))
            for t in transfers:
                txn.put(ACCOUNTS, t.to, int(txn.get(ACCOUNTS, t.to, 0)) + t.amount)
            txn.put(ESCROWS, channel_id, escrow.to_obj())
            return escrow, sum(t.amount for t in transfers)

        return self.store.transact(run)

    def settle_sync(self, voucher: Voucher, now_ms: int) -> int:
        return self._apply(voucher.channel, lambda e: rules.escrow_settle(e, voucher, now_ms))[1]

    def close_sync(self, close: CloseMessage) -> rules.Escrow:
        return self._apply(close.channel, lambda e: rules.escrow_close(e, close))[0]

    def request_close_sync(self, request: CloseMessage, now_ms: int) -> rules.Escrow:
        return self._apply(
            request.channel, lambda e: rules.escrow_request_close(e, request, now_ms)
        )[0]

    def refund_sync(self, channel_id: bytes, now_ms: int) -> int:
        return self._apply(channel_id, lambda e: rules.escrow_refund(e, now_ms))[1]

    # --- SettlementBackend (async; LMDB commits fsync, so they run in a worker thread) ---
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def balance(self, account: bytes) -> int:
        return self.balance_sync(account)

    async def faucet(self, account: bytes, amount: int) -> int:
        return await self._run(self.faucet_sync, account, amount)

    async def lock_deposit(self, msg: OpenMessage, now_ms: int) -> rules.Escrow:
        return await self._run(self.lock_deposit_sync, msg)

    async def escrow(self, channel_id: bytes) -> rules.Escrow | None:
        return self.escrow_sync(channel_id)

    async def settle(self, voucher: Voucher, now_ms: int) -> int:
        return await self._run(self.settle_sync, voucher, now_ms)

    async def close(self, close: CloseMessage, now_ms: int) -> rules.Escrow:
        return await self._run(self.close_sync, close)

    async def request_close(self, request: CloseMessage, now_ms: int) -> rules.Escrow:
        return await self._run(self.request_close_sync, request, now_ms)

    async def refund(self, channel_id: bytes, now_ms: int) -> int:
        return await self._run(self.refund_sync, channel_id, now_ms)

    # --- rail material: none, the ledger is shared ----------------------------------------
    def open_extra(self, terms: ChannelTerms) -> dict[str, Any] | None:
        return None

    async def note_open(self, msg: OpenMessage, extra: Any) -> None:
        return None

    def deposit_message(self, channel_id: bytes) -> dict[str, Any] | None:
        return None

    async def accept_deposit(self, terms: ChannelTerms, raw: Any, now_ms: int) -> None:
        return None

    def voucher_extra(self, txn: Txn, voucher: Voucher) -> dict[str, Any] | None:
        return None

    def check_voucher_extra(self, terms: ChannelTerms, voucher: Voucher, raw: Any) -> Any:
        return None

    def apply_voucher_extra(self, txn: Txn, voucher: Voucher, checked: Any) -> None:
        return None

    async def close_extra(self, close: CloseMessage) -> dict[str, Any]:
        return {}

    async def accept_close(self, close: CloseMessage, raw: Any, now_ms: int) -> dict[str, Any]:
        return {}

    async def note_close_reply(self, close: CloseMessage, raw: Any) -> None:
        return None
