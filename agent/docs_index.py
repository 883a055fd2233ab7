"""The document index: chunks, vectors and BM25 terms in LMDB; fused retrieval in memory.

Storage (named databases of an injected store; values msgpack)::

    docs_files    absolute path -> {sha256, size, kind, chunks: [chunk ids], added_ms, ...}
    docs_chunks   chunk id (8 bytes, big-endian) -> {file, text, pos}
    docs_vectors  chunk id -> float32 bytes (encoder.dim values, L2-normalised)
    docs_terms    chunk id -> [length in terms, {term: count}] (words; "#id" and "~id"
                  for numbers and codes, whole and as parts of longer ones)
    docs_meta     next_chunk_id, generation (bumped on every change), encoder, job

One file is one write transaction: its old chunks go, its new chunks, vectors, terms and
file record land together, or nothing does. A killed ingestion therefore leaves whole
files only; running it again skips those by content hash and does the rest.

Retrieval keeps every vector in one contiguous float32 matrix and BM25 postings in
memory, both rebuilt from LMDB when ``generation`` moves (another process may have
changed the index). Lexical and vector rankings are fused by reciprocal rank, and numbers
and codes in the query are matched exactly: a passage naming more of them ranks above one
naming fewer (fusion alone lets 300 passages that differ only in a station number drown
the one with the right number), and among those the sentence naming them decides.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bitterbot.agent import docs_ingest
from bitterbot.agent.docs_ingest import Candidate, DocumentSkipped
from bitterbot.agent.docs_terms import (
    PART,
    PART_WEIGHT,
    WHOLE,
    identifier_runs,
    identifiers,
    index_terms,
    run_identifiers,
    terms,
)
from bitterbot.protocol.errors import NotFoundError, StoreError, ValidationError

FILES, CHUNKS, VECTORS, TERMS, META = (
    "docs_files",
    "docs_chunks",
    "docs_vectors",
    "docs_terms",
    "docs_meta",
)
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al.)
CANDIDATES = 50  # taken from each ranking before fusion
BM25_K1, BM25_B = 1.2, 0.75
MAX_QUERY_CHARS = 2000
TERMS_VERSION = 2  # of what docs_terms holds; 2 added identifier terms


# --- what we need from the outside ---------------------------------------------------


class DocsTxn(Protocol):
    """The transaction API of ``bitterbot.node.store.Txn`` that the index uses."""

    def get(self, db: str, key: bytes | str, default: Any = None) -> Any: ...

    def put(self, db: str, key: bytes | str, value: Any, *, overwrite: bool = True) -> bool: ...

    def delete(self, db: str, key: bytes | str) -> bool: ...

    def items(
        self, db: str, prefix: bytes | str = b"", *, reverse: bool = False
    ) -> Iterator[tuple[bytes, Any]]: ...


class DocsStore(Protocol):
    """``bitterbot.node.store.Store``: durable once a ``write()`` block exits."""

    def read(self) -> AbstractContextManager[DocsTxn]: ...

    def write(self) -> AbstractContextManager[DocsTxn]: ...


class Encoder(Protocol):
    """``bitterbot.agent.encoder.Encoder``: L2-normalised float32 rows."""

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


# --- results -------------------------------------------------------------------------


@dataclass
class FileResult:
    path: str
    status: str  # added | updated | unchanged | skipped
    chunks: int = 0
    reason: str = ""  # for skipped: unsupported, binary, encrypted, too_large, unreadable, empty
    message: str = ""
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "status": self.status, "chunks": self.chunks}
        if self.status == "skipped":
            out["reason"] = self.reason
            out["message"] = self.message
        return out


@dataclass
class Hit:
    chunk_id: int
    file: str
    text: str
    position: dict[str, int]
    score: float  # fused (reciprocal rank)
    cosine: float  # query-passage cosine similarity
    bm25: float
    exact: float = 0.0  # the query's identifiers found here (a part counts PART_WEIGHT)
    keyed: float = 0.0  # share of the query in the best sentence naming one of them

    @property
    def citation(self) -> str:
        return f"{self.file}, {docs_ingest.format_position(self.position)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "file": self.file,
            "position": self.position,
            "citation": self.citation,
            "text": self.text,
            "score": round(self.score, 6),
            "cosine": round(self.cosine, 4),
            "bm25": round(self.bm25, 4),
            "exact": self.exact,
            "keyed": self.keyed,
        }


@dataclass
class Prepared:
    """A file read, chunked and embedded, waiting for its write transaction."""

    key: str
    doc: docs_ingest.Document
    chunks: list[docs_ingest.TextChunk]
    vectors: np.ndarray


def _cid(n: int) -> bytes:
    return n.to_bytes(8, "big")


class _Memory:
    """Vectors and BM25 postings of one generation of the index."""

    def __init__(self, generation: int, dim: int) -> None:
        self.generation = generation
        self.ids = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, dim), dtype=np.float32)
        self.lengths = np.zeros(0, dtype=np.float32)
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.avg_length = 1.0


class DocsIndex:
    def __init__(
        self,
        store: DocsStore,
        encoder: Encoder | Callable[[], Encoder],
        *,
        max_file_bytes: int = docs_ingest.DEFAULT_MAX_BYTES,
        encoder_name: str = "all-MiniLM-L6-v2",
    ) -> None:
        """``encoder`` may be a function returning one: listing and removal never load it."""
        self.store = store
        self._encoder = encoder
        self.max_file_bytes = max_file_bytes
        self.encoder_name = encoder_name
        self._memory: _Memory | None = None
        self._lock = threading.Lock()
        # node.store caches database handles; one opened inside a read transaction is
        # invalid once that transaction ends, so open ours in a write transaction first
        self._transact(
            lambda txn: [txn.get(db, b"\x00") for db in (FILES, CHUNKS, VECTORS, TERMS, META)]
        )

    @property
    def encoder(self) -> Encoder:
        if not hasattr(self._encoder, "encode"):
            self._encoder = self._encoder()
        encoder: Encoder = self._encoder  # type: ignore[assignment]
        return encoder

    # --- writing -----------------------------------------------------------------
    def _transact(self, fn: Callable[[DocsTxn], Any]) -> Any:
        for _ in range(8):
            try:
                with self.store.write() as txn:
                    return fn(txn)
            except StoreError as exc:
                if exc.code != "retry":  # the store grew its map: try again
                    raise
        raise StoreError("the document database is full", hint="free disk space")

    def _check_encoder(self, txn: DocsTxn) -> None:
        stored = txn.get(META, "encoder")
        mine = {"name": self.encoder_name, "dim": int(self.encoder.dim)}
        if stored is None:
            txn.put(META, "encoder", mine)
        elif stored != mine:
            raise ValidationError(
                f"documents were indexed with encoder {stored}, not {mine}",
                hint="remove the documents (bitterbot docs remove --all) and add them again",
            )

    def add_file(self, candidate: Candidate | Path, now_ms: int | None = None) -> FileResult:
        """Ingest one file; unchanged content is a no-op, bad input a ``skipped`` result."""
        prepared = self.prepare(candidate)
        if isinstance(prepared, FileResult):
            return prepared
        return self.commit([prepared], now_ms)[0]

    def prepare(self, candidate: Candidate | Path) -> Prepared | FileResult:
        """Read, chunk and embed a file (no write); a FileResult when there is nothing to
        write (``unchanged`` by content hash, or ``skipped`` with the reason)."""
        if isinstance(candidate, Path):
            candidate = Candidate(candidate.absolute(), explicit=True)
        path = candidate.path.resolve()
        key = str(path)
        try:
            kind = docs_ingest.kind_of(path, candidate.explicit)
            data = docs_ingest.read_bytes(path, self.max_file_bytes)
            sha = docs_ingest.file_sha256(data)
            with self.store.read() as txn:
                old = txn.get(FILES, key)
            if old is not None and old.get("sha256") == sha:
                return FileResult(key, "unchanged", len(old["chunks"]), bytes=len(data))
            doc = docs_ingest.parse_document(path, data, kind)
            chunks = docs_ingest.chunk_blocks(doc.blocks)
        except DocumentSkipped as skip:  # reported under the name the user gave
            return FileResult(
                str(candidate.path), "skipped", reason=skip.reason, message=skip.detail
            )
        texts = [c.text for c in chunks]
        vectors = np.ascontiguousarray(self.encoder.encode(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.encoder.dim):
            raise ValidationError(f"the encoder returned shape {vectors.shape} for {len(texts)}")
        return Prepared(key, doc, chunks, vectors)

    def commit(self, batch: Sequence[Prepared], now_ms: int | None = None) -> list[FileResult]:
        """Write prepared files in one transaction: each file whole, old chunks replaced."""
        stamp = int(time.time() * 1000) if now_ms is None else now_ms

        def write(txn: DocsTxn) -> list[FileResult]:
            self._check_encoder(txn)
            _upgrade_terms(txn)
            results = []
            for item in batch:
                previous = txn.get(FILES, item.key)
                if previous is not None:
                    _delete_chunks(txn, previous["chunks"])
                first = int(txn.get(META, "next_chunk_id", 1))
                ids = list(range(first, first + len(item.chunks)))
                for cid, chunk, vector in zip(ids, item.chunks, item.vectors, strict=True):
                    k = _cid(cid)
                    txn.put(
                        CHUNKS, k, {"file": item.key, "text": chunk.text, "pos": chunk.position}
                    )
                    txn.put(VECTORS, k, vector.tobytes())
                    txn.put(TERMS, k, list(index_terms(chunk.text)))
                txn.put(
                    FILES,
                    item.key,
                    {
                        "path": item.key,
                        "sha256": item.doc.sha256,
                        "size": item.doc.size,
                        "kind": item.doc.kind,
                        "chunks": ids,
                        "added_ms": stamp,
                    },
                )
                txn.put(META, "next_chunk_id", first + len(item.chunks))
                status = "updated" if previous is not None else "added"
                results.append(FileResult(item.key, status, len(ids), bytes=item.doc.size))
            _bump(txn)
            return results

        if not batch:
            return []
        committed: list[FileResult] = self._transact(write)
        return committed

    def remove(self, target: Path | str) -> list[str]:
        """Remove a file, or every file under a folder; returns the removed paths."""
        path = Path(target).expanduser().absolute()
        key = str(path.resolve()) if path.exists() else str(path)

        def write(txn: DocsTxn) -> list[str]:
            removed = []
            exact = txn.get(FILES, key)
            matches = [(key, exact)] if exact is not None else []
            if not matches:
                prefix = key.rstrip("/") + "/"
                matches = [(k.decode(), v) for k, v in txn.items(FILES, prefix)]
            for name, record in matches:
                _delete_chunks(txn, record["chunks"])
                txn.delete(FILES, name)
                removed.append(name)
            if removed:
                _bump(txn)
            return removed

        removed: list[str] = self._transact(write)
        if not removed:
            raise NotFoundError(f"no document {key} in the index", hint="see `bitterbot docs list`")
        return removed

    def remove_all(self) -> list[str]:
        with self.store.read() as txn:
            names = [k.decode() for k, _ in txn.items(FILES)]
        for name in names:
            self.remove(name)
        return names

    # --- interrupted runs --------------------------------------------------------
    def begin_job(self, paths: Sequence[str], now_ms: int) -> None:
        """Record ``paths`` as being ingested (added to any interrupted run's paths)."""

        def write(txn: DocsTxn) -> None:
            job = txn.get(META, "job") or {"paths": []}
            merged = list(dict.fromkeys([*job["paths"], *paths]))
            txn.put(META, "job", {"paths": merged, "ms": now_ms})

        self._transact(write)

    def end_job(self, paths: Sequence[str]) -> None:
        """``paths`` are done; an interrupted run's other paths stay pending."""

        def write(txn: DocsTxn) -> None:
            job = txn.get(META, "job")
            if job is None:
                return
            left = [p for p in job["paths"] if p not in set(paths)]
            if left:
                txn.put(META, "job", {**job, "paths": left})
            else:
                txn.delete(META, "job")

        self._transact(write)

    def pending_job(self) -> list[str] | None:
        """Paths of an ingestion that was interrupted (killed, crashed), if any."""
        with self.store.read() as txn:
            job = txn.get(META, "job")
        return None if job is None else list(job["paths"])

    # --- reading -----------------------------------------------------------------
    def list_files(self) -> list[dict[str, Any]]:
        with self.store.read() as txn:
            return [
                {
                    "path": v["path"],
                    "kind": v["kind"],
                    "size": v["size"],
                    "chunks": len(v["chunks"]),
                    "sha256": v["sha256"],
                    "added_ms": v["added_ms"],
                }
                for _, v in txn.items(FILES)
            ]

    def stats(self) -> dict[str, int]:
        memory = self._current()
        with self.store.read() as txn:
            files = sum(1 for _ in txn.items(FILES))
        return {"files": files, "chunks": int(memory.ids.size), "dim": int(memory.matrix.shape[1])}

    def _current(self) -> _Memory:
        with self.store.read() as txn:
            generation = int(txn.get(META, "generation", 0))
            stale = generation and txn.get(META, "terms_version", 1) != TERMS_VERSION
        if stale:  # indexed by an older version: re-derive its terms once
            self._transact(_upgrade_terms)
            with self.store.read() as txn:
                generation = int(txn.get(META, "generation", 0))
        with self._lock:
            if self._memory is None or self._memory.generation != generation:
                self._memory = self._load()
            return self._memory

    def _load(self) -> _Memory:
        """Read every vector and term list; the encoder is not loaded for this."""
        with self.store.read() as txn:
            stored = txn.get(META, "encoder") or {"name": self.encoder_name, "dim": 0}
            if stored["name"] != self.encoder_name:
                raise ValidationError(
                    f"documents were indexed with encoder {stored['name']}, "
                    f"not {self.encoder_name}",
                    hint="set docs.vectors back, or remove the documents "
                    "(bitterbot docs remove --all) and add them again",
                )
            dim = int(stored["dim"])
            memory = _Memory(int(txn.get(META, "generation", 0)), dim)
            ids, rows = [], []
            for k, blob in txn.items(VECTORS):
                ids.append(int.from_bytes(k, "big"))
                rows.append(blob)
            lengths = np.zeros(len(ids), dtype=np.float32)
            lists: dict[str, tuple[list[int], list[int]]] = {}
            for row, (k, (length, counts)) in enumerate(txn.items(TERMS)):
                if row >= len(ids) or int.from_bytes(k, "big") != ids[row]:
                    raise StoreError(
                        "the document index is inconsistent (terms without vectors)",
                        hint="remove the documents (bitterbot docs remove --all) and add them again",
                    )
                lengths[row] = length
                for term, count in counts.items():
                    entry = lists.get(term)
                    if entry is None:
                        entry = lists[term] = ([], [])
                    entry[0].append(row)
                    entry[1].append(count)
        if rows and len(rows[0]) != dim * 4:
            raise ValidationError(
                f"stored vectors have {len(rows[0]) // 4} dimensions, the index record says {dim}",
                hint="remove the documents (bitterbot docs remove --all) and add them again",
            )
        memory.ids = np.asarray(ids, dtype=np.int64)
        memory.matrix = (
            np.frombuffer(b"".join(rows), dtype=np.float32).reshape(len(rows), dim)
            if rows
            else np.zeros((0, dim), dtype=np.float32)
        )
        memory.lengths = lengths
        memory.avg_length = float(lengths.mean()) if lengths.size else 1.0
        memory.postings = {
            t: (np.asarray(r, dtype=np.int32), np.asarray(c, dtype=np.float32))
            for t, (r, c) in lists.items()
        }
        return memory

    def term_weights(self, words: Iterable[str]) -> dict[str, float]:
        """BM25 IDF of each word; a word in no document gets the highest weight."""
        return _idf(self._current(), words)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` best passages for ``query``: BM25 and vector rankings, fused; a
        passage naming more of the query's numbers and codes comes before one naming
        fewer, and among those the one whose sentence naming them matches best."""
        query = query.strip()[:MAX_QUERY_CHARS]
        if not query:
            raise ValidationError("empty query", hint="ask a question")
        memory = self._current()
        n = int(memory.ids.size)
        if n == 0:
            return []  # nothing indexed: no need to load the encoder
        q = np.asarray(self.encoder.encode([query]), dtype=np.float32).reshape(-1)
        if q.size != memory.matrix.shape[1]:
            raise ValidationError(
                f"the encoder gives {q.size} dimensions, the index holds {memory.matrix.shape[1]}",
                hint="remove the documents (bitterbot docs remove --all) and add them again",
            )
        cosine = memory.matrix @ q
        bm25 = _bm25(memory, terms(query))
        wanted = identifiers(query)
        exact = _exact(memory, wanted)
        take = min(CANDIDATES, n)
        fused: dict[int, float] = {}
        for ranking in (_top(cosine, take), _top(bm25, take, positive=True)):
            for rank, row in enumerate(ranking):
                fused[int(row)] = fused.get(int(row), 0.0) + 1.0 / (RRF_K + rank + 1)
        # passages holding the question's numbers and codes: all candidates, and ranked
        # above every passage holding fewer of them (rank fusion alone lets 300 passages
        # that differ only in a number drown the one with the right number)
        if wanted:
            within = exact + bm25 / (1.0 + float(bm25.max(initial=0.0)))  # bm25 breaks ties
            for row in _top(within, take, positive=True):
                if exact[row] > 0:
                    fused.setdefault(int(row), 0.0)
        hits = []
        with self.store.read() as txn:
            records = {}
            named = sorted((row for row in fused if exact[row] > 0), key=lambda r: -exact[r])
            floor = exact[named[min(k, len(named)) - 1]] if named else 0.0
            for row in named:
                if exact[row] >= floor:  # in a tier that reaches the first k: the
                    # sentence naming the number decides the order within it
                    records[row] = txn.get(CHUNKS, _cid(int(memory.ids[row])))
            keyed_score = _Keyed(wanted, set(terms(query)))
            keyed = {row: keyed_score(r["text"]) for row, r in records.items() if r is not None}
            order = sorted(
                fused.items(),
                key=lambda item: (-exact[item[0]], -keyed.get(item[0], 0.0), -item[1]),
            )
            for row, score in order[:k]:
                record = records.get(row) or txn.get(CHUNKS, _cid(int(memory.ids[row])))
                if record is None:  # removed since this generation was loaded
                    continue
                hits.append(
                    Hit(
                        chunk_id=int(memory.ids[row]),
                        file=record["file"],
                        text=record["text"],
                        position=record["pos"],
                        score=score,
                        cosine=float(cosine[row]),
                        bm25=float(bm25[row]),
                        exact=float(exact[row]),
                        keyed=keyed.get(row, 0.0),
                    )
                )
        return hits


def _bm25(memory: _Memory, query_terms: Iterable[str]) -> np.ndarray:
    n = int(memory.ids.size)
    scores = np.zeros(n, dtype=np.float32)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * memory.lengths / memory.avg_length)
    for term in set(query_terms):
        posting = memory.postings.get(term)
        if posting is None:
            continue
        rows, counts = posting
        idf = math.log(1 + (n - rows.size + 0.5) / (rows.size + 0.5))
        scores[rows] += idf * counts * (BM25_K1 + 1) / (counts + norm[rows])
    return scores


def _idf(memory: _Memory, words: Iterable[str]) -> dict[str, float]:
    """BM25 IDF of each word; a word in no document gets the highest weight."""
    n = int(memory.ids.size)
    out = {}
    for word in words:
        posting = memory.postings.get(word)
        df = 0 if posting is None else int(posting[0].size)
        out[word] = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return out


class _Keyed:
    """Scores a passage by the share of the query's words in its best sentence naming
    the ``wanted`` identifiers (times the share of them it names, a part counting
    PART_WEIGHT): "the code for station 3 is X" scores high for "code of station 3?",
    "reviewed in week 3" does not. Unweighted: among near-identical passages every word
    is common, and IDF would weigh them all near zero."""

    def __init__(self, wanted: Iterable[str], words: set[str]) -> None:
        self.wanted = set(wanted)
        self.words = words
        # every spelling of a wanted identifier (AB-0142 for ab142, 1,200 for 1200) and a
        # few more; only sentences it finds are checked exactly, which keeps this cheap
        self.needle = re.compile("|".join(map(_spellings, self.wanted)) or "(?!)", re.I)

    def __call__(self, text: str) -> float:
        best = 0.0
        if not self.words or not self.needle.search(text):
            return best
        for start, end in docs_ingest.sentence_spans(text):
            sentence = text[start:end]
            if not self.needle.search(sentence):
                continue
            whole, parts = set(), set()
            for run in identifier_runs(sentence):
                first, *rest = run_identifiers(run)
                whole.add(first)
                parts.update(rest)
            # as in _exact: "41" inside "UU-0041" names station 41 only half
            named = sum(
                1.0 if i in whole else PART_WEIGHT if i in parts else 0.0 for i in self.wanted
            )
            if named:
                share = len(self.words & set(terms(sentence))) / len(self.words)
                best = max(best, share * named / len(self.wanted))
        return round(best, 4)


def _spellings(ident: str) -> str:
    body = "[-_,]?".join(re.escape(c) for c in ident)
    return f"0*{body}" if ident.isdigit() else body


def _exact(memory: _Memory, wanted: Iterable[str]) -> np.ndarray:
    """Per passage: how many of the ``wanted`` identifiers it holds whole (1 each) or
    only as part of a longer one (PART_WEIGHT each)."""
    scores = np.zeros(int(memory.ids.size), dtype=np.float32)
    for ident in wanted:
        found = np.zeros_like(scores)
        part = memory.postings.get(PART + ident)
        if part is not None:
            found[part[0]] = PART_WEIGHT
        whole = memory.postings.get(WHOLE + ident)
        if whole is not None:
            found[whole[0]] = 1.0
        scores += found
    return scores


def _top(scores: np.ndarray, take: int, positive: bool = False) -> np.ndarray:
    if take < scores.size:
        rows = np.argpartition(-scores, take - 1)[:take]
    else:
        rows = np.arange(scores.size)
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    if positive:
        rows = rows[scores[rows] > 0]
    return rows


def _delete_chunks(txn: DocsTxn, ids: Iterable[int]) -> None:
    for cid in ids:
        k = _cid(int(cid))
        txn.delete(CHUNKS, k)
        txn.delete(VECTORS, k)
        txn.delete(TERMS, k)


def _bump(txn: DocsTxn) -> None:
    txn.put(META, "generation", int(txn.get(META, "generation", 0)) + 1)


def _upgrade_terms(txn: DocsTxn) -> None:
    """Re-derive every passage's terms from its text when they were stored by an older
    version of :func:`index_terms` (version 1 had no identifier terms)."""
    if txn.get(META, "terms_version", 1) == TERMS_VERSION:
        return
    stored = [(k, record["text"]) for k, record in txn.items(CHUNKS)]
    for k, text in stored:
        txn.put(TERMS, k, list(index_terms(text)))
    txn.put(META, "terms_version", TERMS_VERSION)
    if stored:
        _bump(txn)


# --- a whole run ---------------------------------------------------------------------

Progress = Callable[[FileResult, int, int], None]  # result, files done, files total


# one transaction (one fsync) holds up to this much work: small files go fast, and a
# killed run still loses at most one batch, never part of a file
BATCH_FILES = 64
BATCH_CHUNKS = 2000
BATCH_SECONDS = 1.0


def ingest(
    index: DocsIndex,
    paths: Sequence[Path | str],
    *,
    progress: Progress | None = None,
    now_ms: int | None = None,
) -> list[FileResult]:
    """Add every file under ``paths``; records the run so an interrupted one can resume.

    Files are committed in batches; ``progress`` hears of a file once it is durable (or
    needs no write)."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    found = list(docs_ingest.discover(paths))
    job = [str(Path(p).expanduser().absolute()) for p in paths]
    index.begin_job(job, stamp)
    results: list[FileResult] = []
    batch: list[Prepared] = []
    batch_started = 0.0

    def report(result: FileResult) -> None:
        results.append(result)
        if progress is not None:
            progress(result, len(results), len(found))

    def flush() -> None:
        for result in index.commit(batch, stamp):
            report(result)
        batch.clear()

    for item in found:
        if isinstance(item, DocumentSkipped):
            report(FileResult(item.path, "skipped", reason=item.reason, message=item.detail))
            continue
        prepared = index.prepare(item)
        if isinstance(prepared, FileResult):
            report(prepared)
            continue
        if not batch:
            batch_started = time.monotonic()
        batch.append(prepared)
        if (
            len(batch) >= BATCH_FILES
            or sum(len(p.chunks) for p in batch) >= BATCH_CHUNKS
            or time.monotonic() - batch_started >= BATCH_SECONDS
        ):
            flush()
    flush()
    index.end_job(job)
    return results


def summarize(results: Sequence[FileResult]) -> dict[str, Any]:
    counts = Counter(r.status for r in results)
    return {
        "added": counts["added"],
        "updated": counts["updated"],
        "unchanged": counts["unchanged"],
        "skipped": counts["skipped"],
        "chunks": sum(r.chunks for r in results if r.status in {"added", "updated"}),
        "files": [r.to_dict() for r in results],
    }
