"""``bitterbot bench ingest``: document ingest speed and retrieval latency."""

from __future__ import annotations

import time
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
