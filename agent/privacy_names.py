"""Names of people, organizations and places: word-list heuristics, helped by an NER model.

A capitalized span is a name when one of its words is not an English word ("Zheng",
"Instagram"), when a title or a cue comes before it (``Dr.``, ``my name is``), when it
ends in an organization word (``Ltd``, ``University``), or when the statistical model
(:mod:`bitterbot.agent.privacy_ner`) says so. Without a model the gate cannot tell a
heading ("Customer Support Team") from a company made of English words ("Excel
Systems"), so it hides both; with one it keeps headings of ordinary words the model
does not tag, which is most of what the heuristics over-redacted. Lower-case words
that are not English words ("a home in markham") are hidden too, and so are lower-case
words the model tags. The word lists are in :mod:`bitterbot.agent.privacy_words`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bitterbot.agent.privacy_structured import MASK, Span
from bitterbot.agent.privacy_words import (
    ACTIONS,
    COMMON_ACRONYMS,
    COMMON_WORDS,
    GREETED_GROUPS,
    GREETINGS,
    JOINERS,
    LEGAL_FORMS,
    NOT_EMPLOYERS,
    ORG_WORDS,
    TITLES,
    foreign_stop_words,
    in_dictionary,
    is_known_name,
    is_ordinary_word,
    plain,
)

WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ][\w'’&.-]*")
#: a lower-case word, also before a possessive ("wendy’s"), not inside a contraction
LOWER_WORD = re.compile(r"(?<![\w'’@#/.-])[a-z][a-zA-Z]{2,}(?=['’]s\b|(?![\w'’@/-]))")
NAME_CUE = re.compile(
    r"\b(?:my name is|i am|i'm|i’m|called|named|name:)\s+([a-z][a-z'-]{1,20})\b", re.IGNORECASE
)
#: "hi rohan," "thanks meera": whoever a lower-case greeting addresses
GREETING_CUE = re.compile(
    r"\b(?i:hi|hello|hey|dear|yo|thanks|thank you|cheers|regards|bye),?[ \t]+"
    r"([a-z][a-z'-]{1,20})\b"
)
PLACE_PREPOSITION = re.compile(r"\b(?:in|at|near|from|to|around|visit|visiting)\s*$")
AT_PLACE = re.compile(r"\b(?:at|in|from|for|with|near|visit|visiting|join|joined|joining)\s+$")
#: What comes after it is an employer's name, whatever its case.
EMPLOYER_CUE = re.compile(
    r"\b(?:(?:i|we|he|she|they|my|his|her)\s+(?:\w+\s+)?(?:work|worked|working|works)\s+(?:at|for)"
    r"|employed\s+(?:at|by)|(?:job|internship|position)\s+at|company\s+(?:is|called|named)"
    r"|employer\s*(?:is|:))\s+",
    re.IGNORECASE,
)
#: Whoever made, wrote or owns something is named right after "by".
MADE_BY = re.compile(
    r"\b(?:made|developed|written|created|built|owned|founded|run|published|produced|"
    r"designed|acquired|directed|sponsored|led|managed|operated)\s+by\s+$",
    re.IGNORECASE,
)
ALREADY_REDACTED = re.compile(r"<[A-Z_]+>|\[[A-Z]+_\d+\]")


def _sentence_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip(" \t\"'“‘([*-#>")
    return not before or before[-1] in ".!?:\n;•*" or before.endswith("\\n")


def _overlaps(start: int, end: int, spans: Sequence[Span]) -> bool:
    return any(start < b and a < end for _, a, b in spans)


def _name_type(words: Sequence[str], text: str, start: int) -> str:
    lowered = [w.rstrip(".,").lower() for w in words]
    if any(w in ORG_WORDS for w in lowered) or any(w in ("&", "and") for w in lowered[1:-1]):
        return "ORG"
    if PLACE_PREPOSITION.search(text[max(0, start - 12) : start]) and len(words) <= 2:
        return "LOCATION"
    return "PERSON"


def _has_capital(word: str) -> bool:
    """Capitalized, or capitals inside ("eClinicalWorks", "gEOFF")."""
    return word[:1].isupper() or (len(word) > 2 and any(c.isupper() for c in word[1:]))


def _capitalized_spans(text: str) -> list[tuple[int, int, list[re.Match[str]], bool]]:
    """(start, end, tokens, greeted) of runs of capitalized words."""
    tokens = list(WORD.finditer(text))
    out = []
    i = 0
    while i < len(tokens):
        m = tokens[i]
        if not _has_capital(m.group(0)) or ALREADY_REDACTED.match(text, max(0, m.start() - 1)):
            i += 1
            continue
        # extend over following capitalized words (and joiners like "of", "&", "de")
        j = i
        while j + 1 < len(tokens):
            nxt = tokens[j + 1]
            gap = text[tokens[j].end() : nxt.start()]
            if len(gap) > 2 or "\n" in gap or any(c in gap for c in ',;:()!?"*' + MASK):
                break
            prev = tokens[j].group(0)
            if prev.endswith(".") and len(prev) > 3 and prev[:-1].lower() not in TITLES:
                break  # "Ltd. Johnny": a sentence ends; "Thomas H. Davenport" goes on
            w = nxt.group(0)
            if _has_capital(w) or (
                w.lower() in JOINERS
                and j + 2 < len(tokens)
                and _has_capital(tokens[j + 2].group(0))
            ):
                j += 1
                continue
            break
        words = [t.group(0).rstrip(".,'’") for t in tokens[i : j + 1]]
        first = i
        # drop leading ordinary words ("The", "Dear", "Explain") but keep titles with the name,
        # and whoever is greeted ("Hi May", "Dear Grace")
        while words and words[0].lower() in COMMON_WORDS and words[0].lower() not in TITLES:
            if _greets(text, tokens, first) or _acts(tokens, first):
                break
            words.pop(0)
            first += 1
        greeted = bool(words) and (_greets(text, tokens, first) or _acts(tokens, first))
        if words:
            end = tokens[j].end()
            while end > tokens[first].start() and text[end - 1] in ".'’":
                end -= 1
            out.append((tokens[first].start(), end, list(tokens[first : j + 1]), greeted))
        i = j + 1
    return out


def _acts(tokens: Sequence[re.Match[str]], k: int) -> bool:
    """Token k is a known first name that says or does something: "Victor from the Lagos
    branch wants", "Henry commented", "Will and Faith find"."""
    word = tokens[k].group(0)
    if not word[:1].isupper() or word.isupper() or not is_known_name(word.lower()):
        return False
    if k + 1 >= len(tokens):
        return False
    nxt = tokens[k + 1].group(0)
    if nxt.lower() == "and" and k + 2 < len(tokens):
        after = tokens[k + 2].group(0)
        return after[:1].isupper() and after.lower() not in COMMON_WORDS
    return nxt.lower() in ACTIONS


def _greets(text: str, tokens: Sequence[re.Match[str]], k: int) -> bool:
    """Token k is whoever a greeting or a sign-off addresses."""
    if k == 0 or tokens[k].group(0).lower().rstrip(".,") in GREETED_GROUPS:
        return False
    before = tokens[k - 1]
    gap = text[before.end() : tokens[k].start()]
    return before.group(0).lower().rstrip(",") in GREETINGS and "\n" not in gap and len(gap) <= 2


def _is_shouting(word: str) -> bool:
    """An English word in capitals ("PLAYED", "HOMER"), not an acronym."""
    low = word.lower()
    return word.isupper() and (low in COMMON_WORDS or (len(word) >= 4 and in_dictionary(low)))


def _in_running_text(text: str, start: int, end: int) -> bool:
    """Lower-case words on both sides ("a mail to Blessing informing her"): not a heading."""
    before = re.search(r"([A-Za-z]+)[ \t]+$", text[max(0, start - 30) : start])
    after = re.match(r"[ \t]+([A-Za-z]+)", text[end : end + 30])
    return bool(before and after and before.group(1).islower() and after.group(1).islower())


def _name_like(word: str) -> bool:
    """Not an English word ("Zheng", "TryHackMe"), or an acronym nobody shares ("ICS")."""
    low = word.lower()
    if word.isupper() and len(word) > 1:
        return low not in COMMON_ACRONYMS and not _is_shouting(word)
    return not in_dictionary(low) and low not in foreign_stop_words()


def _capitalized_names(text: str, ner: Sequence[Span] | None) -> list[Span]:
    found: list[Span] = []
    for start, end, tokens, greeted in _capitalized_spans(text):
        words = [t.group(0).rstrip(".,'’") for t in tokens]
        if all(w.lower() in TITLES for w in words):
            continue
        if greeted:
            found.append(("PERSON", start, end))
            continue
        if len(words) == 1 and len(words[0]) == 1:
            continue  # "I", "A"
        if len(words) == 1 and words[0].isupper() and words[0].lower() in COMMON_ACRONYMS:
            continue  # CEO, PDF, AI: they identify nobody
        acronym = len(words) == 1 and words[0].isupper() and not _is_shouting(words[0])
        at_start = _sentence_start(text, start)
        content = [w for w in words if w.lower() not in JOINERS and w.lower() not in TITLES]
        unknown = any(_name_like(w) for w in content)
        kind = "ORG" if acronym else _name_type(words, text, start)
        if unknown or acronym:
            if len(words) == 1 and at_start and in_dictionary(words[0].lower()):
                continue  # "Explain ...", "Write ..."
            if ner is not None and len(content) > 3:
                # a heading with a brand in it ("Business Administration TryHackMe Online
                # Platform"): the unknown words, and whatever the model finds
                found += [
                    (kind, t.start(), t.start() + len(w))
                    for t, w in zip(tokens, words, strict=True)
                    if _name_like(w)
                ]
                continue
            found.append((kind, start, end))
            continue
        # every word is an English word: "Customer Support", "Excel Systems", "Bill", "Lumen"
        if ner is None:  # no model to ask: hide all but a sentence's first word
            if not (len(words) == 1 and at_start):
                found.append((kind, start, end))
            continue
        titled = words[0].lower() in TITLES or bool(
            re.search(
                r"\b(?:mr|mrs|ms|miss|dr|prof|sir)\.?\s*$", text[max(0, start - 6) : start], re.I
            )
        )
        org = len(content) >= 2 and content[-1].lower() in ORG_WORDS
        named = any(is_known_name(w.lower()) and not w.isupper() for w in content) and not (
            at_start and len(words) == 1
        )
        made_by = bool(MADE_BY.search(text, max(0, start - 30), start))  # "developed by Closed AI"
        running = len(words) == 1 and not at_start and _in_running_text(text, start, end)
        if titled or org or named or made_by or running or _overlaps(start, end, ner):
            found.append((kind, start, end))
    return found


def _lower_case_names(text: str, ner: Sequence[Span] | None) -> list[Span]:
    found: list[Span] = []
    for m in NAME_CUE.finditer(text):
        if not is_ordinary_word(m.group(1).lower()):
            found.append(("PERSON", m.start(1), m.end(1)))
    for m in GREETING_CUE.finditer(text):
        word = m.group(1)
        stem = re.split(r"['’]", word)[0]  # "hey, what's"
        if stem not in GREETED_GROUPS and stem not in COMMON_WORDS:
            found.append(("PERSON", m.start(1), m.end(1)))
    for m in LOWER_WORD.finditer(text):  # names typed in lower case: "a home in markham"
        word = m.group(0)
        if ALREADY_REDACTED.match(text, max(0, m.start() - 1)):
            continue
        low = word.lower()
        if not is_ordinary_word(low):  # the model's lower-case finds come on their own
            found.append(("NAME", m.start(), m.end()))
        elif not in_dictionary(low) and low not in COMMON_ACRONYMS:
            # a headword or a compound, as names can be ("facebook", "berlin"): a name
            # where a place or an employer would stand
            if AT_PLACE.search(text, max(0, m.start() - 12), m.start()):
                found.append(("NAME", m.start(), m.end()))
    # "snowflake inc.", "acme widgets llc": the words before a legal form, back to a
    # function word
    for m in re.finditer(r"\b(" + "|".join(LEGAL_FORMS) + r")\b\.?", text, re.IGNORECASE):
        before = list(re.finditer(r"[\w&'’-]+", text[max(0, m.start() - 60) : m.start()]))
        start = m.start()
        for w in reversed(before[-3:]):
            if w.group(0).lower() in COMMON_WORDS:
                break
            start = max(0, m.start() - 60) + w.start()
        if start < m.start():
            found.append(("ORG", start, m.end()))
    # "my work at google", "the company is wolfram research": an employer, in any case
    for m in EMPLOYER_CUE.finditer(text):
        words = list(re.finditer(r"[\w&'’.-]+", text[m.end() : m.end() + 60]))
        end = m.end()
        for w in words[:3]:
            low = w.group(0).lower().rstrip(".")
            if (
                low in COMMON_WORDS
                or low in NOT_EMPLOYERS
                or text[end : m.end() + w.start()].strip()
            ):
                break
            end = m.end() + w.start() + len(w.group(0).rstrip("."))
        if end > m.end():
            found.append(("ORG", m.end(), end))
    return found


def dull(text: str) -> bool:
    """A model's false find: :func:`plain`, or one English word in lower case ("referral",
    "telehealth"), where the model is least sure."""
    if text.islower() and " " not in text.strip() and is_ordinary_word(text.strip(".,")):
        return True
    return plain(text)


def find_names(text: str, ner: Sequence[Span] | None = None) -> list[Span]:
    """Name spans in ``text``; ``ner`` is the model's name spans, None without a model."""
    return _capitalized_names(text, ner) + _lower_case_names(text, ner)
