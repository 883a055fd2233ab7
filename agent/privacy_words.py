"""Which words are ordinary English and which are names: the privacy gate's word lists.

Webster's 2nd and GCIDE from the ``english-words`` package (about 17 MB, pure Python),
inflections, British spellings and compounds ("boyfriend") of their words, function
words of six other languages, and the small lists of cue words the name heuristics use
(:mod:`bitterbot.agent.privacy_names`). Not the encoder's WordPiece vocabulary: it holds
thousands of names ("jamal", "toronto") next to the modern words.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

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
NOT_EMPLOYERS = frozenset(
    """
    home night nights weekends weekend school college university hospital office remote
    remotely length scale least most once times startup startups company companies bank
    banks restaurant restaurants store stores firm agency local big small large
    """.split()
)


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


def plain(text: str) -> bool:
    """Only sentence words and common acronyms ("IBAN", "the SSN"): nobody's name."""
    return all(
        (w in COMMON_WORDS or w in COMMON_ACRONYMS) and w not in PLACES
        for w in (w.strip(".,").lower() for w in text.split())
    )
