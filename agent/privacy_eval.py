"""How well the privacy gate hides labelled private units, and what it costs.

Used by ``bitterbot bench privacy`` and the tests. Data: rows of a query and its labelled
private units (PUPA's format: ``user_query``, ``pii_units`` joined by ``||``), optionally
a ``unit_kinds`` column in the same order (person, org, place, ...). Two numbers matter:

* **leakage**: PAPILLON's measure, the share of labelled units still found
  (case-insensitive, anywhere) in what would be sent;
* **words kept**: the share of the query's *ordinary* words (every word that is not part
  of a labelled unit) that the gate left in place. Over-redaction lowers it.

:func:`split` cuts a data set in two halves by a hash of each query, so one half can be
used to tune and the other to estimate how the gate does on queries it was not tuned on.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bitterbot.protocol.errors import ValidationError

WORD = re.compile(r"\w[\w'’-]*")
LATIN = re.compile(r"[A-Za-zÀ-ɏ]")


class _Span(Protocol):
    start: int
    end: int


class _Redaction(Protocol):
    redacted: str

    @property
    def entities(self) -> Sequence[_Span]: ...


class _Gate(Protocol):
    def redact(self, text: str) -> _Redaction: ...


@dataclass
class Row:
    text: str
    units: list[str]
    category: str = ""
    kinds: list[str] = field(default_factory=list)  # parallel to units when labelled


def read_rows(path: Path) -> list[Row]:
    """Rows of a PUPA-format CSV; a clear error when it is not one."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = []
            for r in csv.DictReader(fh):
                units = r["pii_units"].split("||")
                kinds = r["unit_kinds"].split("||") if r.get("unit_kinds") else []
                if kinds and len(kinds) != len(units):
                    raise ValidationError(
                        f"{path}: {len(units)} units but {len(kinds)} kinds in {r['user_query']!r:.60}",
                        hint="unit_kinds lists one kind per unit, joined by ||",
                    )
                rows.append(Row(r["user_query"], units, r.get("predicted_category") or "", kinds))
    except (OSError, KeyError, csv.Error, UnicodeDecodeError) as exc:
        raise ValidationError(
            f"cannot read {path}: {exc}", hint="a CSV with user_query and pii_units"
        ) from exc
    return rows


def split(rows: Sequence[Row], half: str) -> list[Row]:
    """``tune`` or ``held_out``: a stable half of the rows, by a hash of each query."""
    if half not in ("tune", "held_out"):
        raise ValidationError(f"unknown half {half!r}", hint="tune or held_out")
    want = 0 if half == "tune" else 1
    return [r for r in rows if hashlib.sha256(r.text.encode()).digest()[0] % 2 == want]


def _counted(units: Iterable[str]) -> list[str]:
    """Units shorter than 2 characters and existing placeholders are not counted."""
    out: list[str] = []
    for u in units:
        u = u.strip().lower()
        if len(u) >= 2 and "presidio_anonymized" not in u and u not in out:
            out.append(u)
    return out


def _occurrences(low: str, unit: str) -> list[tuple[int, int]]:
    whole = [(m.start(), m.end()) for m in re.finditer(rf"(?<!\w){re.escape(unit)}(?!\w)", low)]
    return whole or [(m.start(), m.end()) for m in re.finditer(re.escape(unit), low)]


def unit_shape(text: str, unit: str) -> str:
    """How a unit is written where it first occurs: what makes it easy or hard to find."""
    if any(c.isalpha() and not LATIN.match(c) for c in unit):
        return "non_latin"
    if any(c.isdigit() for c in unit):
        return "number"
    spots = _occurrences(text.lower(), unit)
    if not spots:
        return "absent"
    start, end = spots[0]
    written = text[start:end]
    if written == written.lower():
        return "lower_case"
    before = text[:start].rstrip(" \t\"'“‘([*-#>")
    if not before or before[-1] in ".!?:\n;":
        return "sentence_start"
    return "capitalized"


def _overlaps(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(start < b and a < end for a, b in spans)


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def leakage(rows: Iterable[Row | tuple[str, Sequence[str]]], gate: _Gate) -> dict[str, object]:
    """Leakage (overall, at word boundaries, by kind, shape and category), words kept,
    the share of characters replaced, and the gate's time per query."""
    units = leaked = leaked_words = chars = replaced = ordinary = kept = 0
    by: dict[str, Counter[str]] = {"kind": Counter(), "shape": Counter(), "category": Counter()}
    leaks_by: dict[str, Counter[str]] = {k: Counter() for k in by}
    times: list[float] = []
    for row in rows:
        if not isinstance(row, Row):
            row = Row(row[0], list(row[1]))
        text = row.text
        began = time.perf_counter()
        red = gate.redact(text)
        times.append(time.perf_counter() - began)
        low = red.redacted.lower()
        spans = [(e.start, e.end) for e in red.entities]
        chars += len(text)
        replaced += sum(b - a for a, b in spans)
        kinds = dict(zip((u.strip().lower() for u in row.units), row.kinds, strict=False))
        counted = _counted(row.units)
        private: list[tuple[int, int]] = []
        for unit in counted:
            units += 1
            hit = unit in low
            leaked += hit
            leaked_words += bool(re.search(rf"(?<!\w){re.escape(unit)}(?!\w)", low))
            labels = {"shape": unit_shape(text, unit), "category": row.category}
            if unit in kinds:
                labels["kind"] = kinds[unit]
            for name, label in labels.items():
                if label:
                    by[name][label] += 1
                    leaks_by[name][label] += hit
            private += _occurrences(text.lower(), unit)
        for m in WORD.finditer(text):
            if not _overlaps(m.start(), m.end(), private):
                ordinary += 1
                kept += not _overlaps(m.start(), m.end(), spans)
    ms = sorted(t * 1000 for t in times)
    out: dict[str, object] = {
        "queries": len(times),
        "units": units,
        "leakage": _rate(leaked, units),
        "leakage_words": _rate(leaked_words, units),
        "ordinary_words": ordinary,
        "words_kept": _rate(kept, ordinary),
        "redacted_share": _rate(replaced, chars),
        "ms_per_query": round(sum(ms) / len(ms), 3) if ms else 0.0,
        "ms_p50": round(statistics.median(ms), 2) if ms else 0.0,
        "ms_p95": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2) if ms else 0.0,
    }
    for name, counts in by.items():
        if counts:
            out[f"leakage_by_{name}"] = {
                label: {"units": n, "leaked": leaks_by[name][label]}
                for label, n in sorted(counts.items())
            }
    return out


# --- structured personal data: a synthetic set, since real data rarely has enough ---------


def luhn_complete(prefix: str) -> str:
    from bitterbot.agent.privacy_structured import luhn_ok

    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


def make_iban(rng: random.Random, country: str, length: int) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


@dataclass
class Planted:
    kind: str
    value: str
    secrets: list[str]  # pieces that must not survive (the value, or its identifying part)


def _groups(s: str, sep: str, n: int = 4) -> str:
    return sep.join(s[j : j + n] for j in range(0, len(s), n))


def _structured_values(rng: random.Random, i: int) -> dict[str, Planted]:
    pan = luhn_complete(
        rng.choice(["4", "51", "37", "6011"])
        + "".join(rng.choice("0123456789") for _ in range(14 if i % 3 else 11))
    )
    card = rng.choice([pan, _groups(pan, " "), _groups(pan, "-")])
    iban = make_iban(rng, *rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("CH", 21)]))
    if rng.random() < 0.5:
        iban = _groups(iban, " ")
    a, b, c = rng.randint(200, 989), rng.randint(200, 999), rng.randint(1000, 9999)
    phone = rng.choice(
        [f"+1 {a} {b} {c}", f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+44 20 {b}{a % 10} {c}",
         f"+49 30 {c}{b}", f"0{a} {b} {c}", f"+33{a}{b}{c % 1000:03d}", f"{a}.{b}.{c}",
         f"+91 {a}{b % 100:02d} {c}{b % 10}"]
    )  # fmt: skip
    if rng.random() < 0.5:
        ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    else:
        ip = f"2001:db8:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
    user = rng.choice(["anna.k", "j_smith", "mo+news", "li.wei88", "x", "kofi_mensah", "t.nguyen"])
    email = (
        f"{user}{i}@{rng.choice(['example.com', 'mail.example.org', 'uni-bonn.de', 'corp.co.uk'])}"
    )
    nick = rng.choice(["darkstar", "maria_lopez", "kenji.t", "bluefox_77", "sunny_day"]) + str(i)
    url = rng.choice(
        [f"https://www.linkedin.com/in/{nick}", f"https://github.com/{nick}/notes",
         f"https://drive.example.com/share?id={nick}", f"www.instagram.com/{nick}/"]
    )  # fmt: skip
    number, street, suffix = (
        rng.randint(2, 9800),
        rng.choice(["Baker", "Maple", "Oak Hill", "Elm", "Kingsley", "Wilshire"]),
        rng.choice(["Street", "St.", "Avenue", "Road", "Lane", "Drive", "Blvd"]),
    )
    address = rng.choice(
        [f"{number} {street} {suffix}", f"{number} {street} {suffix}, Apt {i % 40 + 1}",
         f"{street.split()[0]}straße {number % 200 + 1}", f"{number % 90 + 1} rue {street.split()[0]}",
         f"{number} {street.lower()} {suffix.lower().rstrip('.')}"]
    )  # fmt: skip
    street_part = street if "rue" not in address else street.split()[0]
    postcode = rng.choice(["SW1A 1AA", "EC1V 9HX", "M1 1AE", f"CA {rng.randint(90001, 96162)}"])
    ssn = f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    account = "".join(rng.choice("0123456789") for _ in range(rng.choice([9, 14])))
    order = (
        f"{rng.randint(100, 999)}-{rng.randint(10**6, 10**7 - 1)}-{rng.randint(10**6, 10**7 - 1)}"
    )
    last4 = f"{rng.randint(0, 9999):04d}"
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1940, 2010)
    dob = rng.choice(
        [f"{day:02d}/{month:02d}/{year}", f"{year}-{month:02d}-{day:02d}",
         f"{day} {['March', 'July', 'Nov'][month % 3]} {year}", f"{['May', 'Oct.'][day % 2]} {day}, {year}"]
    )  # fmt: skip
    handle = "@" + nick.replace(".", "_")
    password = rng.choice(["hunter2!", "Tr0ub4dor&3", "s3cretPass", "qwerty12345"])
    return {
        "card": Planted("CARD", card, [card]),
        "iban": Planted("IBAN", iban, [iban]),
        "phone": Planted("PHONE", phone, [phone]),
        "ip": Planted("IP", ip, [ip]),
        "email": Planted("EMAIL", email, [email, user + str(i)]),
        "url": Planted("URL", url, [url, nick]),
        "address": Planted("ADDRESS", address, [address, f"{number} {street_part}".lower()]),
        "postcode": Planted("ADDRESS", postcode, [postcode]),
        "ssn": Planted("ID", ssn, [ssn]),
        "account": Planted("ID", account, [account]),
        "handle": Planted("HANDLE", handle, [handle, nick]),
        "username": Planted("HANDLE", nick, [nick]),
        "password": Planted("SECRET", password, [password]),
        "order": Planted("ID", order, [order]),
        "last4": Planted("ID", last4, [last4]),
        "dob": Planted("DOB", dob, [dob]),
    }


STRUCTURED_TEMPLATES = (
    "Please charge my card {card} and send the receipt to {email}.",
    "Call me on {phone} or write to {email}, my IBAN is {iban}.",
    "The server at {ip} keeps rejecting {email}; my number is {phone}.",
    "Wire it to {iban} (card backup: {card}), questions to {phone}",
    "ssh from {ip}? contact {email} / {phone}",
    "my profile is {url} and I'm {handle} on twitter",
    "Deliver to {address}, {postcode}. My SSN is {ssn}.",
    "account number {account}, username: {username}, password: {password}",
    "we moved to {address} near {postcode}; text {phone}",
    "hey its me, login {username} pwd = {password} and my ssn {ssn}",
    "Refund order {order} to the card ending in {last4}, thanks",
    "my visa's last four digits are {last4}; the order number was {order}",
    "Patient born {dob}, phone {phone}, lives at {address}",
    "fill the form: name on file, DOB: {dob}, ssn {ssn}",
)


def structured_cases(n: int, seed: int = 7) -> list[tuple[str, list[Planted]]]:
    """Sentences with planted structured data, in the formats people type."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        values = _structured_values(rng, i)
        template = STRUCTURED_TEMPLATES[i % len(STRUCTURED_TEMPLATES)]
        planted = [v for k, v in values.items() if "{" + k + "}" in template]
        cases.append((template.format(**{k: v.value for k, v in values.items()}), planted))
    return cases


def structured_leaks(gate: _Gate, cases: Sequence[tuple[str, list[Planted]]]) -> list[str]:
    """The planted values (or identifying parts) still readable after redaction."""
    leaks = []
    for text, planted in cases:
        out = gate.redact(text).redacted
        low, digits_out = out.lower(), re.sub(r"\D", "", out)
        for p in planted:
            for secret in p.secrets:
                digits = re.sub(r"\D", "", secret)
                if re.search(rf"(?<!\w){re.escape(secret.lower())}(?!\w)", low) or (
                    len(digits) >= 7 and digits in digits_out
                ):
                    leaks.append(f"{p.kind}: {secret!r} in {out!r}")
                    break
    return leaks


def structured_leakage(gate: _Gate, n: int = 300) -> dict[str, object]:
    cases = structured_cases(n)
    leaks = structured_leaks(gate, cases)
    planted = Counter(p.kind for _, ps in cases for p in ps)
    leaked = Counter(leak.split(":")[0] for leak in leaks)
    return {
        "sentences": n,
        "values": sum(planted.values()),
        "leakage": _rate(len(leaks), sum(planted.values())),
        "by_kind": {k: {"values": v, "leaked": leaked[k]} for k, v in sorted(planted.items())},
    }
