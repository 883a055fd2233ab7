"""Answering from the user's documents, with citations, or saying the answer is not there.

Retrieval decides whether the documents can answer at all: a passage *supports* the
question when it names the question's names, numbers and codes, and its cosine similarity
to it is high, or moderate with most of the question's distinctive words (weighted by IDF;
words absent from every document weigh most) present in it, or one of its sentences names
the numbers with most of the question's words. With no supporting passage the answer is
:data:`NOT_FOUND`, and the model is not asked, because a small local model asked anyway
invents an answer.

Otherwise the local model answers from the numbered supporting passages. If it replies
that the passages do not say, that is the answer; if its reply is empty or mostly made
of words found in none of the passages, the best-matching sentence is quoted instead
(``mode: "extractive"``), so what the user reads is always grounded in a cited passage.
A number or code in the reply must come from a sentence naming the question's own: among
near-identical records a small model copies the neighbouring record's code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from bitterbot.agent import docs_ingest
from bitterbot.agent.backends import Backend, GenerateOptions
from bitterbot.agent.docs_index import DocsIndex, Encoder, Hit
from bitterbot.agent.docs_terms import (
    identifier_terms,
    identifiers,
    terms,
    without_identifiers,
)
from bitterbot.protocol.errors import ModelError, ValidationError

# --- the skill, as the router sees it -----------------------------------------------
SKILL_NAME = "docs"
SKILL_DESCRIPTION = (
    "Answers questions from the user's own documents (text, Markdown, HTML, PDF, DOCX added "
    "with `bitterbot docs add`), offline, citing the file and the page or lines it used."
)
SKILL_EXAMPLES = [
    "what does my lease say about pets",
    "according to my notes, when is the project deadline",
    "search my documents for the warranty period",
    "what did the meeting minutes decide about the budget",
    "find in my files how to reset the router",
    "summarize what my PDF says about side effects",
    "which page of the manual explains calibration",
    "in my documents, who is the contact for billing",
]

NOT_FOUND = "Not found in your documents."
MAX_QUESTION_CHARS = 1000

# support thresholds for all-MiniLM-L6-v2 cosines (see SPEC.md section 9)
STRONG_COSINE = 0.62
WEAK_COSINE = 0.20
MIN_COVERAGE = 0.5
KEYED_SUPPORT = 0.75  # share of the question's words in a sentence naming all its numbers
SHORT_SENTENCE = 100  # characters: a quoted sentence shorter than this brings the next one

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages from the user's documents. "
    "Answer in one or two sentences and cite the passage numbers like [1]. "
    "If the passages do not contain the answer, reply exactly: NOT FOUND"
)
_NOT_FOUND_REPLY = re.compile(r"\bnot\s+found\b|do(?:es)? not (?:contain|say|mention)", re.I)
_CITE = re.compile(r"\[(\d+)\]")
_retrieval_limiter = trio.CapacityLimiter(2)


@dataclass
class DocsAnswer:
    question: str
    answer: str
    found: bool
    mode: str  # "model" | "extractive" | "not_found"
    citations: list[dict[str, Any]] = field(default_factory=list)
    passages: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    retrieval_ms: float = 0.0
    total_ms: float = 0.0
    note: str = ""  # why the model's answer was not used, when it was not

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "found": self.found,
            "mode": self.mode,
            "citations": self.citations,
            "passages": self.passages,
            "model": self.model,
            "retrieval_ms": round(self.retrieval_ms, 2),
            "total_ms": round(self.total_ms, 2),
            "note": self.note,
        }


_NAME_OR_NUMBER = re.compile(r"(?<![.!?]\s)(?<!^)\b(?:[A-Z][\w-]*|\d[\w.,-]*)")
_DIGIT = re.compile(r"\d")


def names_and_numbers(question: str) -> set[str]:
    """Terms of the question's capitalised words (not sentence-initial) and numbers."""
    return set(terms(" ".join(_NAME_OR_NUMBER.findall(question.strip()))))


def names(question: str) -> set[str]:
    """Terms of the question's capitalised words (not sentence-initial) holding no digit;
    codes and numbers are matched whole by :func:`holds_identifiers` instead."""
    found = _NAME_OR_NUMBER.findall(question.strip())
    return set(terms(" ".join(w for w in found if not _DIGIT.search(w))))


def passage_identifiers(text: str) -> set[str]:
    """Every identifier of ``text``, whole or as a numbered part of a longer one."""
    return {term[1:] for term in identifier_terms(text)}


def holds_identifiers(question: str, text: str) -> bool:
    """Whether ``text`` holds each number and code of ``question`` (07 is 7, AB-12 is
    AB12, and 142 is in ST-142; 14 is not in 142)."""
    return set(identifiers(question)) <= passage_identifiers(text)


def coverage(index: DocsIndex, question: str, text: str) -> float:
    """Weighted share of the question's words that occur in ``text`` (0..1).

    Words weigh their IDF (a word in no document weighs most); names and numbers weigh
    double, because a question about "Dover" is not answered by a passage on "Harrow".
    """
    wanted = set(terms(question))
    if not wanted:
        return 0.0
    weights = index.term_weights(wanted)
    for name in names_and_numbers(question) & wanted:
        weights[name] *= 2
    present = set(terms(text))
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in present) / total if total else 0.0


def supporting(index: DocsIndex, question: str, hits: list[Hit]) -> list[Hit]:
    """The hits that support answering ``question`` (best first).

    A passage missing one of the question's names or numbers never supports it; otherwise
    a strong cosine does, or a moderate one with most of the question's words present,
    or a sentence naming every number and code of the question whole with most of its
    words (a short question's cosine with a long passage is low: "what was converted
    in 1931?" against a page on a lighthouse).
    """
    wanted = names(question)
    asked = identifiers(question)
    out = []
    for hit in hits:
        if not wanted <= set(terms(hit.text)) or not holds_identifiers(question, hit.text):
            continue
        if (
            hit.cosine >= STRONG_COSINE
            or (hit.cosine >= WEAK_COSINE and coverage(index, question, hit.text) >= MIN_COVERAGE)
            or (asked and hit.exact >= len(asked) and hit.keyed >= KEYED_SUPPORT)
        ):
            out.append(hit)
    return out


def build_messages(question: str, passages: list[Hit]) -> list[dict[str, str]]:
    numbered = "\n\n".join(
        f"[{n}] ({docs_ingest.format_position(h.position)} of {_name(h.file)})\n{h.text}"
        for n, h in enumerate(passages, start=1)
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Passages:\n{numbered}\n\nQuestion: {question}"},
    ]


def best_sentence(index: DocsIndex, question: str, passages: list[Hit]) -> tuple[str, int]:
    """The sentence of ``passages`` sharing the most (IDF-weighted) words with the question;
    a short one (a heading, a list item's name) comes with the sentence after it.

    For a question naming numbers or codes the question's other words count unweighted
    (among near-identical passages IDF weighs every word near zero), and a sentence naming
    all its numbers comes first when no sentence of its passage holds more of those words:
    "the code for station 3 is X" beats "station 3 takes over during repairs", while a
    heading "Kettle K-200" does not beat "descale the kettle every four weeks" below it.
    """
    asked = set(identifiers(question))
    words = set(terms(without_identifiers(question))) if asked else set()
    best, best_n, best_key = passages[0].text, 1, (False, 0.0, -1.0)
    for n, hit in enumerate(passages, start=1):
        sentences = [hit.text[s:e].strip() for s, e in docs_ingest.sentence_spans(hit.text)]
        shares = [len(words & set(terms(s))) / len(words) if words else 0.0 for s in sentences]
        top = max(shares, default=0.0)
        for i, sentence in enumerate(sentences):
            named = bool(asked) and asked <= passage_identifiers(sentence) and shares[i] >= top
            # ties go to the fuller sentence, then to the better passage
            score = coverage(index, question, sentence) + 0.002 * min(len(sentence.split()), 30)
            key = (named, shares[i], score + 0.001 * (n == 1))
            if key > best_key:
                fact = named and bool(set(identifiers(sentence)) - asked)  # states a number
                if len(sentence) < SHORT_SENTENCE and i + 1 < len(sentences) and not fact:
                    sentence = f"{sentence} {sentences[i + 1]}"
                best, best_n, best_key = sentence, n, key
    return best, best_n


def grounded(answer: str, passages: list[Hit]) -> bool:
    """The answer's numbers all occur in the passages, and most of its words do.

    Small models invent numbers most readily ("100 pounds" for "four pounds"), so one
    number absent from every passage is enough to refuse the reply.
    """
    answer = _CITE.sub(" ", answer)
    words = set(terms(answer))
    if not words:
        return False
    seen: set[str] = set()
    codes: set[str] = set()
    for hit in passages:
        seen.update(terms(hit.text))
        codes.update(passage_identifiers(hit.text))
    if any(w.isdigit() and w not in seen for w in words):
        return False
    if not set(identifiers(answer)) <= codes:  # a code cut short or garbled (QX-773 for QX-7731)
        return False
    return len(words & seen) / len(words) >= 0.75


def keyed_facts(question: str, support: list[Hit]) -> list[Hit]:
    """For a question naming numbers or codes that one passage names all of: only the
    passages whose sentence naming them holds as much of the question as the best one.

    Shown station 142's passage and station 270's ("station 142 takes over"), a small
    model copies station 270's code about as often as not; shown only the first, it
    copies the right one.
    """
    asked = identifiers(question)
    if not support or not asked or support[0].exact < len(asked) or support[0].keyed <= 0:
        return support
    best = support[0]
    return [h for h in support if (h.exact, h.keyed) == (best.exact, best.keyed)]


def keyed_to_the_question(question: str, answer: str, passages: list[Hit]) -> bool:
    """Each number or code the answer adds to the question's comes from a sentence that
    holds the question's own numbers and codes.

    Among near-identical passages ("the code for station 11 is X. Its backup is station
    142."), a small model asked about station 142 copies station 11's code; that code is
    in the passages, but never in a sentence about station 142.
    """
    asked = set(identifiers(question))
    added = set(identifiers(_CITE.sub(" ", answer))) - asked
    if not asked or not added:
        return True
    keyed: set[str] = set()
    for hit in passages:
        for start, end in docs_ingest.sentence_spans(hit.text):
            found = passage_identifiers(hit.text[start:end])
            if asked <= found:
                keyed |= found
    return added <= keyed


def retrieve(index: DocsIndex, question: str, k: int, reranker: Encoder | None) -> list[Hit]:
    """The ``k`` best passages; with a ``reranker`` (the contextual encoder), their cosines
    are recomputed with it and they are re-ordered by them (blocking: run in a thread)."""
    hits: list[Hit] = index.search(question, k)
    if reranker is None or not hits:
        return hits
    vectors = reranker.encode([question] + [h.text for h in hits])
    for hit, cosine in zip(hits, vectors[1:] @ vectors[0], strict=True):
        hit.cosine = float(cosine)
    # cosines cannot tell station 142 from station 11: the identifier ranking stands
    return sorted(hits, key=lambda h: (-h.exact, -h.keyed, -h.cosine))


async def answer_question(
    index: DocsIndex,
    backend: Backend | None,
    question: str,
    *,
    reranker: Encoder | None = None,
    k: int = 5,
    max_passages: int = 3,
    max_tokens: int = 160,
) -> DocsAnswer:
    """Retrieve (and re-score with ``reranker``), check support, then answer with
    ``backend`` (None: quote the best sentence). The support thresholds assume contextual
    cosines: pass the contextual encoder as ``reranker`` when the index holds static ones."""
    question = question.strip()
    if not question:
        raise ValidationError("empty question", hint="ask something about your documents")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValidationError(
            f"the question is over {MAX_QUESTION_CHARS} characters", hint="ask a shorter question"
        )
    started = time.perf_counter()

    def find() -> tuple[list[Hit], list[Hit]]:  # LMDB, numpy and the encoder: in a thread
        hits = retrieve(index, question, k, reranker)
        return hits, keyed_facts(question, supporting(index, question, hits))[:max_passages]

    hits, support = await trio.to_thread.run_sync(find, limiter=_retrieval_limiter)
    retrieval_ms = (time.perf_counter() - started) * 1000
    result = DocsAnswer(
        question=question,
        answer=NOT_FOUND,
        found=False,
        mode="not_found",
        passages=[h.to_dict() for h in hits],
        model=backend.model if backend is not None else "",
        retrieval_ms=retrieval_ms,
    )
    if support:
        text, mode, cited, note = await _compose(index, backend, question, support, max_tokens)
        result.answer, result.mode, result.found = text, mode, mode != "not_found"
        result.note = note
        if result.found:
            result.citations = [
                {"n": n, "file": h.file, "position": h.position, "citation": h.citation}
                for n, h in enumerate(support, start=1)
                if n in cited
            ]
    result.total_ms = (time.perf_counter() - started) * 1000
    return result


def fit_passages(
    backend: Backend, question: str, passages: list[Hit], max_tokens: int
) -> list[Hit]:
    """The leading passages whose prompt leaves ``max_tokens`` of the model's context."""
    fitted = list(passages)
    while fitted:
        used = backend.count_tokens(build_messages(question, fitted))
        if used + max_tokens <= backend.context_length:
            break
        fitted.pop()
    return fitted


async def _compose(
    index: DocsIndex, backend: Backend | None, question: str, support: list[Hit], max_tokens: int
) -> tuple[str, str, set[int], str]:
    """(answer, mode, cited passage numbers, note)."""
    note = ""
    fitted = [] if backend is None else fit_passages(backend, question, support, max_tokens)
    if backend is not None and not fitted:
        note = (
            f"the passages do not fit the {backend.context_length}-token context of {backend.model}"
        )
    if backend is not None and fitted:
        options = GenerateOptions(max_tokens=max_tokens, temperature=0.0)
        try:
            completion = await backend.generate(build_messages(question, fitted), options)
        except ModelError as exc:  # the quote below still answers; the note says why
            completion, note = None, f"the model failed ({exc.code}): {exc.message}"
        reply = completion.text.strip() if completion is not None else ""
        if _NOT_FOUND_REPLY.search(reply) and not grounded(reply, fitted):
            if fitted[0].cosine < STRONG_COSINE:  # weak support and the model agrees
                return NOT_FOUND, "not_found", set(), ""
        if reply and grounded(reply, fitted) and keyed_to_the_question(question, reply, fitted):
            cited = {int(n) for n in _CITE.findall(reply) if 1 <= int(n) <= len(fitted)}
            if not cited:
                cited = {1}
                reply = f"{reply} [1]"
            return reply, "model", cited, ""
    sentence, n = best_sentence(index, question, support)
    return f"{sentence} [{n}]", "extractive", {n}, note


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def format_answer(result: DocsAnswer) -> str:
    """The answer as one text, with its sources listed (for chat and the orchestrator)."""
    if not result.citations:
        return result.answer
    sources = "\n".join(f"[{c['n']}] {c['citation']}" for c in result.citations)
    return f"{result.answer}\n\nSources:\n{sources}"


def skill_runner(
    index: DocsIndex, backend: Backend | None, reranker: Encoder | None
) -> Callable[[str, str], Awaitable[str]]:
    """An ``Orchestrator`` skill runner for the ``docs`` skill: ``(skill, text) -> answer``."""

    async def run(skill: str, text: str) -> str:
        if skill != SKILL_NAME:
            raise ValidationError(f"the docs runner cannot run skill {skill!r}")
        return format_answer(await answer_question(index, backend, text, reranker=reranker))

    return run
