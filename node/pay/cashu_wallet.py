"""The node's Cashu wallet (cdk-python) and a small mint client (httpx), called from trio.

cdk-python is asyncio: each call runs ``asyncio.run`` in a trio worker thread, one call at a
time per wallet (a :class:`trio.CapacityLimiter` of 1: concurrent sends of one wallet race
for the same proofs). The wallet's proofs live in cdk's SQLite file in HOME/cashu; its
mnemonic in HOME/cashu/mnemonic (0600), so ``restore`` recovers what a crash left at the
mint. Every foreign error is translated here: a mint that cannot be reached is
:class:`MintUnreachableError` (nothing is lost: proofs stay where they were, retry later),
a mint that refuses is :class:`MintRefusedError` (:class:`ProofsSpentError` for a double
spend).

:class:`MintClient` speaks the three NUT endpoints cdk-python does not expose the way a
channel deposit needs them: keysets/keys, a swap to outputs the node blinded itself, and
the proof state check.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio

from bitterbot.node.home import write_private
from bitterbot.protocol.settlement import InsufficientFundsError, SettlementError

T = TypeVar("T")
MNEMONIC_FILE = "mnemonic"
WALLET_DB = "wallet.sqlite"
HTTP_TIMEOUT_S = 15.0
_UNREACHABLE_HINT = (
    "start the mint or check pay.backend; proofs stay in the wallet and the channel can "
    "be settled later"
)


class MintUnreachableError(SettlementError):
    code = "mint_unreachable"

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("hint", _UNREACHABLE_HINT)
        super().__init__(message, **kw)


class MintRefusedError(SettlementError):
    code = "mint_refused"


class ProofsSpentError(MintRefusedError):
    code = "proofs_spent"


class MintBusyError(MintRefusedError):
    """The mint refused for a moment (nutshell's SQLite lock under load): retried here."""

    code = "mint_busy"


#: pauses before retrying an operation the mint refused as busy (it did not run it)
BUSY_RETRY_S = (0.5, 1.0, 2.0, 4.0)


def load_cdk() -> Any:
    """cdk-python, or an error that says how to supply its generated bindings."""
    try:
        import cdk
    except ImportError as exc:
        raise SettlementError(
            f"the Cashu wallet library cdk-python cannot be loaded: {exc}",
            hint=(
                "install it with the project (make install), or: pip install "
                "'cdk-python==0.14.2rc5' && python deploy/cashu/supply_cdk_py.py "
                "(its Linux wheel lacks cdk/cdk.py)"
            ),
            code="cashu_wallet_missing",
        ) from exc
    return cdk


def translate(exc: BaseException, mint: str) -> SettlementError:
    """A cdk or httpx error as ours."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, httpx.TransportError) or any(
        s in low for s in ("transport error", "error sending request", "connection refused")
    ):
        return MintUnreachableError(f"the mint {mint} cannot be reached: {text[:200]}")
    if "insufficient" in low:
        return InsufficientFundsError(
            f"the wallet has too little ecash on {mint}: {text[:200]}",
            hint="fund it: bitterbot pay wallet mint AMOUNT (or pay wallet receive TOKEN)",
        )
    if "database lock" in low:
        return MintBusyError(f"the mint {mint} is busy: {text[:200]}", hint="retry in a moment")
    if "already spent" in low or "token already spent" in low:
        return ProofsSpentError(
            f"the mint refused: proofs already spent ({text[:200]})",
            hint="a double spend: these proofs were spent before",
        )
    return MintRefusedError(f"the mint {mint} refused: {text[:300]}")


class CashuWallet:
    """One cdk wallet (one mint, unit sat) in ``folder``; every call serialized."""

    def __init__(self, folder: Path, mint_url: str) -> None:
        self.folder = Path(folder)
        self.mint_url = mint_url
        self._limiter = trio.CapacityLimiter(1)
        self._wallet: Any = None
        self._db: Any = None

    def mnemonic(self) -> str:
        """The wallet's mnemonic, created on first use (HOME/cashu/mnemonic, mode 0600)."""
        cdk = load_cdk()

        path = self.folder / MNEMONIC_FILE
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(path, cdk.generate_mnemonic().encode())
        return path.read_text().strip()

    def _open(self) -> Any:
        cdk = load_cdk()

        if self._wallet is None:
            mnemonic = self.mnemonic()
            self._db = cdk.WalletSqliteDatabase(str(self.folder / WALLET_DB))
            self._wallet = cdk.Wallet(
                self.mint_url,
                cdk.CurrencyUnit.SAT(),
                mnemonic,
                self._db,
                cdk.WalletConfig(target_proof_count=None),
            )
        return self._wallet

    def call_sync(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(wallet)`` to completion on a fresh asyncio loop (a worker thread's)."""
        cdk = load_cdk()

        wallet = self._open()
        for pause in (*BUSY_RETRY_S, None):
            try:
                return asyncio.run(_await(fn(wallet)))
            except cdk.FfiError as exc:
                err = translate(exc, self.mint_url)
                if not isinstance(err, MintBusyError) or pause is None:
                    raise err from exc
            time.sleep(pause)  # a worker thread: the refused call changed nothing
        raise AssertionError("unreachable")

    async def call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        return await trio.to_thread.run_sync(self.call_sync, fn, limiter=self._limiter)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn`` under this wallet's lock (mint HTTP that moves its proofs)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    # --- operations --------------------------------------------------------------------
    async def balance(self) -> int:
        async def fn(w: Any) -> int:
            return int((await w.total_balance()).value)

        return await self.call(fn)

    async def mint(self, amount: int, wait_s: float) -> dict[str, Any]:
        """Ask for a Lightning invoice of ``amount`` sat, wait until it is paid, mint."""
        cdk = load_cdk()

        async def quote(w: Any) -> Any:
            return await w.mint_quote(cdk.Amount(value=amount), None)

        q = await self.call(quote)
        minted = 0
        with trio.move_on_after(wait_s):
            while True:

                async def take(w: Any) -> int:
                    proofs = await w.mint(q.id, cdk.SplitTarget.NONE(), None)
                    return sum(int(p.amount.value) for p in proofs)

                try:
                    minted = await self.call(take)
                    break
                except MintRefusedError as exc:
                    if "unpaid" not in exc.message.lower() and "not paid" not in exc.message:
                        raise
                await trio.sleep(1.0)
        return {"quote": q.id, "invoice": q.request, "minted": minted}

    async def send(self, amount: int, lock_to: bytes | None = None) -> str:
        """A token of exactly ``amount`` sat, optionally P2PK-locked to ``lock_to``."""
        cdk = load_cdk()

        conditions = None
        if lock_to is not None:
            conditions = cdk.SpendingConditions.P2PK(pubkey=lock_to.hex(), conditions=None)
        options = cdk.SendOptions(
            memo=None,
            conditions=conditions,
            amount_split_target=cdk.SplitTarget.NONE(),
            send_kind=cdk.SendKind.ONLINE_EXACT(),
            include_fee=False,
            max_proofs=None,
            metadata={},
        )

        async def fn(w: Any) -> str:
            prepared = await w.prepare_send(cdk.Amount(value=amount), options)
            token = await prepared.confirm(None)
            return str(token.encode())

        return await self.call(fn)

    async def take_exact(self, amount: int) -> list[Any]:
        """Unlocked proofs of exactly ``amount`` out of the wallet (a deposit's inputs)."""
        cdk = load_cdk()

        return list(cdk.Token.decode(await self.send(amount)).proofs_simple())

    async def receive_token(self, token: str, keys: list[str]) -> int:
        """Receive a token: plain ecash, or P2PK-locked to one of ``keys`` (hex secret keys)
        alone. Lock conditions are checked *before* the mint is asked: a failed receive
        would leave the foreign proofs counted in cdk's balance."""
        cdk = load_cdk()

        try:
            decoded = cdk.Token.decode(token.strip())
        except cdk.FfiError as exc:
            raise MintRefusedError("not a Cashu token", code="cashu_invalid") from exc
        if decoded.mint_url().url.rstrip("/") != self.mint_url.rstrip("/"):
            raise MintRefusedError(
                f"the token is from {decoded.mint_url().url}, this wallet uses {self.mint_url}",
                code="cashu_invalid",
            )
        ours = {_pub_hex(k) for k in keys}
        for cond in decoded.spending_conditions():
            if not cond.is_p2pk() or cond.pubkey not in ours or _needs_more(cond.conditions):
                raise MintRefusedError(
                    "the token is locked to a key this node cannot sign alone",
                    code="cashu_invalid",
                )
        options = cdk.ReceiveOptions(
            amount_split_target=cdk.SplitTarget.NONE(),
            p2pk_signing_keys=[cdk.SecretKey(hex=k) for k in keys],
            preimages=[],
            metadata={},
        )

        async def fn(w: Any) -> int:
            return int((await w.receive(decoded, options)).value)

        return await self.call(fn)

    def receive_proofs_sync(self, proofs: list[Any]) -> int:
        """Swap fully signed proofs into the wallet (runs under the wallet's lock)."""
        cdk = load_cdk()

        options = cdk.ReceiveOptions(
            amount_split_target=cdk.SplitTarget.NONE(),
            p2pk_signing_keys=[],
            preimages=[],
            metadata={},
        )

        async def fn(w: Any) -> int:
            return int((await w.receive_proofs(proofs, options, None)).value)

        try:
            return self.call_sync(fn)
        except SettlementError:
            self._forget_sync(proofs)
            raise

    async def receive_proofs(self, proofs: list[Any]) -> int:
        return await self.run_sync(self.receive_proofs_sync, proofs)

    def _forget_sync(self, proofs: list[Any]) -> None:
        """Drop proofs a failed receive left in cdk's database (they are not ours)."""
        cdk = load_cdk()

        ys = [cdk.proof_y(p) for p in proofs]

        async def fn(_w: Any) -> None:
            await self._db.update_proofs([], [cdk.PublicKey(hex=y) for y in ys])

        try:
            self.call_sync(fn)
        except SettlementError:
            pass  # not stored: nothing to forget

    async def restore(self) -> int:
        async def fn(w: Any) -> int:
            return int((await w.restore()).value)

        return await self.call(fn)


async def _await(aw: Awaitable[T]) -> T:
    return await aw


def _pub_hex(secret_hex: str) -> str:
    from coincurve import PrivateKey

    return bytes(PrivateKey(bytes.fromhex(secret_hex)).public_key.format()).hex()


def _needs_more(conditions: Any) -> bool:
    """True when P2PK conditions ask for more than one signature by the data key."""
    if conditions is None:
        return False
    return bool(conditions.pubkeys) or (conditions.num_sigs or 1) > 1


class MintClient:
    """The mint's HTTP API for what cdk does not do for a channel (NUT-01/02/03/07/09)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._keys: dict[str, dict[int, bytes]] = {}

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        for pause in BUSY_RETRY_S:
            try:
                return self._request_once(method, path, body)
            except MintBusyError:
                time.sleep(pause)  # a worker thread; the mint ran nothing
        return self._request_once(method, path, body)

    def _request_once(self, method: str, path: str, body: Any) -> Any:
        try:
            with httpx.Client(timeout=HTTP_TIMEOUT_S) as client:
                resp = client.request(method, self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise translate(exc, self.url) from exc
        try:
            data = resp.json()
        except ValueError as exc:
            raise MintRefusedError(f"the mint answered {resp.status_code} without JSON") from exc
        if resp.status_code != 200:
            detail = data.get("detail", data) if isinstance(data, dict) else data
            raise translate(MintRefusedError(str(detail)[:300]), self.url)
        return data

    def active_keyset(self) -> str:
        sets = self._request("GET", "/v1/keysets").get("keysets", [])
        active = [k["id"] for k in sets if k.get("unit") == "sat" and k.get("active")]
        if not active:
            raise MintRefusedError(f"the mint {self.url} has no active sat keyset")
        return str(active[0])

    def keys(self, keyset: str) -> dict[int, bytes]:
        """The keyset's public key per amount (cached: a keyset never changes)."""
        if keyset not in self._keys:
            data = self._request("GET", f"/v1/keys/{keyset}")
            found = [k for k in data.get("keysets", []) if k.get("id") == keyset]
            if not found or found[0].get("unit") != "sat":
                raise MintRefusedError(f"the mint has no sat keyset {keyset}")
            self._keys[keyset] = {int(a): bytes.fromhex(k) for a, k in found[0]["keys"].items()}
        return self._keys[keyset]

    def swap(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> list[Any]:
        data = self._request("POST", "/v1/swap", {"inputs": inputs, "outputs": outputs})
        sigs = data.get("signatures")
        if not isinstance(sigs, list) or len(sigs) != len(outputs):
            raise MintRefusedError("the mint's swap answer has the wrong number of signatures")
        return sigs

    def restore(self, outputs: list[dict[str, Any]]) -> list[Any]:
        """The mint's signatures on outputs it already signed (NUT-09), in their order."""
        data = self._request("POST", "/v1/restore", {"outputs": outputs})
        pairs = zip(data.get("outputs", []), data.get("signatures", []), strict=False)
        by_b = {o["B_"]: s for o, s in pairs}
        if not all(o["B_"] in by_b for o in outputs):
            raise MintRefusedError("the mint has not signed these outputs")
        return [by_b[o["B_"]] for o in outputs]

    def spent(self, ys: list[str]) -> list[bool]:
        """Per proof (by Y, hex): spent (or being spent) at the mint."""
        data = self._request("POST", "/v1/checkstate", {"Ys": ys})
        states = {s.get("Y"): s.get("state") for s in data.get("states", [])}
        return [states.get(y) in ("SPENT", "PENDING") for y in ys]


def random_scalar() -> bytes:
    from bitterbot.node.pay.cashu_crypto import CURVE_ORDER

    while True:
        r = os.urandom(32)
        if 0 < int.from_bytes(r, "big") < CURVE_ORDER:
            return r
