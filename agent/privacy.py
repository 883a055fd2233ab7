"""The privacy gate: what may leave the device, with personal data swapped for placeholders.

Two duties before anything goes to a cloud model:

* **Minimization** (:func:`minimize`): the cloud gets the current task only, plus snippets
  the task needs; the chat history only when the user opted in (``cloud.send_history``).
* **Redaction** (:class:`PrivacyGate`): personal data becomes reversible placeholders such
  as ``[PERSON_1]``; :meth:`Redaction.restore` puts the originals back into the answer the
  user sees. The originals never leave this process.

The detectors are lean on purpose (no spaCy/presidio: about 680 MB installed, too much for
a Raspberry Pi node): regular expressions with validators for structured data (e-mail,
phone, card numbers with Luhn, IBANs with mod 97, IPv4/IPv6, URLs with a path and bare
domains, street addresses, social handles, codes mixing letters and digits), and
heuristics for names: capitalized spans that are not ordinary sentence words, titles
(``Dr.``, ``Ms.``), cues (``my name is``, ``called``), organization words (``Ltd``,
``University``), place prepositions, and lower-case words that are not English words
(word lists of the ``english-words`` package plus the encoder's WordPiece vocabulary). The
heuristics over-redact rather than leak: a name-like word we are not sure about is
replaced. Leakage on PUPA is measured by ``bitterbot bench privacy`` (SPEC.md 7.4).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bitterbot.protocol.errors import ModelError, ValidationError

MAX_REDACT_CHARS = 200_000

# --- structured detectors -----------------------------------------------------------

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'()\[\]]+", re.IGNORECASE)
HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,30}\b")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
CARD_RUN = re.compile(r"(?<![\w-])\d+(?:[ -]\d+)*")
IBAN_RUN = re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]*(?: [A-Z0-9]+)*")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,8}){1,5}(?![\w])"
    r"|(?<![\w+])\+\d{7,15}\b|(?<!\w)\d{10,12}\b"
)
DATE_LIKE = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$|^(?:19|20)\d\d[-–](?:19|20)?\d\d$")
STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
    r"|Square|Sq|Terrace|Parkway|Pkwy|Highway|Hwy|Close|Crescent|Row|Alley)"
)
STREET = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][\w'-]*\.?\s+){1,4}" + STREET_SUFFIX + r"\b\.?"
    r"(?:,?\s+(?:Apt|Suite|Unit|Flat)\.?\s*#?\w+)?"
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring)\s+\d{1,4}[a-z]?\b"
    r"|\bP\.?\s?O\.?\s+Box\s+\d+\b",
)

# --- name heuristics ------------------------------------------------------------------

#: Words that start sentences or get capitalized without naming anyone (lower case).
COMMON_WORDS = frozenset(
    """
    a about above according actually add after again against all also although always am
    an and another any anyone anything are as ask at attached based be because been before
    being below best both but by can cannot check choose compare could create dear define
    describe design develop did do does don't draft during each edit either english even
    every example explain find first following for from generate get give good great
    greetings hello help her here hey hi his how however i i'd i'll i'm i've if imagine
    improve in include introduction is it it's its just kind kindly last let let's list
    make many may maybe me mr mrs ms my new next no not note now of ok okay on once one only
    or other our outline paraphrase please plus pretend prepare provide q question re
    read regards rephrase reply respond revise rewrite same say see she should show since
    so some sorry suggest summarize summary sure table tell thank thanks that the their
    them then there these they this those though thus to today translate true use very
    was we well were what when where which while who why will with would write yes yet you
    your yours subject task answer title step part chapter section hope hopefully also
    sincerely cheers best-regards monday tuesday wednesday thursday friday saturday sunday
    january february march april june july august september october november december
    act as assume consider continue correct convert give image analyze analyse assess
    identify evaluate discuss elaborate expand shorten simplify proofread fix output input
    instructions context role goal dr prof engr sir madam team all everyone guys folks
    has had was does did goes got having doing its it's he him hers ours theirs whom whose
    """.split()
)
TITLES = frozenset("mr mrs ms miss dr prof engr sir madam mx".split())
#: Last words that make a capitalized span an organization.
ORG_WORDS = frozenset(
    """
    inc ltd llc plc gmbh ag sa corp corporation company co group holdings bank university
    college school institute hospital clinic technology technologies systems solutions
    partners associates labs laboratories foundation agency department ministry council
    airline airlines airways motors industries international services consulting media
    studio studios restaurant cafe hotel store shop academy center centre club society
    """.split()
)

WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ][\w'’&.-]*")
LOWER_WORD = re.compile(r"(?<![\w'’@#/.-])[a-z][a-z]{2,}(?![\w'’@/-])")
NAME_CUE = re.compile(
    r"\b(?:my name is|i am|i'm|i’m|called|named|name:)\s+([a-z][a-z'-]{1,20})\b", re.IGNORECASE
)
PLACE_PREPOSITION = re.compile(r"\b(?:in|at|near|from|to|around|visit|visiting)\s*$")
ALREADY_REDACTED = re.compile(r"<[A-Z_]+>|\[[A-Z]+_\d+\]")
DOMAIN = re.compile(
    r"(?<![\w@./-])(?:[a-z0-9-]+\.)+(?:com|org|net|io|co|ai|app|dev|info|biz|me|uk|de|fr|"
    r"paris|in|pk|ru|cn|us|ca|au|edu|gov|shop|store|site|online|tech)\b(?!\.\w)",
    re.IGNORECASE,
)
CODE_ID = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9][\w-]{5,}(?![\w])|#\d+\b")
COMMON_ACRONYMS = frozenset(
    """
    ai api ceo cfo cto coo cv hr it pdf faq seo ok tv pc usb gps html css sql json xml url
    uk eu un us usa diy asap fyi pr ui ux kpi roi b2b b2c smb llm gpt nlp ml iot vr ar
    am pm id pin atm vat gdp nasa bbc cnn ny dc mba phd bsc msc gp md rn q&a r&d
    """.split()
)


@functools.lru_cache(maxsize=1)
def lexicon() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(ordinary lower-case words, proper nouns lower-cased, encoder vocabulary words).

    From the ``english-words`` package (Webster's 2nd and GCIDE lists) and the sentence
    encoder's WordPiece vocabulary, which adds modern words (email, website, online).
    """
    try:
        from english_words import get_english_words_set
    except ImportError as exc:
        raise ValidationError(
            "the privacy gate needs its word lists",
            hint="pip install english-words (a dependency of bitterbot)",
        ) from exc
    words = get_english_words_set(["web2", "gcide"], alpha=True)
    common = frozenset(w for w in words if w.islower())
    proper = frozenset(w.lower() for w in words if w[:1].isupper()) - common
    vocab: frozenset[str] = frozenset()
    try:
        from bitterbot.agent.encoder import model_dir

        lines = (model_dir() / "vocab.txt").read_text(encoding="utf-8").split()
        vocab = frozenset(w for w in lines if w.isalpha() and w.islower())
    except (ModelError, OSError):
        pass  # without the encoder vocabulary more modern words are redacted, none leak
    return common, proper, vocab


_SUFFIXES = (
    ("s", ""),
    ("es", ""),
    ("ies", "y"),
    ("ied", "y"),
    ("ed", ""),
    ("ed", "e"),
    ("d", ""),
    ("ing", ""),
    ("ing", "e"),
    ("ers", ""),
    ("'s", ""),
    ("’s", ""),
    ("n't", ""),
)


def in_dictionary(word: str) -> bool:
    """A dictionary word, possibly inflected (lower-case input)."""
    if word in COMMON_WORDS:
        return True
    common = lexicon()[0]
    if word in common:
        return True
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if word[: -len(suffix)] + repl in common:
                return True
    return False


def is_ordinary_word(word: str) -> bool:
    """An English word that names nobody: in the dictionary, or a common non-proper word."""
    _, proper, vocab = lexicon()
    return in_dictionary(word) or (word in vocab and word not in proper)


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


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _url_is_personal(url: str) -> bool:
    body = re.sub(r"^(?:https?://)?", "", url, flags=re.IGNORECASE).rstrip(".,;:!?")
    host, _, rest = body.partition("/")
    return bool(rest.strip("/")) or "?" in host or "@" in host


Span = tuple[str, int, int]


def _emails_urls(t: str) -> list[Span]:
    out = [("EMAIL", m.start(), m.end()) for m in EMAIL.finditer(t)]
    for m in URL.finditer(t):
        end = m.end()
        while end > m.start() and t[end - 1] in ".,;:!?":
            end -= 1
        if _url_is_personal(t[m.start() : end]):
            out.append(("URL", m.start(), end))
    return out


def _domains(t: str) -> list[Span]:
    return [("URL", m.start(), m.end()) for m in DOMAIN.finditer(t)]


def _valid_prefixes(
    t: str, run: re.Match[str], piece: str, valid: Callable[[str], bool], kind: str
) -> list[Span]:
    """Spans inside ``run`` that ``valid`` accepts, made of whole pieces, longest first.

    Greedy patterns swallow a neighbour ("4111 ... 1111 4111 ...", an IBAN followed by a
    word); trying every start and end at piece boundaries finds each valid one."""
    pieces = [
        (run.start() + m.start(), run.start() + m.end()) for m in re.finditer(piece, run.group(0))
    ]
    out: list[Span] = []
    i = 0
    while i < len(pieces):
        for j in range(min(len(pieces) - 1, i + 19), i - 1, -1):
            if valid(t[pieces[i][0] : pieces[j][1]]):
                out.append((kind, pieces[i][0], pieces[j][1]))
                i = j
                break
        i += 1
    return out


def _card_ok(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ibans(t: str) -> list[Span]:
    out: list[Span] = []
    for run in IBAN_RUN.finditer(t):
        out += _valid_prefixes(t, run, r"[A-Z0-9]+", iban_ok, "IBAN")
    return out


def _cards(t: str) -> list[Span]:
    out: list[Span] = []
    for run in CARD_RUN.finditer(t):
        out += _valid_prefixes(t, run, r"\d+", _card_ok, "CARD")
    return out


def _ips(t: str) -> list[Span]:
    out = [
        ("IP", m.start(), m.end())
        for m in IPV4.finditer(t)
        if all(int(part) <= 255 for part in m.group(0).split("."))
    ]
    for m in IPV6.finditer(t):
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        out.append(("IP", m.start(), m.end()))
    return out


def _addresses(t: str) -> list[Span]:
    return [("ADDRESS", m.start(), m.end()) for m in STREET.finditer(t)]


def _phones(t: str) -> list[Span]:
    out = []
    for m in PHONE.finditer(t):
        raw = m.group(0).strip()
        digits = re.sub(r"\D", "", raw)
        if 7 <= len(digits) <= 15 and not DATE_LIKE.match(raw) and not _is_plain_number(raw):
            out.append(("PHONE", m.start(), m.end()))
    return out


def _handles_ids(t: str) -> list[Span]:
    out = [("HANDLE", m.start(), m.end()) for m in HANDLE.finditer(t)]
    return out + [("ID", m.start(), m.end()) for m in CODE_ID.finditer(t)]


#: In order: each stage sees the text with earlier finds masked, so a phone pattern cannot
#: swallow the IP address next to it, and what one stage takes no later stage splits.
STAGES = (_emails_urls, _domains, _ibans, _cards, _ips, _addresses, _phones, _handles_ids)
_MASK = "\uffff"  # neither a word character nor a space nor a digit


def _structured(text: str) -> list[Entity]:
    found: list[Entity] = []
    masked = text
    for stage in STAGES:
        spans = stage(masked)
        for kind, start, end in spans:
            if _MASK in masked[start:end]:
                continue
            found.append(Entity(kind, start, end, text[start:end]))
        for _kind, start, end in spans:
            masked = masked[:start] + _MASK * (end - start) + masked[end:]
    return found


def _is_plain_number(raw: str) -> bool:
    """Thousands groups (1 000 000) and single years are numbers, not phones."""
    return bool(re.fullmatch(r"\d{1,3}(?: \d{3})+", raw)) and not raw.startswith("0")


def _sentence_start(text: str, pos: int) -> bool:
    before = text[:pos].rstrip(" \t\"'“‘([*-")
    return not before or before[-1] in ".!?:\n;•" or before.endswith("\\n")


def _name_type(words: Sequence[str], text: str, start: int) -> str:
    lowered = [w.rstrip(".,").lower() for w in words]
    if any(w in ORG_WORDS for w in lowered) or any(w in ("&", "and") for w in lowered[1:-1]):
        return "ORG"
    if PLACE_PREPOSITION.search(text[max(0, start - 12) : start]) and len(words) <= 2:
        return "LOCATION"
    return "PERSON"


def _names(text: str) -> list[Entity]:
    """Capitalized spans that are not ordinary words, plus cued lower-case names."""
    found: list[Entity] = []
    tokens = list(WORD.finditer(text))
    i = 0
    while i < len(tokens):
        m = tokens[i]
        word = m.group(0).rstrip(".'’")
        if not word[:1].isupper() or ALREADY_REDACTED.match(text, max(0, m.start() - 1)):
            i += 1
            continue
        # extend over following capitalized words (and joiners like "of", "&", "de")
        j = i
        while j + 1 < len(tokens):
            nxt = tokens[j + 1]
            gap = text[tokens[j].end() : nxt.start()]
            if len(gap) > 2 or "\n" in gap or any(c in gap for c in ',;:()!?"'):
                break
            prev = tokens[j].group(0)
            if prev.endswith(".") and len(prev) > 3 and prev[:-1].lower() not in TITLES:
                break  # "Ltd. Johnny": a sentence ends; "Thomas H. Davenport" goes on
            w = nxt.group(0)
            if w[:1].isupper() or (
                w.lower() in ("of", "de", "van", "von", "da", "and", "&", "bin", "al")
                and j + 2 < len(tokens)
                and tokens[j + 2].group(0)[:1].isupper()
            ):
                j += 1
                continue
            break
        words = [t.group(0).rstrip(".,'’") for t in tokens[i : j + 1]]
        start = m.start()
        # drop leading ordinary words ("The", "Dear", "Explain") but keep titles with the name
        while words and words[0].lower() in COMMON_WORDS and words[0].lower() not in TITLES:
            words.pop(0)
            i += 1
            start = tokens[i].start() if i <= j else start
        if not words or all(w.lower() in TITLES for w in words):
            i = j + 1
            continue
        if len(words) == 1 and len(words[0]) == 1:
            i = j + 1  # "I", "A"
            continue
        if len(words) == 1 and words[0].isupper() and words[0].lower() in COMMON_ACRONYMS:
            i = j + 1  # CEO, PDF, AI: they identify nobody
            continue
        acronym = len(words) == 1 and words[0].isupper()
        if len(words) == 1 and _sentence_start(text, start) and in_dictionary(words[0].lower()):
            i = j + 1  # "Explain ...", "Write ..."
            continue
        end = tokens[j].end()
        while end > start and text[end - 1] in ".'’":
            end -= 1
        kind = "ORG" if acronym else _name_type(words, text, start)
        found.append(Entity(kind, start, end, text[start:end]))
        i = j + 1
    for m in NAME_CUE.finditer(text):
        name = m.group(1)
        if not is_ordinary_word(name.lower()):
            found.append(Entity("PERSON", m.start(1), m.end(1), name))
    for m in LOWER_WORD.finditer(text):  # names typed in lower case: "a home in markham"
        word = m.group(0)
        if not is_ordinary_word(word):
            if not ALREADY_REDACTED.match(text, max(0, m.start() - 1)):
                found.append(Entity("NAME", m.start(), m.end(), word))
    return found


def _resolve(entities: Iterable[Entity]) -> list[Entity]:
    """Drop overlaps: structured detectors first, then longer spans."""
    priority = {"EMAIL": 0, "URL": 0, "IBAN": 1, "CARD": 1, "IP": 2, "ADDRESS": 2, "PHONE": 3}
    chosen: list[Entity] = []
    taken: list[tuple[int, int]] = []
    for e in sorted(entities, key=lambda e: (priority.get(e.type, 5), -(e.end - e.start))):
        if any(e.start < b and a < e.end for a, b in taken):
            continue
        chosen.append(e)
        taken.append((e.start, e.end))
    return sorted(chosen, key=lambda e: e.start)


def _mentions(texts: Sequence[str], token: str) -> bool:
    pattern = re.compile(rf"(?<![A-Za-z]){re.escape(token)}(?!\d)", re.IGNORECASE)
    return any(pattern.search(t) for t in texts)


class PrivacyGate:
    """Finds personal data and swaps it for placeholders; same text, same placeholder."""

    def __init__(self, *, extra_terms: Sequence[str] = (), keep_words: Sequence[str] = ()):
        self.extra_terms = [t for t in extra_terms if t.strip()]
        self.keep_words = {w.lower() for w in keep_words}

    def find(self, text: str) -> list[Entity]:
        found = _structured(text)
        masked = text
        for e in found:  # names are looked for around structured finds, never across them
            masked = masked[: e.start] + _MASK * (e.end - e.start) + masked[e.end :]
        found += [e for e in _names(masked) if e.text.lower() not in self.keep_words]
        for term in self.extra_terms:  # the user's own list: their name, employer, town
            for m in re.finditer(re.escape(term), text, re.IGNORECASE):
                found.append(Entity("CUSTOM", m.start(), m.end(), m.group(0)))
        return _resolve(found)

    def redact(self, text: str) -> Redaction:
        (redacted,), redaction = self.redact_many([text])
        return redaction

    def redact_many(self, texts: Sequence[str]) -> tuple[list[str], Redaction]:
        """Redact several texts (e.g. chat messages) with one shared set of placeholders.

        The returned :class:`Redaction` describes the texts joined by newlines.
        """
        by_text: dict[tuple[str, str], str] = {}
        numbers: Counter[str] = Counter()
        mapping: dict[str, str] = {}
        outputs: list[str] = []
        all_entities: list[Entity] = []
        offset = 0
        for raw in texts:
            if len(raw) > MAX_REDACT_CHARS:  # cutting would change the task silently
                raise ValidationError(
                    f"text of {len(raw)} characters is over the gate's {MAX_REDACT_CHARS}",
                    hint="send a shorter task, or the snippets it needs",
                )
            text = raw
            entities = self.find(text)
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
        # a name seen once is hidden everywhere, also where the heuristics missed it
        for (_kind, original), placeholder in sorted(
            by_text.items(), key=lambda kv: -len(kv[0][1])
        ):
            if len(original) >= 3 and original.isalpha():
                pattern = re.compile(rf"(?<!\w){re.escape(original)}(?!\w)", re.IGNORECASE)
                outputs = [pattern.sub(placeholder, out) for out in outputs]
        original_text = "\n".join(texts)
        return outputs, Redaction(original_text, "\n".join(outputs), all_entities, mapping)

    def redact_messages(
        self, messages: Sequence[dict[str, str]]
    ) -> tuple[list[dict[str, str]], Redaction]:
        """Chat messages with every content redacted (roles kept), and the shared mapping."""
        contents, redaction = self.redact_many([m["content"] for m in messages])
        out = [{"role": m["role"], "content": c} for m, c in zip(messages, contents, strict=True)]
        return out, redaction


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


# --- measurement ------------------------------------------------------------------------


def leakage(rows: Iterable[tuple[str, Sequence[str]]], gate: PrivacyGate) -> dict[str, float | int]:
    """PAPILLON's leakage: share of labelled private units still in the redacted text.

    Units shorter than 2 characters and units that are already placeholders
    (``<PRESIDIO_ANONYMIZED_...>``) are not counted. ``leakage`` matches anywhere
    (case-insensitive, as the paper does); ``leakage_words`` only at word boundaries.
    ``redacted_share`` is the share of the input's characters replaced (the cost side).
    """
    total = leaked = leaked_words = 0
    chars = replaced = 0
    for text, units in rows:
        red = gate.redact(text)
        low = red.redacted.lower()
        chars += len(text)
        replaced += sum(e.end - e.start for e in red.entities)
        for unit in {u.strip().lower() for u in units}:
            if len(unit) < 2 or "presidio_anonymized" in unit:
                continue
            total += 1
            leaked += unit in low
            leaked_words += bool(re.search(rf"(?<!\w){re.escape(unit)}(?!\w)", low))
    return {
        "units": total,
        "leakage": round(leaked / total, 4) if total else 0.0,
        "leakage_words": round(leaked_words / total, 4) if total else 0.0,
        "redacted_share": round(replaced / chars, 4) if chars else 0.0,
    }
