"""The privacy gate: structured PII never leaks, names are hidden, placeholders restore."""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.agent.privacy import PrivacyGate, iban_ok, leakage, luhn_ok, minimize

# shared/ sits beside the repository (here and in CI)
PUPA = Path(__file__).resolve().parents[2].parent / "shared/data/pupa/pupa_tnb.csv"


def luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError("unreachable")


def make_iban(rng: random.Random, country: str, length: int) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(digits) % 97
    return f"{country}{check:02d}{bban}"


def synthetic_cases(n: int, seed: int = 7) -> list[tuple[str, list[str]]]:
    """Sentences with planted structured PII, in the formats people type."""
    rng = random.Random(seed)
    users = ["anna.k", "j_smith", "mo+news", "li.wei88", "x"]
    hosts = ["example.com", "mail.example.org", "uni-bonn.de", "corp.co.uk"]
    templates = [
        "Please charge my card {card} and send the receipt to {email}.",
        "Call me on {phone} or write to {email}, my IBAN is {iban}.",
        "The server at {ip} keeps rejecting {email}; my number is {phone}.",
        "Wire it to {iban} (card backup: {card}), questions to {phone}",
        "ssh from {ip}? contact {email} / {phone}",
    ]
    cases = []
    for i in range(n):
        pan = luhn_complete(
            rng.choice(["4", "51", "37", "6011"])
            + "".join(rng.choice("0123456789") for _ in range(14 if i % 3 else 11))
        )
        card = rng.choice(
            [
                pan,
                " ".join(pan[j : j + 4] for j in range(0, len(pan), 4)),
                "-".join(pan[j : j + 4] for j in range(0, len(pan), 4)),
            ]
        )
        iban = make_iban(rng, *rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("CH", 21)]))
        if rng.random() < 0.5:
            iban = " ".join(iban[j : j + 4] for j in range(0, len(iban), 4))
        a, b, c = rng.randint(200, 989), rng.randint(200, 999), rng.randint(1000, 9999)
        phone = rng.choice(
            [
                f"+1 {a} {b} {c}",
                f"({a}) {b}-{c}",
                f"{a}-{b}-{c}",
                f"+44 20 {b}{a % 10} {c}",
                f"+49 30 {c}{b}",
                f"0{a} {b} {c}",
                f"+33{a}{b}{c % 1000:03d}",
                f"{a}.{b}.{c}",
            ]
        )
        if rng.random() < 0.5:
            ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
        else:
            ip = f"2001:db8:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
        email = f"{rng.choice(users)}{i}@{rng.choice(hosts)}"
        values = {"card": card, "email": email, "phone": phone, "iban": iban, "ip": ip}
        template = templates[i % len(templates)]
        planted = [v for k, v in values.items() if "{" + k + "}" in template]
        cases.append((template.format(**values), planted))
    return cases


@pytest.fixture(scope="module")
def gate() -> PrivacyGate:
    return PrivacyGate()


def test_structured_pii_never_leaks_on_a_synthetic_set(gate: PrivacyGate) -> None:
    cases = synthetic_cases(300)
    leaked = []
    for text, planted in cases:
        red = gate.redact(text)
        digits_out = re.sub(r"\D", "", red.redacted)
        for value in planted:
            value_digits = re.sub(r"\D", "", value)
            if value in red.redacted or (len(value_digits) >= 7 and value_digits in digits_out):
                leaked.append((value, red.redacted))
        assert red.restore(red.redacted) == text
    assert leaked == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("card 4111 1111 1111 1111 please", "CARD"),
        ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN"),
        ("mail bob.smith@example.com now", "EMAIL"),
        ("ping 192.168.10.7 twice", "IP"),
        ("see https://example.com/users/annak/profile?id=3", "URL"),
        ("I live at 221B Baker Street, London", "ADDRESS"),
        ("ruf an: +49 30 1234567", "PHONE"),
    ],
)
def test_each_structured_kind_is_typed(gate: PrivacyGate, text: str, kind: str) -> None:
    assert kind in {e.type for e in gate.find(text)}


def test_validators_reject_near_misses(gate: PrivacyGate) -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    kinds = {e.type for e in gate.find("order 4111 1111 1111 1112 and GB82WEST12345698765433")}
    assert "CARD" not in kinds and "IBAN" not in kinds


def test_ordinary_numbers_and_bare_sites_stay(gate: PrivacyGate) -> None:
    text = "In 2023 the house cost $450,000 and rose 3.5% by 2024-05-01; docs at https://python.org"
    red = gate.redact(text)
    assert red.redacted == text, red.entities


def test_names_and_organizations_are_hidden_and_restored(gate: PrivacyGate) -> None:
    text = (
        "Rachel Zheng is a clerk at H&R Technology Ltd. Johnny Bay asked Rachel to book "
        "a hotel near the University of Westminster; my name is belal."
    )
    red = gate.redact(text)
    low = red.redacted.lower()
    for secret in ["rachel", "zheng", "johnny", "bay", "westminster", "h&r", "belal"]:
        assert not re.search(rf"\b{re.escape(secret)}\b", low), red.redacted
    assert red.redacted.count(red.redacted.split()[0]) >= 1
    counts = red.counts()
    assert counts.get("PERSON", 0) >= 2 and counts.get("ORG", 0) >= 1
    # a cloud answer that reuses the placeholders reads naturally once restored
    person = next(k for k, v in red.mapping.items() if v == "Johnny Bay")
    assert red.restore(f"Dear {person}, noted.") == "Dear Johnny Bay, noted."
    assert red.restore(f"Dear {person.strip('[]')}, noted.") == "Dear Johnny Bay, noted."


def test_ordinary_sentences_are_left_alone(gate: PrivacyGate) -> None:
    text = "Explain how photosynthesis works and write a short summary for my website."
    assert gate.redact(text).redacted == text


def test_user_terms_are_always_redacted() -> None:
    gate = PrivacyGate(extra_terms=["acme widgets"])
    assert "acme" not in gate.redact("ask acme widgets about prices").redacted.lower()


def test_minimization_sends_the_task_only_unless_opted_in() -> None:
    history = [
        {"role": "user", "content": "my diagnosis is X"},
        {"role": "assistant", "content": "ok"},
    ]
    msgs = minimize("what's a good recipe", history)
    assert msgs == [{"role": "user", "content": "what's a good recipe"}]
    assert len(minimize("t", history, send_history=True)) == 3
    with_snippet = minimize("answer it", snippets=["the relevant paragraph"])[0]["content"]
    assert "the relevant paragraph" in with_snippet and "answer it" in with_snippet


@pytest.mark.skipif(not PUPA.exists(), reason="shared PUPA data not present")
def test_pupa_leakage_is_within_target(gate: PrivacyGate) -> None:
    with PUPA.open(encoding="utf-8") as fh:
        rows = [(r["user_query"], r["pii_units"].split("||")) for r in csv.DictReader(fh)]
    result = leakage(rows, gate)
    assert result["units"] > 600
    assert result["leakage"] <= 0.10
    assert result["redacted_share"] < 0.3  # and it does not simply blank everything


WORDS = st.sampled_from(
    ["Anna", "Smith", "call", "me", "at", "+1 415 555 0134", "bob@example.com", "[EMAIL_1]",
     "PERSON_1", "in", "Paris", "4111 1111 1111 1111", "the", "IBAN", "DE89 3704 0044 0532 0130 00",
     "markham", ",", ".", "\n", "Dr.", "Ltd", "192.168.0.1", "https://x.org/u/anna"]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(WORDS, max_size=25).map(" ".join))
def test_restore_undoes_redact_exactly(text: str) -> None:
    gate = PrivacyGate()
    red = gate.redact(text)
    assert red.restore(red.redacted) == text
    visible = re.sub(r"\[[A-Z]+_\d+\]", " ", red.redacted)
    for original in red.mapping.values():
        assert original not in visible or len(original) < 3


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_gate(text: str) -> None:
    red = PrivacyGate().redact(text)
    assert isinstance(red.redacted, str)
    for e in red.entities:
        assert 0 <= e.start < e.end <= len(text)


def test_oversized_text_is_refused_not_cut(gate: PrivacyGate) -> None:
    from bitterbot.agent.privacy import MAX_REDACT_CHARS
    from bitterbot.protocol.errors import ValidationError

    with pytest.raises(ValidationError):
        gate.redact("a" * (MAX_REDACT_CHARS + 1))
