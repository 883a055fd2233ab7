"""Fast passage vectors: static token embeddings distilled from the router's MiniLM encoder.

Running the contextual encoder over every token of a document collection costs about
21 MFLOP per token: a 7.5 MB corpus (about 1.7 M word pieces) needs minutes on two cores,
far from the one-minute target. So, like model2vec, we run the encoder once over each of
its 30,522 vocabulary entries, keep that table (cached under the home's ``cache/``), and a
passage vector becomes the weighted mean of its tokens' rows: numpy speed, no model call.

Stopword, punctuation and special tokens weigh zero; the table is centred (its mean row
removed) so unrelated passages are not all similar. Such vectors are more lexical than
contextual ones, so the answering step re-scores the few retrieved passages with the full
contextual encoder before deciding whether the documents support an answer
(:mod:`bitterbot.agent.docs_qa`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bitterbot.protocol.errors import ModelError

STATIC_NAME = "minilm-static-v1"
_lock = threading.Lock()
_tables: dict[str, StaticEncoder] = {}


class StaticEncoder:
    """``encode(texts)`` -> float32 (n, dim) unit rows, from a token table; no model call."""

    name = STATIC_NAME

    def __init__(self, table: np.ndarray, weights: np.ndarray, tokenize: Any) -> None:
        self.table = table  # (vocab, dim) float32, centred
        self.weights = weights  # (vocab,) float32
        self._tokenize = tokenize  # list[str] -> list[list[int]]
        self.dim = int(table.shape[1])

    def encode(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            for row, ids in enumerate(self._tokenize(batch), start=start):
                idx = np.asarray(ids, dtype=np.int64)
                w = self.weights[idx]
                vector = w @ self.table[idx]
                norm = float(np.linalg.norm(vector))
                if norm > 0:
                    out[row] = vector / norm
        return out


def token_weights(vocab: dict[str, int], stopwords: frozenset[str]) -> np.ndarray:
    weights = np.ones(len(vocab), dtype=np.float32)
    for token, i in vocab.items():
        base = token[2:] if token.startswith("##") else token
        if token.startswith("[") or not re.search(r"\w", base) or base in stopwords:
            weights[i] = 0.0
    return weights


def _vocab(folder: Path) -> dict[str, int]:
    try:
        data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        vocab: dict[str, int] = data["model"]["vocab"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read the encoder vocabulary: {exc}") from exc
    return vocab


def build_table(encoder: Any, vocab: dict[str, int], weights: np.ndarray) -> np.ndarray:
    """Each vocabulary entry run through the contextual encoder (``##x`` as ``x``); rows
    of zero-weight tokens (stopwords, punctuation, specials) are never used: left zero."""
    texts = [""] * len(vocab)
    for token, i in vocab.items():
        texts[i] = token[2:] if token.startswith("##") else token
    used = np.flatnonzero(weights > 0)
    table = np.zeros((len(vocab), int(encoder.dim)), dtype=np.float32)
    table[used] = encoder.encode([texts[i] for i in used], batch_size=512)
    return table


def _table_key() -> tuple[Path, str]:
    from bitterbot.agent.encoder import model_dir

    folder = model_dir()
    stat = (folder / "model.safetensors").stat()
    key = hashlib.sha256(f"{STATIC_NAME}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return folder, key


def static_table_ready(cache_dir: Path | None) -> bool:
    """Whether :func:`get_static_encoder` will be quick (loaded, or cached on disk)."""
    _folder, key = _table_key()
    if key in _tables:
        return True
    return cache_dir is not None and (Path(cache_dir) / f"{STATIC_NAME}-{key[:16]}.npy").is_file()


def get_static_encoder(cache_dir: Path | None = None) -> StaticEncoder:
    """The process-wide static encoder; the table is built once (about a minute on two
    cores) and cached in ``cache_dir`` when one is given."""
    from bitterbot.agent.docs_terms import STOPWORDS
    from bitterbot.agent.encoder import get_encoder

    folder, key = _table_key()
    with _lock:
        cached = _tables.get(key)
        if cached is not None:
            return cached
        encoder = get_encoder(cache_dir)
        vocab = _vocab(folder)
        path = None if cache_dir is None else Path(cache_dir) / f"{STATIC_NAME}-{key[:16]}.npy"
        table = None
        if path is not None and path.is_file():
            try:
                table = np.load(path).astype(np.float32)
            except (OSError, ValueError):
                table = None  # a damaged cache is rebuilt below
            if table is not None and table.shape != (len(vocab), encoder.dim):
                table = None
        weights = token_weights(vocab, STOPWORDS)
        if table is None:
            table = build_table(encoder, vocab, weights)
            if path is not None:
                _save(path, table)
        table = table - (weights @ table) / max(float(weights.sum()), 1.0)

        def tokenize(texts: list[str]) -> list[list[int]]:
            ids: list[list[int]] = encoder.tokenize(texts, 1 << 20)
            return ids

        static = _tables[key] = StaticEncoder(
            np.ascontiguousarray(table, np.float32), weights, tokenize
        )
        return static


def _save(path: Path, table: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            np.save(fh, table.astype(np.float16))
        os.replace(tmp, path)
    except OSError as exc:
        raise ModelError(
            f"cannot write the vector cache {path}: {exc.strerror or exc}",
            hint="make the node home's cache folder writable",
        ) from exc
