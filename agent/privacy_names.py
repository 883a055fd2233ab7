"""Names of people, organizations and places: word-list heuristics, helped by an NER model.

A capitalized span is a name when one of its words is not an English word ("Zheng",
"Instagram"), when a title or a cue comes before it (``Dr.``, ``my name is``), when it
ends in an organization word (``Ltd``, ``University``), or when the statistical model
(:mod:`bitterbot.agent.privacy_ner`) says so. Without a model the gate cannot tell a
heading ("Customer Support Team") from a company made of English words ("Excel
Systems"), so it hides both; with one it keeps headings of ordinary words the model
does not tag, which is most of what the heuristics over-redacted. Lower-case words
that are not English words ("a home in markham") are hidden too, and so are lower-case
words the model tags. Word lists: ``english-words`` (Webster's 2nd and GCIDE).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bitterbot.agent.privacy_structured import MASK, Span
from bitterbot.protocol.errors import ValidationError

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
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
    act as assume consider continue correct convert give image analyze analyse assess
    identify evaluate discuss elaborate expand shorten simplify proofread fix output input
    instructions context role goal dr prof engr sir madam team all everyone guys folks
    has had was does did goes got having doing its it's he him hers ours theirs whom whose
    username usernames login logins email emails website websites online app apps
    http https www
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
#: Legal forms that make the lower-case words before them a company ("snowflake inc.").
LEGAL_FORMS = frozenset("inc ltd llc plc gmbh corp pvt pty llp sarl srl bv".split())
COMMON_ACRONYMS = frozenset(
    """
    ai api ceo cfo cto coo cv hr it pdf faq seo ok tv pc usb gps html css sql json xml url
    uk eu un us usa diy asap fyi pr ui ux kpi roi b2b b2c smb llm gpt nlp ml iot vr ar
    am pm id pin atm vat gdp nasa bbc cnn ny dc mba phd bsc msc gp md rn q&a r&d
    ssn dob iban bic swift otp sms dm vpn ssh ip dns os ram cpu gpu ssd hdd wifi ios gb mb
    kb eta rsvp hq ngo ps nb etc eg ie vs pwd csv qr sim
    """.split()
)
GREETINGS = frozenset("hi hello hey dear thanks thank cheers regards sincerely bye yo".split())
#: Greeted without being named.
GREETED_GROUPS = frozenset(
    """
    all everyone everybody team there guys folks sir madam friends both again colleagues
    hiring customer customers sirs ladies gentlemen mom dad mum you your so for in very
    mate buddy friend friends world sweetie darling honey babe bro man dude sis boss doc
    people much lot bot chatgpt assistant
    """.split()
)
PLACES = frozenset("uk eu us usa ny dc".split())  # the model may call them places: trust it
#: What a person does right after being named: "Henry commented", "Victor from ... wants".
ACTIONS = frozenset(
    """
    from said says asked asks called calls wants wanted told tells replied replies commented
    wrote writes sent sends mentioned suggested added explained noted agreed joined works
    worked lives lived thinks thought needs needed emailed texted messaged
    """.split()
)
JOINERS = frozenset("of de van von da and & bin al la le del di".split())

WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ][\w'’&.-]*")
#: a lower-case word, also before a possessive ("wendy’s"), not inside a contraction
LOWER_WORD = re.compile(r"(?<![\w'’@#/.-])[a-z][a-zA-Z]{2,}(?=['’]s\b|(?![\w'’@/-]))")
NAME_CUE = re.compile(
    r"\b(?:my name is|i am|i'm|i’m|called|named|name:)\s+([a-z][a-z'-]{1,20})\b", re.IGNORECASE
)
#: "hi rohan," "thanks meera": whoever a lower-case greeting addresses
GREETING_CUE = re.compile(
    r"\b(?i:hi|hello|hey|dear|yo|thanks|thank you|cheers|regards|bye),?[ \t]+"
    r"([a-z][a-z'-]{1,20})\b(?![ \t]+(?:and|&)[ \t]+[a-z]+[ \t]*[,!.])?"
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
NOT_EMPLOYERS = frozenset(
    """
    home night nights weekends weekend school college university hospital office remote
    remotely length scale least most once times startup startups company companies bank
    banks restaurant restaurants store stores firm agency local big small large
    """.split()
)
#: Whoever made, wrote or owns something is named right after "by".
MADE_BY = re.compile(
    r"\b(?:made|developed|written|created|built|owned|founded|run|published|produced|"
    r"designed|acquired|directed|sponsored|led|managed|operated)\s+by\s+$",
    re.IGNORECASE,
)
ALREADY_REDACTED = re.compile(r"<[A-Z_]+>|\[[A-Z]+_\d+\]")


@dataclass(frozen=True)
class Lexicon:
    common: frozenset[str]  # lower-case entries of Webster's 2nd and GCIDE
    headwords: frozenset[str]  # GCIDE headwords (it capitalizes them all), minus names
    known_names: frozenset[str]  # what Webster's capitalizes: proper nouns, lower-cased


@functools.lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The word lists of the ``english-words`` package (about 17 MB, pure Python)."""
    try:
        from english_words import get_english_words_set
    except ImportError as exc:
        raise ValidationError(
            "the privacy gate needs its word lists",
            hint="pip install english-words (a dependency of bitterbot)",
        ) from exc
    webster = get_english_words_set(["web2"], alpha=True)
    gcide = get_english_words_set(["gcide"], alpha=True)
    known_names = frozenset(w.lower() for w in webster if w[:1].isupper())
    common = frozenset(w for w in webster | gcide if w.islower())
    headwords = frozenset(w.lower() for w in gcide) - known_names
    return Lexicon(common, headwords, known_names)


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
    ("est", ""),
    ("iest", "y"),
    ("ier", "y"),
    ("ers", ""),
    ("'s", ""),
    ("n't", ""),
    ("'re", ""),
    ("'ve", ""),
    ("'ll", ""),
    ("'m", ""),
    ("'d", ""),
)


def in_dictionary(word: str) -> bool:
    """A dictionary word, possibly inflected or hyphenated (lower-case input)."""
    word = word.replace("’", "'")
    if word in COMMON_WORDS:
        return True
    if "-" in word.strip("-"):  # "cross-border", "play-to-earn"; not "jean-luc"
        return all(in_dictionary(part) for part in word.split("-") if part)
    common = lexicon().common
    if word in common:
        return True
    for suffix, repl in _SUFFIXES:
        # a stem of two letters only with something put back: "using" -> "use"
        if word.endswith(suffix) and len(word) - len(suffix) >= (2 if repl else 3):
            if word[: -len(suffix)] + repl in common:
                return True
    return False


_BRITISH = (("is", "iz"), ("our", "or"), ("tre", "ter"), ("lled", "led"), ("lling", "ling"))


@functools.lru_cache(maxsize=1)
def foreign_stop_words() -> frozenset[str]:
    """Function words of French, Spanish, German, Italian, Portuguese and Dutch ("les",
    "avec", "und"), so that a query in another language is not a page of names.

    Read from spaCy's ``lang/*/stop_words.py`` files as text: importing them would import
    spaCy and its language classes (seconds, and memory the gate without a model saves).
    Without spaCy installed the set is empty: more foreign words hidden, none leaked."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("spacy")
    if spec is None or spec.origin is None:
        return frozenset()
    words: set[str] = set()
    for lang in ("fr", "es", "de", "it", "pt", "nl"):
        try:
            source = (Path(spec.origin).parent / "lang" / lang / "stop_words.py").read_text("utf-8")
        except OSError:
            continue
        for block in re.findall(r'"""(.*?)"""', source, re.DOTALL):
            words.update(block.split())
    return frozenset(w for w in words if len(w) > 2 and w.isalpha()) - lexicon().known_names


def is_ordinary_word(word: str) -> bool:
    """A lower-case word that names nobody: in the dictionary (inflected, British, or two
    dictionary words joined: "boyfriend"), or a GCIDE headword that is not a name.

    Deliberately not the encoder's WordPiece vocabulary: it holds thousands of names
    ("jamal", "toronto") next to the modern words."""
    if in_dictionary(word) or word in COMMON_ACRONYMS or word in lexicon().headwords:
        return True
    if word.replace("’", "'").split("'")[-1] in foreign_stop_words():  # "d'une", "l'autre"
        return True
    common = lexicon().common
    for british, american in _BRITISH:
        if british in word and in_dictionary(word.replace(british, american)):
            return True
    if word.endswith("er") and (word[:-2] in common or word[:-1] in common):
        return True  # "faster", "nicer": comparatives in lower case
    for suffix in ("ed", "ing", "er", "est"):  # "occurred", "popping"
        stem = word[: -len(suffix) - 1]
        if word.endswith(suffix) and len(stem) >= 2 and word[len(stem)] == stem[-1]:
            if stem in common:
                return True
    return any(word[:i] in common and word[i:] in common for i in range(3, len(word) - 2))


def is_known_name(word: str) -> bool:
    """Webster's lists it capitalized (Frank, Bill, Grace, Bath, Nice)."""
    return word in lexicon().known_names


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
        greeted = False
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


def plain(text: str) -> bool:
    """Only sentence words and common acronyms ("IBAN", "the SSN"): nobody's name."""
    return all(
        (w in COMMON_WORDS or w in COMMON_ACRONYMS) and w not in PLACES
        for w in (w.strip(".,").lower() for w in text.split())
    )


def dull(text: str) -> bool:
    """A model's false find: :func:`plain`, or one English word in lower case ("referral",
    "telehealth"), where the model is least sure."""
    if text.islower() and " " not in text.strip() and is_ordinary_word(text.strip(".,")):
        return True
    return plain(text)


def find_names(text: str, ner: Sequence[Span] | None = None) -> list[Span]:
    """Name spans in ``text``; ``ner`` is the model's name spans, None without a model."""
    return _capitalized_names(text, ner) + _lower_case_names(text, ner)
