"""Cashu channel deposits: denominations, the nested cover, P2PK secrets. Sans-IO, integers.

A channel on a Cashu mint (backend ``cashu:<mint URL>``, SPEC 12.6) is funded with ecash
proofs locked by NUT-11 P2PK to a 2-of-2 of payer and payee, with a locktime after which
the payer alone may spend them (refund key). Signatures are ``SIG_INPUTS``: a witness signs
only its proof's secret, never the outputs, so whoever holds both signatures on a proof can
swap it to outputs of their choice. Hence the rules of this module:

- the payer hands the payee its signature on a proof only when the payee is owed that
  proof's value: the signed set's total never exceeds the voucher's cumulative amount;
- the signed sets nest (each voucher's set contains the previous one), so the payee cannot
  combine two sets into more than the highest voucher;
- the deposit is split so the set can follow the amount closely (:func:`denominations`):
  two proofs of each power of two below a unit ``u``, then proofs of ``u``, then the binary
  rest. :func:`extend_cover` adds unsigned proofs greedily, largest first, while they fit;
  what is left uncovered (the payee's unsecured credit) is always below ``u``, about 1/96
  of the capacity (:func:`cover_unit`); a cooperative close pays it exactly.

Everything a payee checks about a deposit without the mint is here (:func:`check_deposit`);
the mint's signatures (DLEQ) and the payer's Schnorr signatures are checked by the node,
which has the curve arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .codec import expect_map
from .errors import DecodeError, PaymentError

KIND = "P2PK"
NONCE_SIZE = 32
PUBKEY_SIZE = 33  # compressed secp256k1
SCHNORR_SIZE = 64
MAX_PROOFS = 256  # a deposit has at most ~100 (96 units + two of each smaller power + rest)
PIECES_PER_UNIT = 96
MAX_CASHU_AMOUNT = 2**40  # sat; well above any channel (and below the mints' limits)
MAX_URL_LEN = 200


class CashuError(PaymentError):
    """Cashu material (deposit proofs, signatures beside a voucher) is invalid."""

    code = "cashu_invalid"


def cover_unit(capacity: int) -> int:
    """The unit ``u`` of a deposit: the smallest power of two >= capacity / 96."""
    if capacity <= 0:
        raise CashuError("a deposit needs a positive capacity")
    need = -(-capacity // PIECES_PER_UNIT)
    return 1 << (need - 1).bit_length()


def denominations(capacity: int) -> list[int]:
    """The proof amounts a deposit of ``capacity`` is split into, ascending.

    Two of each power of two below the unit (exact small amounts), as many units as fit,
    then the binary rest. Sums to ``capacity``; at most about 100 proofs.
    """
    unit = cover_unit(capacity)
    out: list[int] = []
    rest = capacity
    power = 1
    while power < unit:
        for _ in range(2):
            if rest >= power:
                out.append(power)
                rest -= power
        power <<= 1
    units, rest = divmod(rest, unit)
    out += [unit] * units
    bit = 1
    while rest:
        if rest & 1:
            out.append(bit)
        rest >>= 1
        bit <<= 1
    return sorted(out)


def extend_cover(amounts: list[int], signed: set[int], owed: int) -> list[int]:
    """Indices of unsigned proofs to sign so the signed total follows ``owed``.

    Greedy, largest first: a proof joins while it fits in what is still uncovered, so the
    signed total never exceeds ``owed`` and what stays uncovered is below every unsigned
    proof (so below the unit). Deterministic: ties go to the lowest index.
    """
    covered = sum(amounts[i] for i in signed)
    gap = owed - covered
    if gap < 0:
        raise CashuError(f"the signed proofs ({covered}) already exceed the amount owed ({owed})")
    picked: list[int] = []
    for i in sorted(range(len(amounts)), key=lambda i: (-amounts[i], i)):
        if i not in signed and amounts[i] <= gap:
            picked.append(i)
            gap -= amounts[i]
            if gap == 0:
                break
    return picked


def check_cover(
    amounts: list[int],
    signed: set[int],
    new: list[int],
    owed: int,
    *,
    covered: int | None = None,
    capacity: int | None = None,
) -> int:
    """The payee's rule for a voucher's new signatures; returns the new signed total.

    The new indices are distinct, in range and not signed before (sets nest); the signed
    total stays at most ``owed`` and covers it to within one unit. ``covered`` (the signed
    total) and ``capacity`` (the sum of ``amounts``) spare the sums on the hot path.
    """
    if len(set(new)) != len(new) or any(not 0 <= i < len(amounts) or i in signed for i in new):
        raise CashuError("the signatures name proofs that are unknown or signed already")
    base = sum(amounts[i] for i in signed) if covered is None else covered
    total = base + sum(amounts[i] for i in new)
    if total > owed:
        raise CashuError(f"the signed proofs ({total}) exceed the voucher ({owed})")
    unit = cover_unit(sum(amounts) if capacity is None else capacity)
    if owed - total >= unit:
        raise CashuError(
            f"the signed proofs cover {total} of {owed}; the rest must stay below {unit}",
            hint="the payer must sign the proofs that cover the voucher",
        )
    return total


# --- P2PK secrets (NUT-10/11) ---------------------------------------------------------------


def p2pk_secret(nonce: bytes, payee_key: bytes, payer_key: bytes, locktime: int) -> str:
    """The secret string of a deposit proof: 2-of-2 payee+payer, refund to the payer after
    ``locktime`` (Unix seconds), SIG_INPUTS. Both sides build it from the nonce, so the
    exact string (which the mint hashes) never travels."""
    tags = [
        ["pubkeys", payer_key.hex()],
        ["n_sigs", "2"],
        ["locktime", str(locktime)],
        ["refund", payer_key.hex()],
        ["n_sigs_refund", "1"],
        ["sigflag", "SIG_INPUTS"],
    ]
    body = {"nonce": nonce.hex(), "data": payee_key.hex(), "tags": tags}
    return json.dumps([KIND, body], separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class DepositProof:
    """One locked proof as it travels: the secret is rebuilt from ``nonce``."""

    amount: int
    nonce: bytes
    c: bytes  # the mint's unblinded signature, compressed point
    dleq_e: bytes
    dleq_s: bytes
    dleq_r: bytes

    def to_obj(self) -> list[Any]:
        return [self.amount, self.nonce, self.c, self.dleq_e, self.dleq_s, self.dleq_r]


@dataclass(frozen=True, slots=True)
class Deposit:
    """What the payer sends the payee after locking: enough to check and later spend."""

    mint: str
    keyset: str
    payer_key: bytes
    payee_key: bytes
    locktime: int
    proofs: tuple[DepositProof, ...]

    @property
    def amounts(self) -> list[int]:
        return [p.amount for p in self.proofs]

    def secret(self, index: int) -> str:
        return p2pk_secret(self.proofs[index].nonce, self.payee_key, self.payer_key, self.locktime)

    def to_obj(self) -> dict[str, Any]:
        return {
            "mint": self.mint,
            "keyset": self.keyset,
            "payer_key": self.payer_key,
            "payee_key": self.payee_key,
            "locktime": self.locktime,
            "proofs": [p.to_obj() for p in self.proofs],
        }

    @classmethod
    def from_obj(cls, obj: Any) -> Deposit:
        m = expect_map(
            obj,
            "cashu deposit",
            {
                "mint": str,
                "keyset": str,
                "payer_key": bytes,
                "payee_key": bytes,
                "locktime": int,
                "proofs": list,
            },
        )
        if not 0 < len(m["mint"]) <= MAX_URL_LEN:
            raise DecodeError("cashu deposit: mint URL must be 1..200 characters")
        if not 0 < len(m["keyset"]) <= 66 or any(c not in "0123456789abcdef" for c in m["keyset"]):
            raise DecodeError("cashu deposit: keyset ID must be lowercase hex")
        for name in ("payer_key", "payee_key"):
            if len(m[name]) != PUBKEY_SIZE:
                raise DecodeError(f"cashu deposit: {name} must be {PUBKEY_SIZE} bytes")
        if not 0 < m["locktime"] < 2**40:
            raise DecodeError("cashu deposit: locktime out of range")
        if not 0 < len(m["proofs"]) <= MAX_PROOFS:
            raise DecodeError(f"cashu deposit: 1..{MAX_PROOFS} proofs")
        proofs = []
        for raw in m["proofs"]:
            if not isinstance(raw, list) or len(raw) != 6:
                raise DecodeError("cashu deposit: a proof is [amount, nonce, C, e, s, r]")
            amount, nonce, c, e, s, r = raw
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise DecodeError("cashu deposit: proof amount must be an integer")
            if not 0 < amount <= MAX_CASHU_AMOUNT or amount & (amount - 1):
                raise DecodeError("cashu deposit: proof amount must be a power of two")
            sizes = ((nonce, NONCE_SIZE), (c, PUBKEY_SIZE), (e, 32), (s, 32), (r, 32))
            if any(not isinstance(v, bytes) or len(v) != n for v, n in sizes):
                raise DecodeError("cashu deposit: proof fields have the wrong size")
            proofs.append(DepositProof(amount, nonce, c, e, s, r))
        return cls(
            m["mint"], m["keyset"], m["payer_key"], m["payee_key"], m["locktime"], tuple(proofs)
        )


def check_deposit(deposit: Deposit, *, capacity: int, payee_key: bytes, locktime: int) -> None:
    """The payee's offline checks: the split is the agreed one, locked to us, unique nonces."""
    if deposit.payee_key != payee_key or deposit.payer_key == payee_key:
        raise CashuError("the deposit is not locked to this channel's payee and payer keys")
    if deposit.locktime != locktime:
        raise CashuError(f"the deposit's locktime {deposit.locktime} is not the agreed {locktime}")
    if sorted(deposit.amounts) != denominations(capacity):
        raise CashuError("the deposit is not split into the agreed denominations")
    if len({p.nonce for p in deposit.proofs}) != len(deposit.proofs):
        raise CashuError("the deposit repeats a proof")


def parse_signatures(obj: Any, count: int) -> list[tuple[int, bytes]]:
    """``[[index, sig64], ...]`` beside a voucher or close, size-checked."""
    if obj is None:
        return []
    if not isinstance(obj, list) or len(obj) > min(count, MAX_PROOFS):
        raise DecodeError("cashu signatures: a list of at most one per proof")
    out = []
    for item in obj:
        if not isinstance(item, list) or len(item) != 2:
            raise DecodeError("cashu signatures: each is [index, signature]")
        index, sig = item
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise DecodeError("cashu signatures: index out of range")
        if not isinstance(sig, bytes) or len(sig) != SCHNORR_SIZE:
            raise DecodeError(f"cashu signatures: a signature is {SCHNORR_SIZE} bytes")
        out.append((index, sig))
    return out
