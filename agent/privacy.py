"""The privacy gate: what may leave the device, with personal data swapped for placeholders.

Two duties before anything goes to a cloud model:

* **Minimization** (:func:`minimize`): the cloud gets the current task only, plus snippets
  the task needs; the chat history only when the user opted in (``cloud.send_history``).
* **Redaction** (:class:`PrivacyGate`): personal data becomes reversible placeholders such
  as ``[PERSON_1]``; :meth:`Redaction.restore` puts the originals back into the answer the
  user sees. The originals never leave this process.

Three kinds of detectors, in order of trust: patterns with validators for structured data
(:mod:`~bitterbot.agent.privacy_structured`: e-mail, phone, card with Luhn, IBAN with
mod 97, IP, URL, address, handle, ID, secret, date of birth), spaCy's small English NER
(:mod:`~bitterbot.agent.privacy_ner`, loaded on first use), and word-list heuristics for
names (:mod:`~bitterbot.agent.privacy_names`, word lists in
:mod:`~bitterbot.agent.privacy_words`) that catch what the model misses (lower-case and
foreign names) and use the model to keep headings of ordinary words. The heuristics
over-redact rather than leak. Leakage and words kept on PUPA and on our own queries are
measured by ``bitterbot bench privacy`` (:mod:`~bitterbot.agent.privacy_eval`, SPEC.md 7.4).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bitterbot.agent.privacy_eval import leakage
from bitterbot.agent.privacy_names import dull, find_names
from bitterbot.agent.privacy_ner import NerModel, load_ner, name_spans
from bitterbot.agent.privacy_structured import MASK, Span, find_structured, iban_ok, luhn_ok
from bitterbot.agent.privacy_words import foreign_stop_words, in_dictionary, lexicon, plain
from bitterbot.protocol.errors import ValidationError

__all__ = [
    "MAX_REDACT_CHARS",
    "STRUCTURED_TYPES",
    "Entity",
    "PrivacyGate",
    "Redaction",
    "iban_ok",
    "leakage",
    "luhn_ok",
    "minimize",
]

MAX_REDACT_CHARS = 200_000
#: What the patterns of :mod:`~bitterbot.agent.privacy_structured` find.
STRUCTURED_TYPES = frozenset("EMAIL URL IBAN CARD IP ADDRESS PHONE HANDLE ID SECRET DOB".split())


@dataclass
class Entity:
    type: str
    start: int
    end: int
    text: str

    def public(self) -> dict[str, int | str]:
        """What may be shown or logged: the type and span, never the text."""
        return {"type": self.type, "start": self.start, "end": self.end}


@dataclass
class Redaction:
    original: str
    redacted: str
    entities: list[Entity]  # spans in ``original``
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original text

    def counts(self) -> dict[str, int]:
        return dict(Counter(e.type for e in self.entities))

    def restore(self, text: str) -> str:
        """Put the originals back where the answer uses placeholders (brackets optional)."""
        if not self.mapping:
            return text

        def swap(m: re.Match[str]) -> str:
            key = f"[{m.group(1).upper()}_{m.group(2)}]"
            return self.mapping.get(key, m.group(0))

        return re.sub(r"\[?\b([A-Za-z]+)_(\d+)\b\]?", swap, text)


#: Which detector wins an overlap: the validated patterns, then the others by length.
_PRIORITY = {"EMAIL": 0, "URL": 0, "IBAN": 1, "CARD": 1, "SECRET": 1, "DOB": 1, "IP": 2}
_PRIORITY |= {"ADDRESS": 2, "PHONE": 3, "ID": 4, "HANDLE": 4}


def _resolve(entities: Iterable[Entity]) -> list[Entity]:
    """Drop overlaps: structured detectors first, then longer spans, then earlier finds."""
    chosen: list[Entity] = []
    taken: list[tuple[int, int]] = []
    for e in sorted(entities, key=lambda e: (_PRIORITY.get(e.type, 5), -(e.end - e.start))):
        if any(e.start < b and a < e.end for a, b in taken):
            continue
        chosen.append(e)
        taken.append((e.start, e.end))
    return sorted(chosen, key=lambda e: e.start)


def _mentions(texts: Sequence[str], token: str) -> bool:
    pattern = re.compile(rf"(?<![A-Za-z]){re.escape(token)}(?!\d)", re.IGNORECASE)
    return any(pattern.search(t) for t in texts)


def _mask(text: str, spans: Iterable[Span]) -> str:
    for _kind, start, end in spans:
        text = text[:start] + MASK * (end - start) + text[end:]
    return text


#: Words (and names of several words) that are hidden wherever else they occur.
_PROPAGATES = re.compile(r"[^\W\d_]{3,}(?:[ '’-][^\W\d_]+)*")


class PrivacyGate:
    """Finds personal data and swaps it for placeholders; same text, same placeholder.

    ``ner=False`` runs the heuristics alone (no model to load; over-redacts headings).
    With ``ner=True`` the NER model is loaded on the first :meth:`find`, and a missing
    model is a :class:`~bitterbot.protocol.errors.ModelError`, never a silent downgrade.
    """

    def __init__(
        self,
        *,
        extra_terms: Sequence[str] = (),
        keep_words: Sequence[str] = (),
        ner: bool = True,
    ):
        self.extra_terms = [t for t in extra_terms if t.strip()]
        self.keep_words = {w.lower() for w in keep_words}
        self.use_ner = ner

    def model(self) -> NerModel | None:
        return load_ner() if self.use_ner else None

    def warm_up(self) -> None:
        """Load the word lists and the model now rather than on the first request."""
        lexicon()
        foreign_stop_words()
        self.model()

    def find(self, text: str) -> list[Entity]:
        structured = find_structured(text)
        # names are looked for around structured finds, never across them
        masked = _mask(text, structured)
        ner = name_spans(masked, self.model())
        ner = [s for s in ner if not dull(masked[s[1] : s[2]])] if ner is not None else None
        names = find_names(masked, ner) + (ner or [])
        found = [Entity(k, a, b, text[a:b]) for k, a, b in structured]
        found += [
            Entity(k, a, b, text[a:b])
            for k, a, b in names
            if text[a:b].lower() not in self.keep_words
        ]
        for term in self.extra_terms:  # the user's own list: their name, employer, town
            for m in re.finditer(re.escape(term), text, re.IGNORECASE):
                found.append(Entity("CUSTOM", m.start(), m.end(), m.group(0)))
        return _resolve(found)

    def redact(self, text: str) -> Redaction:
        (_redacted,), redaction = self.redact_many([text])
        return redaction

    def redact_many(self, texts: Sequence[str]) -> tuple[list[str], Redaction]:
        """Redact several texts (e.g. chat messages) with one shared set of placeholders.

        The returned :class:`Redaction` describes the texts joined by newlines; its
        entities are every span replaced, including repeats of a name found once.
        """
        for raw in texts:
            if len(raw) > MAX_REDACT_CHARS:  # cutting would change the task silently
                raise ValidationError(
                    f"text of {len(raw)} characters is over the gate's {MAX_REDACT_CHARS}",
                    hint="send a shorter task, or the snippets it needs",
                )
        found = [self.find(text) for text in texts]
        found = _spread(texts, found)
        by_text: dict[tuple[str, str], str] = {}
        numbers: Counter[str] = Counter()
        mapping: dict[str, str] = {}
        outputs: list[str] = []
        all_entities: list[Entity] = []
        offset = 0
        for text, entities in zip(texts, found, strict=True):
            pieces: list[str] = []
            cursor = 0
            for e in entities:
                key = (e.type, e.text.lower())
                if key not in by_text:
                    numbers[e.type] += 1
                    # never reuse a placeholder the user typed: restore() would rewrite it
                    while _mentions(texts, f"{e.type}_{numbers[e.type]}"):
                        numbers[e.type] += 1
                    by_text[key] = f"[{e.type}_{numbers[e.type]}]"
                mapping.setdefault(by_text[key], e.text)
                pieces.append(text[cursor : e.start])
                pieces.append(by_text[key])
                cursor = e.end
                all_entities.append(Entity(e.type, e.start + offset, e.end + offset, e.text))
            pieces.append(text[cursor:])
            outputs.append("".join(pieces))
            offset += len(text) + 1
        original_text = "\n".join(texts)
        return outputs, Redaction(original_text, "\n".join(outputs), all_entities, mapping)

    def redact_messages(
        self, messages: Sequence[dict[str, str]]
    ) -> tuple[list[dict[str, str]], Redaction]:
        """Chat messages with every content redacted (roles kept), and the shared mapping."""
        contents, redaction = self.redact_many([m["content"] for m in messages])
        out = [{"role": m["role"], "content": c} for m, c in zip(messages, contents, strict=True)]
        return out, redaction


def _spread(texts: Sequence[str], found: list[list[Entity]]) -> list[list[Entity]]:
    """A name seen once is hidden everywhere, also where the detectors missed it.

    One English word ("Henry", "Sellers") spreads only as written, so the ordinary word
    stays ordinary elsewhere; anything else spreads in any case ("excel systems")."""
    exact: dict[str, str] = {}
    any_case: dict[str, str] = {}
    for entities in found:
        for e in entities:
            if not _PROPAGATES.fullmatch(e.text) or plain(e.text):
                continue
            if " " not in e.text and in_dictionary(e.text.lower()):
                exact.setdefault(e.text, e.type)
            else:
                any_case.setdefault(e.text.lower(), e.type)
            if e.type == "PERSON":  # "Rachel Zheng ... thanks, Rachel"
                for part in e.text.split():
                    if len(part) >= 3 and part.isalpha() and not in_dictionary(part.lower()):
                        any_case.setdefault(part.lower(), e.type)
    extra: list[list[Entity]] = [[] for _ in texts]
    for table, flags in ((exact, 0), (any_case, re.IGNORECASE)):
        if not table:
            continue
        alternatives = "|".join(re.escape(s) for s in sorted(table, key=len, reverse=True))
        pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", flags)
        for i, text in enumerate(texts):
            for m in pattern.finditer(text):
                kind = table[m.group(0) if not flags else m.group(0).lower()]
                extra[i].append(Entity(kind, m.start(), m.end(), m.group(0)))
    return [_resolve(f + x) if x else f for f, x in zip(found, extra, strict=True)]


# --- minimization -----------------------------------------------------------------------


def minimize(
    task: str,
    history: Sequence[dict[str, str]] = (),
    *,
    send_history: bool = False,
    snippets: Sequence[str] = (),
    system: str | None = None,
) -> list[dict[str, str]]:
    """The messages a cloud model receives: the current task (+ needed snippets) only."""
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    if send_history:
        messages.extend({"role": m["role"], "content": m["content"]} for m in history)
    content = task
    if snippets:
        content = "Context:\n" + "\n---\n".join(snippets) + "\n\nTask:\n" + task
    messages.append({"role": "user", "content": content})
    return messages
