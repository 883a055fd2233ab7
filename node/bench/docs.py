"""``bitterbot bench ingest``: document ingest speed and retrieval latency;
``bitterbot bench facts``: exact facts keyed by numbers among near-identical documents."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from bitterbot.node.cli.common import CliContext, bench, home_option, pass_cli, print_json
from bitterbot.node.docs_store import make_index


@bench.command("ingest")
@click.option("--mb", default=7.5, show_default=True, help="size of the generated corpus")
@click.option("--files", default=150, show_default=True, help="documents in the corpus")
@click.option("--queries", default=200, show_default=True, help="retrieval queries to time")
@click.option(
    "--vectors",
    type=click.Choice(["static", "minilm"]),
    default="static",
    show_default=True,
    help="passage vectors (see docs.vectors)",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON (always JSON)")
@home_option
@pass_cli
def bench_ingest(
    cli_ctx: CliContext, mb: float, files: int, queries: int, vectors: str, as_json: bool
) -> None:
    """Ingest a generated text corpus into a throwaway database; time ingestion and
    retrieval. Encoder caches (built once) are kept in the home's cache/ folder."""
    cache = cli_ctx.home.ensure().path / "cache"
    print_json(
        run_ingest_bench(mb=mb, files=files, queries=queries, vectors=vectors, cache_dir=cache)
    )


_NOUNS = (
    "river harbour engine council garden market ledger village mill bridge contract tenant "
    "warranty battery report budget meeting schedule invoice lighthouse orchard museum valve "
    "pump filter kettle charger library festival ticket museum recipe patient dosage school "
    "teacher pupil railway station platform signal farmer harvest storm keeper medal lamp"
).split()
_VERBS = (
    "repairs inspects approves delays records measures replaces signs describes reviews "
    "opens closes funds extends cancels requires protects covers explains mentions"
).split()
_ADJECTIVES = (
    "old new northern quiet annual monthly careful broken early late public private small "
    "large electric wooden seasonal local regional urgent"
).split()
_SYLLABLES = "ka lo mi ren dor vey sal tin bru gha pol nek ost var lum zef".split()


def generate_corpus(folder: Path, mb: float, files: int, seed: int = 7) -> list[str]:
    """``files`` text documents of about ``mb`` MB in total; returns sample queries."""
    import random

    rng = random.Random(seed)
    per_file = int(mb * 1_000_000 / files)
    queries = []
    for i in range(files):
        names = ["".join(rng.choices(_SYLLABLES, k=3)).capitalize() for _ in range(12)]
        lines, size = [f"Report {i}: the {rng.choice(_NOUNS)} of {names[0]}", ""], 0
        while size < per_file:
            sentences = []
            for _ in range(rng.randint(3, 6)):
                sentences.append(
                    f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} of {rng.choice(names)} "
                    f"{rng.choice(_VERBS)} the {rng.choice(_NOUNS)} in {rng.randint(1800, 2030)}."
                )
            paragraph = " ".join(sentences)
            lines.extend([paragraph, ""])
            size += len(paragraph) + 2
            if rng.random() < 0.02:
                queries.append(f"What {rng.choice(_VERBS)} the {rng.choice(_NOUNS)} of {names[1]}?")
        (folder / f"doc{i:04d}.txt").write_text("\n".join(lines), encoding="utf-8")
    return queries


def run_ingest_bench(
    mb: float, files: int, queries: int, vectors: str = "static", cache_dir: Path | None = None
) -> dict[str, Any]:
    """Numbers for ``bench ingest``. ``cache_dir`` keeps the encoder caches between runs
    (default: a fresh folder, so one-time builds are timed as ``encoder_load_s``)."""
    import statistics
    import tempfile

    from bitterbot.agent.docs_index import ingest, summarize
    from bitterbot.node.store import Store

    with tempfile.TemporaryDirectory(prefix="bitterbot-bench-ingest-") as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        questions = generate_corpus(corpus, mb, files)
        total_bytes = sum(p.stat().st_size for p in corpus.iterdir())
        index = make_index(
            Store(root / "db"), cache_dir or root / "cache", vectors=vectors, max_file_bytes=1 << 30
        )
        t0 = time.perf_counter()
        encoder = index.encoder  # loads (and for static vectors, builds the table once)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = summarize(ingest(index, [corpus]))
        ingest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        chunks = index.stats()["chunks"]
        index_load_ms = (time.perf_counter() - t0) * 1000
        search_ms, embed_ms = [], []
        for n in range(queries):
            q = questions[n % len(questions)]
            t0 = time.perf_counter()
            index.search(q, 5)
            search_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            encoder.encode([q])
            embed_ms.append((time.perf_counter() - t0) * 1000)
        search_ms.sort()
        # what `docs ask` spends before the model: search plus contextual re-scoring
        from bitterbot.agent.docs_qa import retrieve
        from bitterbot.agent.encoder import get_encoder

        reranker = get_encoder(cache_dir or root / "cache")
        ask_ms = []
        for n in range(min(queries, 30)):
            t0 = time.perf_counter()
            retrieve(index, questions[n % len(questions)], 5, reranker)
            ask_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        again = summarize(ingest(index, [corpus]))
        readd_s = time.perf_counter() - t0
    return {
        "vectors": vectors,
        "corpus_mb": round(total_bytes / 1e6, 3),
        "documents": files,
        "chunks": chunks,
        "encoder_load_s": round(load_s, 3),
        "ingest_s": round(ingest_s, 3),
        "documents_per_s": round(report["added"] / ingest_s, 3),
        "mb_per_s": round(total_bytes / 1e6 / ingest_s, 4),
        "readd_unchanged_s": round(readd_s, 3),
        "readd_unchanged": again["unchanged"],
        "index_load_ms": round(index_load_ms, 1),
        "queries": queries,
        "retrieval_p50_ms": round(statistics.median(search_ms), 2),
        "retrieval_p95_ms": round(search_ms[int(0.95 * (len(search_ms) - 1))], 2),
        "query_embed_p50_ms": round(statistics.median(embed_ms), 2),
        "ask_retrieval_p50_ms": round(statistics.median(ask_ms), 2) if ask_ms else None,
    }


# --- exact facts keyed by numbers ------------------------------------------------------

_FACT_QUESTIONS = (
    "What is the maintenance code for pump station {n}?",
    "Which maintenance code does pump station {n} use?",
    "maintenance code pump station {n:03d}",  # zero-padded: 007 is station 7
)
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def generate_facts_corpus(folder: Path, count: int, seed: int = 11) -> list[dict[str, Any]]:
    """``count`` near-identical files ``station_NNN.txt``: the same record, each stating
    one station's code once, among sentences with other numbers (a section, an extension,
    a week, a neighbouring station); returns ``{question, file, code, station}`` each."""
    import random

    rng = random.Random(seed)
    codes: set[str] = set()
    facts = []
    for n in range(1, count + 1):
        code = ""
        while not code or code in codes:
            code = f"{''.join(rng.choices(_LETTERS, k=2))}-{rng.randint(0, 9999):04d}"
        codes.add(code)
        other = rng.choice([m for m in range(1, count + 1) if m != n] or [n + 1])
        text = (
            "Pump station maintenance record\n\n"
            "This record is kept by the water board and reviewed every quarter. Inspections "
            f"follow section 4.{rng.randint(1, 9)} of the operations manual. "
            f"The maintenance code for pump station {n} is {code}. "
            f"Call the duty engineer on extension {rng.randint(100, 999)} before any work; "
            f"pump station {other} takes over during repairs. "
            f"Last reviewed in week {rng.randint(1, 52)}.\n"
        )
        name = f"station_{n:03d}.txt"
        (folder / name).write_text(text, encoding="utf-8")
        question = _FACT_QUESTIONS[n % len(_FACT_QUESTIONS)].format(n=n)
        facts.append({"question": question, "file": name, "code": code, "station": n})
    return facts


@bench.command("facts")
@click.option("--files", default=300, show_default=True, help="near-identical documents")
@click.option("--queries", default=0, help="questions asked (default: one per document)")
@click.option("--model", default=None, help="also answer --answers questions with this model")
@click.option("--answers", default=20, show_default=True, help="questions put to --model")
@click.option("--json", "as_json", is_flag=True, help="print JSON (always JSON)")
@home_option
@pass_cli
def bench_facts(
    cli_ctx: CliContext,
    files: int,
    queries: int,
    model: str | None,
    answers: int,
    as_json: bool,
) -> None:
    """Exact-fact recall: ask for each station's code among near-identical documents
    (a throwaway database; encoder caches kept in the home's cache/ folder)."""
    if files < 1:
        raise click.BadParameter("at least one document", param_hint="--files")
    backend = None
    if model:
        from bitterbot.agent.models import open_backend

        backend = open_backend(model, cli_ctx.settings(), cli_ctx.home.path)
    cache = cli_ctx.home.ensure().path / "cache"
    print_json(
        run_facts_bench(files, queries or files, cache_dir=cache, backend=backend, answers=answers)
    )


def run_facts_bench(
    files: int,
    queries: int,
    *,
    cache_dir: Path,
    backend: Any = None,
    answers: int = 20,
) -> dict[str, Any]:
    """Numbers for ``bench facts``: recall@1 and @3 of the hybrid ranking, the same for
    the quoted answer (``docs ask --no-model``), latencies; with ``backend``, how often
    its answers carry the right code, over the first ``answers`` questions."""
    import statistics
    import tempfile

    import trio

    from bitterbot.agent.docs_index import ingest
    from bitterbot.agent.docs_qa import answer_question
    from bitterbot.agent.encoder import get_encoder
    from bitterbot.node.store import Store

    def pct(sorted_ms: list[float], q: float) -> float:
        return round(sorted_ms[int(q * (len(sorted_ms) - 1))], 2)

    with tempfile.TemporaryDirectory(prefix="bitterbot-bench-facts-") as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        facts = generate_facts_corpus(corpus, files)
        index = make_index(Store(root / "db"), cache_dir, vectors="static", max_file_bytes=1 << 20)
        t0 = time.perf_counter()
        ingest(index, [corpus])
        ingest_s = time.perf_counter() - t0
        reranker = get_encoder(cache_dir)
        asked = [facts[i % len(facts)] for i in range(queries)]
        at1 = at3 = quoted = 0
        search_ms: list[float] = []
        ask_ms: list[float] = []
        misses: list[dict[str, Any]] = []
        for fact in asked:
            t0 = time.perf_counter()
            hits = index.search(fact["question"], 3)
            search_ms.append((time.perf_counter() - t0) * 1000)
            names = [Path(h.file).name for h in hits]
            at1 += names[:1] == [fact["file"]]
            at3 += fact["file"] in names
            t0 = time.perf_counter()
            result = trio.run(
                lambda f=fact: answer_question(index, None, f["question"], reranker=reranker)
            )
            ask_ms.append((time.perf_counter() - t0) * 1000)
            right = _right_answer(result, fact)
            quoted += right
            if not right and len(misses) < 5:
                misses.append({"question": fact["question"], "got": result.answer, "top": names})
        model_right = 0
        sample = asked[: max(0, answers)] if backend is not None else []

        modes: Counter[str] = Counter()
        model_ms: list[float] = []

        async def ask_model() -> int:
            right = 0
            try:
                for fact in sample:
                    result = await answer_question(
                        index, backend, fact["question"], reranker=reranker
                    )
                    right += _right_answer(result, fact)
                    modes[result.mode] += 1
                    model_ms.append(result.total_ms)
            finally:
                await backend.aclose()
            return right

        if sample:
            model_right = trio.run(ask_model)
    search_ms.sort()
    ask_ms.sort()
    n = len(asked)
    out: dict[str, Any] = {
        "documents": files,
        "queries": n,
        "ingest_s": round(ingest_s, 3),
        "recall_at_1": round(at1 / n, 4),
        "recall_at_3": round(at3 / n, 4),
        "answer_exact": round(quoted / n, 4),
        "search_p50_ms": round(statistics.median(search_ms), 2),
        "search_p95_ms": pct(search_ms, 0.95),
        "ask_p50_ms": round(statistics.median(ask_ms), 2),
        "ask_p95_ms": pct(ask_ms, 0.95),
        "misses": misses,
    }
    if sample:
        out["model"] = backend.model
        out["model_answers"] = len(sample)
        out["model_answer_exact"] = round(model_right / len(sample), 4)
        out["model_modes"] = dict(modes)  # model: its own words; extractive: a quote
        out["model_ask_p50_ms"] = round(statistics.median(model_ms), 1)
    return out


def _right_answer(result: Any, fact: dict[str, Any]) -> bool:
    """Found, the code in the answer, and the station's own file cited first."""
    cited = Path(result.citations[0]["file"]).name if result.citations else ""
    return bool(result.found and fact["code"] in result.answer and cited == fact["file"])
