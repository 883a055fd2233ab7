"""The privacy gate: structured PII never leaks, names are hidden, placeholders restore."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.agent.privacy import (
    STRUCTURED_TYPES,
    Entity,
    PrivacyGate,
    Redaction,
    iban_ok,
    leakage,
    luhn_ok,
    minimize,
)
from bitterbot.agent.privacy_eval import Row, read_rows, split, structured_cases, structured_leaks

# shared/ sits beside the repository (here and in CI)
PUPA = Path(__file__).resolve().parents[2].parent / "shared/data/pupa/pupa_tnb.csv"


@pytest.fixture(scope="module")
def gate() -> PrivacyGate:
    return PrivacyGate()


def test_structured_pii_never_leaks_on_a_synthetic_set(gate: PrivacyGate) -> None:
    cases = structured_cases(300)
    assert {p.kind for _, planted in cases for p in planted} == STRUCTURED_TYPES  # every kind
    leaked = structured_leaks(gate, cases)
    for text, _planted in cases:
        red = gate.redact(text)
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
        ("I'm @lena.bakes on instagram", "HANDLE"),
        ("my username is night_owl_1987", "HANDLE"),
        ("the wifi password: hunter2!", "SECRET"),
        ("born on 3 May 1985 in a small town", "DOB"),
        ("SSN 123-45-6789 on file", "ID"),
        ("order 114-3941689-8533821 never came", "ID"),
        ("the card ending in 4471 was charged", "ID"),
        ("see github.com/sam-okafor for the code", "URL"),
        ("Flat 3, 12 rue de la Paix, Paris", "ADDRESS"),
        ("post it to SW1A 1AA", "ADDRESS"),
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
    # the half it was not tuned on (SPEC.md 7.4): leakage and the cost in words
    held_out = leakage(split([Row(t, u) for t, u in rows], "held_out"), gate)
    assert held_out["leakage"] <= 0.04 and held_out["words_kept"] >= 0.85


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


OWN = Path(__file__).parent / "data/privacy/own_queries.csv"


def test_lower_case_names_are_hidden(gate: PrivacyGate) -> None:
    text = "please ask priyanka and olusegun to meet me in ljubljana, and hi rohan, thanks"
    low = gate.redact(text).redacted.lower()
    for name in ["priyanka", "olusegun", "ljubljana", "rohan"]:
        assert name not in low, low


def test_names_at_the_start_of_a_sentence_are_hidden(gate: PrivacyGate) -> None:
    text = (
        "Siobhan asked me to review the draft. Henry commented on it yesterday. "
        "Victor from sales wants a call. Will and Faith found a map."
    )
    red = gate.redact(text)
    for name in ["Siobhan", "Henry", "Victor", "Will", "Faith"]:
        assert not re.search(rf"\b{name}\b", red.redacted), red.redacted
    assert red.restore(red.redacted) == text


@pytest.mark.parametrize(
    "text",
    [
        "Mark the dates in your calendar. Will it rain tomorrow? Hope so.",
        "Explain how compound interest works. Write a short summary for my website.",
        "Summer is nearly here. March is still cold. Reading helps.",
        "The Customer Support Team answers within two days.",
    ],
)
def test_ordinary_capitalized_words_stay(gate: PrivacyGate, text: str) -> None:
    assert gate.redact(text).redacted == text


def test_a_name_found_once_is_hidden_in_every_message_and_restored() -> None:
    gate = PrivacyGate()
    messages = [
        {"role": "user", "content": "My colleague Zhang Wei wrote the report."},
        {"role": "assistant", "content": "What did zhang wei conclude?"},
        {"role": "user", "content": "Ask Wei; his number is +44 20 7946 0958."},
    ]
    sent, red = gate.redact_messages(messages)
    joined = "\n".join(m["content"] for m in sent)
    assert "zhang" not in joined.lower() and "wei" not in joined.lower(), joined
    assert "7946" not in joined
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    # one placeholder for both spellings; the answer gets the first one back
    assert red.restore(joined).lower() == "\n".join(m["content"] for m in messages).lower()
    # every replaced span is recorded, repeats included
    assert len(red.entities) == len(re.findall(r"\[[A-Z]+_\d+\]", joined))


def test_the_gate_without_a_model_hides_more_and_leaks_no_structured_data() -> None:
    heuristic = PrivacyGate(ner=False)
    assert heuristic.model() is None
    assert structured_leaks(heuristic, structured_cases(60, seed=11)) == []
    text = "The Customer Support Team of Brightwater Logistics answers Siobhan."
    red = heuristic.redact(text)
    assert "Brightwater" not in red.redacted and "Siobhan" not in red.redacted
    assert "Customer" not in red.redacted  # no model to tell a heading from a company


def test_a_missing_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from bitterbot.agent import privacy_ner
    from bitterbot.protocol.errors import ModelError

    monkeypatch.setattr(privacy_ner, "MODEL_PACKAGE", "no_such_spacy_model")
    privacy_ner._load.cache_clear()
    try:
        with pytest.raises(ModelError) as info:
            PrivacyGate().redact("Anna called")
        assert info.value.hint and "pip install" in info.value.hint
    finally:
        privacy_ner._load.cache_clear()


def test_long_text_is_read_in_chunks_with_true_offsets(gate: PrivacyGate) -> None:
    from bitterbot.agent.privacy_ner import CHUNK_CHARS

    filler = "the weather was fine and the meeting went well.\n" * (CHUNK_CHARS // 20)
    text = filler + "Siobhan O'Connell signed it in Galway."
    assert len(text) > 2 * CHUNK_CHARS
    red = gate.redact(text)
    assert "Siobhan" not in red.redacted and "Galway" not in red.redacted
    assert red.redacted.startswith(filler)
    assert red.restore(red.redacted) == text


class _Everything:
    """A gate that hides every character: no leak, no word kept."""

    def redact(self, text: str) -> Redaction:
        return Redaction(text, "#" * len(text), [Entity("X", 0, len(text), text)])


class _Nothing:
    def redact(self, text: str) -> Redaction:
        return Redaction(text, text, [])


def test_words_kept_counts_only_words_outside_the_labelled_units() -> None:
    rows = [("Dear Anna Smith, the invoice from Acme is late.", ["anna smith", "acme"])]
    nothing = leakage(rows, _Nothing())
    assert nothing["leakage"] == 1.0 and nothing["words_kept"] == 1.0
    assert nothing["ordinary_words"] == 6  # Dear, the, invoice, from, is, late
    everything = leakage(rows, _Everything())
    assert everything["leakage"] == 0.0 and everything["words_kept"] == 0.0


def test_the_halves_are_disjoint_stable_and_cover_the_data() -> None:
    rows = read_rows(OWN)
    tune, held_out = split(rows, "tune"), split(rows, "held_out")
    assert len(tune) + len(held_out) == len(rows) and tune and held_out
    assert not {r.text for r in tune} & {r.text for r in held_out}
    assert [r.text for r in split(list(reversed(rows)), "tune")] == [r.text for r in reversed(tune)]


def test_own_queries_unlike_pupa_stay_within_target(gate: PrivacyGate) -> None:
    result = leakage(read_rows(OWN), gate)
    assert result["units"] >= 120
    assert result["leakage"] <= 0.05  # measured: see SPEC.md 7.4
    assert result["words_kept"] >= 0.85
    assert set(result["leakage_by_kind"]) >= {"person", "org", "place", "username", "iban"}
