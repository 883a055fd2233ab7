"""Index terms of a passage: BM25 words, and numbers and codes matched exactly.

Words are lower-cased, stopwords dropped and one common suffix stripped (a tiny stemmer).
An *identifier* is a run of word characters joined by ``- _ / :``, dots, or a comma before
three digits, that holds a digit; it is matched in canonical form (lower case, leading
zeros and ``- _ ,`` dropped), whole (``#``) and, for a compound, by each part holding a
digit (``~``): ``ST-142`` gives ``#st142`` and ``~142``. Used by the index
(:mod:`~bitterbot.agent.docs_index`) and by the answer checks
(:mod:`~bitterbot.agent.docs_qa`).
"""

from __future__ import annotations

import re
from collections import Counter

# --- terms ---------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have he her
    his how i if in into is it its me my no not of on or our she so than that the their them
    then there these they this those to was we were what when where which who whom why will
    with would you your about after before also any all more most other some such only own
    same too very just should now s t""".split()
)


def terms(text: str) -> list[str]:
    """Lower-cased words without stopwords, with a common suffix stripped (a tiny stemmer)."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS:
            continue
        out.append(_stem(word))
    return out


_SUFFIXES = ("ments", "ment", "ings", "ing", "ies", "ed", "es", "s")


def _stem(word: str) -> str:
    """Strip one common English suffix, keeping at least four letters (park, parking);
    a number loses its leading zeros (station 07 is station 7)."""
    if word.isdigit():
        return word.lstrip("0") or "0"
    if word.endswith(("ss", "us", "is")):
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


# --- identifiers: numbers and codes, matched exactly --------------------------------

# An identifier is a run of word characters joined by - _ / : (AB-1234, 2024-05-01, 10:30),
# by dots (v2.3.1, 4.12) or by a comma before three digits (1,200) that holds a digit. The
# pattern finds only runs holding a digit, so text is scanned without a Python step per
# word (the same runs as \w+(?:JOIN\w+)* filtered for a digit: a test checks).
_JOIN = r"(?:[-./:]|(?<=\d),(?=\d{3}(?!\d)))"
_RUN = re.compile(rf"\b(?:\w+{_JOIN})*?\w*\d\w*(?:{_JOIN}\w+)*")
_TOKEN_WITH_DIGIT = re.compile(r"(?<!\S)\S*?\d\S*")  # a run never spans whitespace


def identifier_runs(text: str) -> list[str]:
    """The identifier runs of ``text`` (the tokens holding a digit are scanned alone:
    about half the time of scanning all the text)."""
    tokens = _TOKEN_WITH_DIGIT.findall(text)
    return _RUN.findall(" ".join(tokens)) if tokens else []


_PARTS = re.compile(r"[-_/:,]")
_JOINERS = re.compile(r"[-_,]")
_DIGIT = re.compile(r"\d")
WHOLE, PART = "#", "~"  # term prefixes: a whole identifier; a numbered part of a longer one
PART_WEIGHT = 0.5  # "142" found only inside "ST-142" counts half


def canonical_identifier(token: str) -> str:
    """Lower case; a number without leading zeros (07 is 7); ``-``, ``_`` and ``,`` dropped
    (AB-1234 is AB1234, 1,200 is 1200); dots, slashes and colons kept (2.3 is not 23)."""
    token = token.lower()
    if token.isdigit():
        return token.lstrip("0") or "0"
    return _JOINERS.sub("", token)


def identifiers(text: str) -> list[str]:
    """The canonical identifiers of ``text`` (each whole run holding a digit), in order."""
    return list(dict.fromkeys(canonical_identifier(r) for r in identifier_runs(text)))


def without_identifiers(text: str) -> str:
    """``text`` with its numbers and codes blanked out (its plain words stay)."""
    return _RUN.sub(" ", text)


def identifier_terms(text: str) -> list[str]:
    """Index terms of ``text``'s identifiers: ``#`` + each whole one, ``~`` + each part
    holding a digit of a compound one (``ST-142`` gives ``#st142`` and ``~142``)."""
    out = []
    for run in identifier_runs(text):
        whole, *parts = run_identifiers(run)
        out.append(WHOLE + whole)
        out.extend(PART + p for p in parts)
    return out


def run_identifiers(run: str) -> list[str]:
    """The canonical identifiers one run stands for: itself, and its parts with digits."""
    parts = _PARTS.split(run)
    out = [canonical_identifier(run)]
    if len(parts) > 1:
        out.extend(canonical_identifier(p) for p in parts if _DIGIT.search(p))
    return out


def index_terms(text: str) -> tuple[int, dict[str, int]]:
    """What ``docs_terms`` stores for a passage: its length in words and its term counts
    (BM25 words, plus identifier terms, which never count towards the length)."""
    words = terms(text)
    return len(words), dict(Counter(words + identifier_terms(text)))
