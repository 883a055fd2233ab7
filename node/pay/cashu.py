"""Cashu settlement backend (``pay.backend = "cashu:<mint URL>"``): channels funded with ecash.

Real money between machines with no shared ledger (SPEC 12.6). The payer locks the
capacity as proofs P2PK-locked to a 2-of-2 of per-channel keys (payee, payer) with a
locktime and the payer as refund key (protocol/cashu.py has the rules and why they are
safe under SIG_INPUTS). Then, on ``/bitterbot/pay/1.0.0``, beside the usual messages:

- open reply: the payee's channel key; ``deposit``: the locked proofs, checked by the payee
  (split, keys, locktime, the mint's DLEQ signatures, unspent at the mint);
- each voucher: the payer's signatures on the proofs that extend the cover to the new
  total (offline: no mint round trip per voucher);
- close: a token for the uncovered rest (below one unit), then the payee's signatures on
  the proofs it was not paid, so the payer takes them back at once.

The payee settles by adding its signature and swapping the signed proofs into its wallet,
at the latest shortly before the locktime (the payer alone can spend them after it); the
payer refunds the unsigned proofs after the locktime. Everything received or signed is in
LMDB (``cashu.channels``) before it is acknowledged; the mint being down loses nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import trio

from bitterbot.node.pay import cashu_crypto as cc
from bitterbot.node.pay.cashu_wallet import (
    CashuWallet,
    MintClient,
    MintRefusedError,
    ProofsSpentError,
    load_cdk,
    random_scalar,
)
from bitterbot.node.store import Store, Txn
from bitterbot.protocol import cashu as rules
from bitterbot.protocol import settlement as esc
from bitterbot.protocol.channel import ChannelTerms, CloseMessage, OpenMessage, Voucher
from bitterbot.protocol.errors import DecodeError
from bitterbot.protocol.identity import Identity

logger = logging.getLogger(__name__)
CHANNELS = "cashu.channels"  # channel ID -> this node's Cashu record (payer or payee)
CASHU_FOLDER = "cashu"  # in the home: the cdk wallet (SQLite) and its mnemonic (0600)
COVER = "cashu.cover"  # channel ID -> {signed: [proof index], total: sat}: read per voucher
SIGS = "cashu.sigs"  # channel ID + proof index (2 bytes) -> the payer's signature on it
PREFIX = "cashu:"
MAX_NAME = 32  # ChannelTerms.backend


def backend_name(mint_url: str) -> str:
    """The name in channel terms: ``cashu:<url>``, or a hash of the URL when that is long."""
    url = mint_url.rstrip("/")
    name = PREFIX + url
    if len(name) <= MAX_NAME:
        return name
    return PREFIX + hashlib.sha256(url.encode()).hexdigest()[: MAX_NAME - len(PREFIX)]


def locktime_of(terms: ChannelTerms) -> int:
    """Unix seconds after which the payer alone may spend the deposit."""
    return (terms.created_ms + terms.dispute_window_ms) // 1000


def _proof_json(amount: int, keyset: str, secret: str, c: bytes) -> dict[str, Any]:
    return {"amount": amount, "id": keyset, "secret": secret, "C": c.hex()}


class CashuBackend:
    """Settlement on a Cashu mint for one node (its wallet, its LMDB records)."""

    test_money = False

    def __init__(self, store: Store, identity: Identity, folder: Path, mint_url: str) -> None:
        self.store = store
        self.identity = identity
        self.mint_url = mint_url.rstrip("/")
        self.name = backend_name(self.mint_url)
        self.wallet = CashuWallet(Path(folder), self.mint_url)
        self.client = MintClient(self.mint_url)
        self._verifiers: dict[bytes, cc.SchnorrVerifier] = {}
        self._deposits: dict[bytes, rules.Deposit] = {}  # channel ID -> deposit (immutable)
        self._capacities: dict[bytes, int] = {}
        store.transact(lambda txn: (txn.count(CHANNELS), txn.count(COVER), txn.count(SIGS)))

    def shutdown(self) -> None:
        """Nothing to close: the store is the node's, the wallet opens per call."""

    async def warm(self) -> None:
        """Fetch the mint's keysets once at start, so the first settle is not the slow one; a
        mint that is down now is only logged (every operation retries it)."""

        async def refresh(w: Any) -> None:
            await w.refresh_keysets()

        try:
            await self.wallet.call(refresh)
        except esc.SettlementError as exc:
            logger.info("Cashu mint not warmed up: %s", exc)

    def _key(self, terms: ChannelTerms) -> Any:
        return cc.channel_key(self.identity.seed, terms.salt)

    def record(self, cid: bytes) -> dict[str, Any] | None:
        with self.store.read() as txn:
            rec: dict[str, Any] | None = txn.get(CHANNELS, cid)
            return rec

    async def _put(self, cid: bytes, rec: dict[str, Any]) -> None:
        await self.store.run(lambda txn: txn.put(CHANNELS, cid, rec))

    # --- the signed set, kept apart from the big record: a voucher reads a few bytes ------
    def deposit_of(self, cid: bytes) -> rules.Deposit | None:
        """The channel's deposit (either role), parsed once."""
        deposit = self._deposits.get(cid)
        if deposit is None:
            rec = self.record(cid)
            if rec is None:
                return None
            if rec["role"] == "payee" and rec.get("deposit") is not None:
                deposit = rules.Deposit.from_obj(rec["deposit"])
            elif rec["role"] == "payer" and rec.get("proofs") is not None:
                deposit = self._deposit(rec)
            else:
                return None
            if len(self._deposits) >= 10_000:
                self._deposits.clear()
                self._capacities.clear()
            self._deposits[cid] = deposit
        return deposit

    def _capacity(self, cid: bytes, deposit: rules.Deposit) -> int:
        cap = self._capacities.get(cid)
        if cap is None:
            cap = self._capacities[cid] = sum(deposit.amounts)
        return cap

    @staticmethod
    def _cover(txn: Txn, cid: bytes) -> tuple[list[int], int]:
        c = txn.get(COVER, cid)
        return ([], 0) if c is None else (list(c["signed"]), int(c["total"]))

    @staticmethod
    def _add_signed(
        txn: Txn, cid: bytes, amounts: list[int], sigs: list[tuple[int, bytes]]
    ) -> None:
        indices, total = CashuBackend._cover(txn, cid)
        for i, sig in sigs:
            txn.put(SIGS, cid + i.to_bytes(2, "big"), sig)
        total += sum(amounts[i] for i, _ in sigs)
        txn.put(COVER, cid, {"signed": indices + [i for i, _ in sigs], "total": total})

    def signed(self, cid: bytes) -> list[tuple[int, bytes]]:
        """The proofs the payer signed over so far, with its signatures, in order."""
        with self.store.read() as txn:
            indices, _ = self._cover(txn, cid)
            return [(i, bytes(txn.get(SIGS, cid + i.to_bytes(2, "big")))) for i in indices]

    def covered(self, cid: bytes) -> int:
        with self.store.read() as txn:
            return self._cover(txn, cid)[1]

    # --- SettlementBackend -----------------------------------------------------------
    async def balance(self, account: bytes) -> int:
        """This node's spendable ecash (``account`` is always this node here)."""
        return await self.wallet.balance()

    async def escrow(self, channel_id: bytes) -> esc.Escrow | None:
        rec = self.record(channel_id)
        if rec is None or (rec["role"] == "payee" and rec.get("deposit") is None):
            return None
        if rec["role"] == "payer" and rec["state"] in ("new", "locking"):
            return None
        terms = ChannelTerms.from_obj(rec["terms"])
        state = esc.CLOSED if rec["state"] in ("closed", "refunded") else esc.LOCKED
        return esc.Escrow(
            terms,
            settled=int(rec.get("settled", 0)),
            state=state,
            deadline_ms=locktime_of(terms) * 1000,
            refunded=int(rec.get("refunded", 0)),
        )

    # --- payer: open and lock -----------------------------------------------------------
    def open_extra(self, terms: ChannelTerms) -> dict[str, Any]:
        """Payee: its channel key, returned with the countersigned open."""
        return {"key": cc.public_key(self._key(terms))}

    async def note_open(self, msg: OpenMessage, extra: Any) -> None:
        """Payer: remember the payee's channel key from the open reply."""
        if not isinstance(extra, dict) or not isinstance(extra.get("key"), bytes):
            raise rules.CashuError("the payee sent no Cashu channel key")
        key = extra["key"]
        cc.SchnorrVerifier(key)  # a point on the curve, or CashuError
        if self.record(msg.channel_id) is None:
            await self._put(
                msg.channel_id,
                {"role": "payer", "terms": msg.terms.body(), "payee_key": key, "state": "new"},
            )

    async def lock_deposit(self, msg: OpenMessage, now_ms: int) -> esc.Escrow:
        """Payer: take ``capacity`` out of the wallet and swap it into locked proofs."""
        esc.escrow_lock(msg)
        cid, terms = msg.channel_id, msg.terms
        rec = self.record(cid)
        if rec is None:
            raise rules.CashuError("the payee's channel key is missing", hint="open again")
        if rec["state"] == "new":
            amounts = rules.denominations(terms.capacity)
            rec.update(
                state="locking",
                payer_key=cc.public_key(self._key(terms)),
                locktime=locktime_of(terms),
                keyset=await trio.to_thread.run_sync(self.client.active_keyset),
                amounts=amounts,
                nonces=[os.urandom(rules.NONCE_SIZE) for _ in amounts],
                rs=[random_scalar() for _ in amounts],
                inputs=None,
            )
            await self._put(cid, rec)  # blinding data first: a crash can restore the outputs
        if rec["state"] == "locking":
            if rec["inputs"] is None:
                proofs = await self.wallet.take_exact(terms.capacity)
                rec["inputs"] = [
                    _proof_json(int(p.amount.value), p.keyset_id, p.secret, bytes.fromhex(p.c))
                    for p in proofs
                ]
                await self._put(cid, rec)  # bearer ecash out of the wallet: keep it first
            rec["proofs"] = await self.wallet.run_sync(self._swap_locked_sync, rec)
            rec.update(state="locked", inputs=None, settled=0)
            await self._put(cid, rec)
        escrow = await self.escrow(cid)
        assert escrow is not None
        return escrow

    def _outputs(self, rec: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        secrets = [
            rules.p2pk_secret(n, rec["payee_key"], rec["payer_key"], rec["locktime"])
            for n in rec["nonces"]
        ]
        outputs = [
            {"amount": a, "id": rec["keyset"], "B_": cc.blind(s, r).hex()}
            for a, s, r in zip(rec["amounts"], secrets, rec["rs"], strict=True)
        ]
        return secrets, outputs

    def _swap_locked_sync(self, rec: dict[str, Any]) -> list[list[Any]]:
        secrets, outputs = self._outputs(rec)
        try:
            sigs = self.client.swap(rec["inputs"], outputs)
        except ProofsSpentError:
            sigs = self.client.restore(outputs)  # swapped before a crash or a lost reply
        keys = self.client.keys(rec["keyset"])
        proofs = []
        for amount, nonce, r, secret, sig in zip(
            rec["amounts"], rec["nonces"], rec["rs"], secrets, sigs, strict=True
        ):
            mint_key = keys.get(amount)
            dleq = sig.get("dleq") or {}
            if mint_key is None or not dleq:
                raise MintRefusedError("the mint signed without a key or a DLEQ proof")
            c = cc.unblind(bytes.fromhex(sig["C_"]), r, mint_key)
            e, s = bytes.fromhex(dleq["e"]), bytes.fromhex(dleq["s"])
            if not cc.verify_dleq(secret, c, e, s, r, mint_key):
                raise MintRefusedError("the mint's DLEQ proof does not verify")
            proofs.append([amount, nonce, c, e, s, r])
        return proofs

    def deposit_message(self, cid: bytes) -> dict[str, Any] | None:
        """Payer: the deposit to send the payee (``deposit`` request)."""
        rec = self.record(cid)
        if rec is None or rec["role"] != "payer" or rec.get("proofs") is None:
            return None
        return self._deposit(rec).to_obj()

    def _deposit(self, rec: dict[str, Any]) -> rules.Deposit:
        return rules.Deposit(
            self.mint_url,
            rec["keyset"],
            rec["payer_key"],
            rec["payee_key"],
            rec["locktime"],
            tuple(rules.DepositProof(*p) for p in rec["proofs"]),
        )

    # --- payee: accept the deposit ------------------------------------------------------
    async def accept_deposit(self, terms: ChannelTerms, raw: Any, now_ms: int) -> None:
        """Payee: check a deposit against the terms and the mint; store it."""
        cid = terms.channel_id
        rec = self.record(cid)
        if rec is not None and rec.get("deposit") is not None:
            return  # a retried deposit
        deposit = rules.Deposit.from_obj(raw)
        if deposit.mint.rstrip("/") != self.mint_url:
            raise rules.CashuError(
                f"the deposit is on {deposit.mint}, this node uses {self.mint_url}"
            )
        rules.check_deposit(
            deposit,
            capacity=terms.capacity,
            payee_key=cc.public_key(self._key(terms)),
            locktime=locktime_of(terms),
        )
        if locktime_of(terms) * 1000 - now_ms < terms.dispute_window_ms // 2:
            raise rules.CashuError(
                "the deposit unlocks too soon to settle safely",
                hint="open channels with a fresh created_ms: the locktime is created + window",
            )
        cc.SchnorrVerifier(deposit.payer_key)  # a point on the curve, or CashuError
        await trio.to_thread.run_sync(self._check_with_mint_sync, deposit)
        await self._put(
            cid,
            {
                "role": "payee",
                "terms": terms.body(),
                "deposit": deposit.to_obj(),
                "swapped": [],
                "settled": 0,
                "state": "locked",
            },
        )

    def _check_with_mint_sync(self, deposit: rules.Deposit) -> None:
        keys = self.client.keys(deposit.keyset)
        ys = []
        for i, p in enumerate(deposit.proofs):
            secret = deposit.secret(i)
            mint_key = keys.get(p.amount)
            if mint_key is None or not cc.verify_dleq(
                secret, p.c, p.dleq_e, p.dleq_s, p.dleq_r, mint_key
            ):
                raise rules.CashuError("a deposit proof is not signed by the mint (DLEQ)")
            ys.append(bytes(cc.hash_to_curve(secret.encode()).format()).hex())
        if any(self.client.spent(ys)):
            raise ProofsSpentError("a deposit proof is already spent at the mint")

    # --- vouchers ---------------------------------------------------------------------
    def voucher_extra(self, txn: Txn, voucher: Voucher) -> dict[str, Any] | None:
        """Payer, inside the transaction that signs ``voucher``: sign the proofs that extend
        the cover to its amount, and record them. Returns what travels beside it."""
        deposit = self.deposit_of(voucher.channel)
        if deposit is None:
            raise rules.CashuError("this channel has no locked Cashu deposit")
        indices, _ = self._cover(txn, voucher.channel)
        new = rules.extend_cover(deposit.amounts, set(indices), voucher.amount)
        if not new:
            return None
        rec: dict[str, Any] = txn.get(CHANNELS, voucher.channel)
        key = self._key(ChannelTerms.from_obj(rec["terms"]))
        sigs = [(i, cc.sign_secret(key, deposit.secret(i))) for i in new]
        self._add_signed(txn, voucher.channel, deposit.amounts, sigs)
        return {"sigs": [[i, sig] for i, sig in sigs]}

    def check_voucher_extra(self, terms: ChannelTerms, voucher: Voucher, raw: Any) -> Any:
        """Payee, before the commit: the signatures verify against the deposit (Schnorr)."""
        listed = raw.get("sigs") if isinstance(raw, dict) else None
        if not listed:
            return []  # most vouchers: the cover still holds without a new proof
        deposit = self.deposit_of(voucher.channel)
        if deposit is None:
            raise rules.CashuError("no Cashu deposit for this channel")
        sigs = rules.parse_signatures(listed, len(deposit.proofs))
        verifier = self._verifiers.get(deposit.payer_key)
        if verifier is None:
            if len(self._verifiers) > 10_000:
                self._verifiers.clear()
            verifier = self._verifiers[deposit.payer_key] = cc.SchnorrVerifier(deposit.payer_key)
        for i, sig in sigs:
            if not verifier.verify(deposit.secret(i), sig):
                raise rules.CashuError("a proof signature beside the voucher is not the payer's")
        return sigs

    def apply_voucher_extra(self, txn: Txn, voucher: Voucher, sigs: Any) -> None:
        """Payee, inside the voucher's commit: the cover rule, then store the signatures."""
        deposit = self.deposit_of(voucher.channel)
        if deposit is None:
            raise rules.CashuError("no Cashu deposit for this channel")
        indices, total = self._cover(txn, voucher.channel)
        sigs = sigs or []  # a voucher with no material: the cover must already hold
        rules.check_cover(
            deposit.amounts,
            set(indices),
            [i for i, _ in sigs],
            voucher.amount,
            covered=total,
            capacity=self._capacity(voucher.channel, deposit),
        )
        if sigs:
            self._add_signed(txn, voucher.channel, deposit.amounts, sigs)

    # --- payee: settle ------------------------------------------------------------------
    async def settle(self, voucher: Voucher, now_ms: int) -> int:
        """Payee: co-sign and swap every signed proof not swapped yet; returns the sats."""
        cid = voucher.channel
        rec = self.record(cid)
        if rec is None or rec.get("deposit") is None:
            raise esc.UnknownChannelError("no Cashu deposit for this channel")
        swapped = set(rec["swapped"])
        todo = [(i, s) for i, s in self.signed(cid) if i not in swapped]
        if not todo:
            return 0
        deposit = rules.Deposit.from_obj(rec["deposit"])
        key = self._key(ChannelTerms.from_obj(rec["terms"]))
        proofs = [
            _cdk_proof(deposit, i, [sig, cc.sign_secret(key, deposit.secret(i))]) for i, sig in todo
        ]
        interrupted = set(rec.get("settling", []))
        rec["settling"] = [i for i, _ in todo]
        await self._put(cid, rec)
        try:
            paid = await self.wallet.receive_proofs(proofs)
        except ProofsSpentError:
            if not {i for i, _ in todo} <= interrupted:
                raise  # a double spend, not our own earlier swap
            # our swap went through before a crash: cdk's outputs are deterministic (NUT-13)
            await self.wallet.restore()
            paid = sum(deposit.proofs[i].amount for i, _ in todo)

        def mark(txn: Txn) -> None:
            r = txn.get(CHANNELS, cid)
            r["swapped"] = sorted(set(r["swapped"]) | {i for i, _ in todo})
            r["settled"] = sum(deposit.proofs[i].amount for i in r["swapped"])
            r["settling"] = []
            txn.put(CHANNELS, cid, r)

        await self.store.run(mark)
        return paid

    # --- close ----------------------------------------------------------------------
    async def close_extra(self, close: CloseMessage) -> dict[str, Any]:
        """Payer, before a cooperative close: a token for the uncovered rest (< one unit)."""
        rec = self.record(close.channel)
        if rec is None or rec.get("proofs") is None:
            raise esc.UnknownChannelError("no Cashu deposit for this channel")
        gap = close.amount - self.covered(close.channel)
        if gap <= 0:
            return {}
        token = rec.get("gap_token")
        if token is None or rec.get("gap_for") != close.amount:
            token = await self.wallet.send(gap, lock_to=rec["payee_key"])
            rec.update(gap_token=token, gap_for=close.amount)
            await self._put(close.channel, rec)
        return {"gap": token}

    async def accept_close(self, close: CloseMessage, raw: Any, now_ms: int) -> dict[str, Any]:
        """Payee, after countersigning: take the rest, settle, sign the payer's proofs back."""
        cid = close.channel
        rec = self.record(cid)
        if rec is None or rec.get("deposit") is None:
            raise esc.UnknownChannelError("no Cashu deposit for this channel")
        deposit = rules.Deposit.from_obj(rec["deposit"])
        gap = close.amount - self.covered(cid)
        if gap > 0 and not rec.get("gap_received"):
            token = raw.get("gap") if isinstance(raw, dict) else None
            if not isinstance(token, str) or len(token) > 16_384:
                raise rules.CashuError(f"the close leaves {gap} uncovered and brings no token")
            key = self._key(ChannelTerms.from_obj(rec["terms"]))
            got = await self.wallet.receive_token(token, [key.secret.hex()])
            if got < gap:
                raise rules.CashuError(f"the close's token brings {got}, {gap} are owed")
            rec["gap_received"] = got
            await self._put(cid, rec)
        await self.settle(Voucher(cid, close.nonce, close.amount, b"", b""), now_ms)
        rec = self.record(cid)
        assert rec is not None
        key = self._key(ChannelTerms.from_obj(rec["terms"]))
        signed = {i for i, _ in self.signed(cid)}
        back = [
            [i, cc.sign_secret(key, deposit.secret(i))]
            for i in range(len(deposit.proofs))
            if i not in signed
        ]
        rec["state"] = "closed"
        await self._put(cid, rec)
        return {"refund_sigs": back}

    async def note_close_reply(self, close: CloseMessage, raw: Any) -> None:
        """Payer: keep the payee's signatures on the proofs it returns (before using them)."""
        rec = self.record(close.channel)
        if rec is None or rec.get("proofs") is None:
            return
        deposit = self._deposit(rec)
        sigs = rules.parse_signatures(
            raw.get("refund_sigs") if isinstance(raw, dict) else None, len(deposit.proofs)
        )
        payee = cc.SchnorrVerifier(rec["payee_key"])
        signed = {i for i, _ in self.signed(close.channel)}
        for i, sig in sigs:
            if i in signed or not payee.verify(deposit.secret(i), sig):
                raise rules.CashuError("the payee's return signature is invalid")
        rec["refund_sigs"] = [[i, s] for i, s in sigs]
        await self._put(close.channel, rec)

    async def close(self, close: CloseMessage, now_ms: int) -> esc.Escrow:
        """Payer: the cooperative close is signed; swap the returned proofs back now."""
        rec = self.record(close.channel)
        if rec is None or rec.get("proofs") is None:
            raise esc.UnknownChannelError("no Cashu deposit for this channel")
        terms = ChannelTerms.from_obj(rec["terms"])
        close.verify(terms)
        if rec["state"] != "closed":
            back = rec.get("refund_sigs") or []
            refunded = await self._reclaim(rec, back) if back else 0
            rec.update(state="closed", refunded=refunded, settled=close.amount)
            await self._put(close.channel, rec)
        escrow = await self.escrow(close.channel)
        assert escrow is not None
        return escrow

    async def request_close(self, request: CloseMessage, now_ms: int) -> esc.Escrow:
        """Payer, alone: nothing to tell the mint; the deposit's locktime is the deadline."""
        escrow = await self.escrow(request.channel)
        if escrow is None:
            raise esc.UnknownChannelError("no Cashu deposit for this channel")
        request.verify(escrow.terms, require_payee=False)
        return escrow

    async def refund(self, channel_id: bytes, now_ms: int) -> int:
        """Payer, after the locktime: take back every proof it never signed over."""
        rec = self.record(channel_id)
        if rec is None or rec.get("proofs") is None:
            raise esc.UnknownChannelError("no Cashu deposit for this channel")
        if rec["state"] in ("closed", "refunded"):
            return int(rec.get("refunded", 0))
        if now_ms < (rec["locktime"] + 1) * 1000:
            raise esc.DisputeWindowOpenError(
                f"the deposit is locked for {rec['locktime'] * 1000 - now_ms} ms more",
                hint="retry after the locktime, when the payee can no longer settle alone",
            )
        refunded = await self._reclaim(rec, [])
        rec.update(state="refunded", refunded=refunded)
        await self._put(channel_id, rec)
        return refunded

    async def _reclaim(self, rec: dict[str, Any], payee_sigs: list[list[Any]]) -> int:
        """Swap the proofs not signed over to the payee into the wallet: with the payee's
        signatures (cooperative close) or alone as refund key (after the locktime)."""
        deposit = self._deposit(rec)
        key = self._key(ChannelTerms.from_obj(rec["terms"]))
        signed = {i for i, _ in self.signed(deposit_cid(rec))}
        by_index = {i: s for i, s in payee_sigs}
        todo = [i for i in range(len(deposit.proofs)) if i not in signed]
        if not todo:
            return 0
        ys = [bytes(cc.hash_to_curve(deposit.secret(i).encode()).format()).hex() for i in todo]
        spent = await trio.to_thread.run_sync(self.client.spent, ys)
        todo = [i for i, s in zip(todo, spent, strict=True) if not s]
        proofs = [
            _cdk_proof(
                deposit,
                i,
                [s for s in (by_index.get(i),) if s] + [cc.sign_secret(key, deposit.secret(i))],
            )
            for i in todo
        ]
        return await self.wallet.receive_proofs(proofs) if proofs else 0


def deposit_cid(rec: dict[str, Any]) -> bytes:
    return ChannelTerms.from_obj(rec["terms"]).channel_id


def _cdk_proof(deposit: rules.Deposit, index: int, sigs: list[bytes]) -> Any:
    cdk = load_cdk()

    p = deposit.proofs[index]
    return cdk.Proof(
        amount=cdk.Amount(value=p.amount),
        secret=deposit.secret(index),
        c=p.c.hex(),
        keyset_id=deposit.keyset,
        witness=cdk.Witness.P2PK(signatures=[s.hex() for s in sigs]),
        dleq=None,
    )


def parse_backend(setting: str) -> str | None:
    """The mint URL of a ``cashu:<url>`` setting, or None for another backend."""
    if not setting.startswith(PREFIX):
        return None
    url = setting[len(PREFIX) :].strip()
    if not url.startswith(("http://", "https://")) or len(url) > rules.MAX_URL_LEN:
        raise DecodeError(f"pay.backend {setting!r}: expected cashu:http(s)://host[:port][/path]")
    return url.rstrip("/")
