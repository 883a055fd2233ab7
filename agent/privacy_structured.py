"""Structured personal data: patterns with validators, so that none of it leaves the device.

E-mail, URLs with a personal path or query and bare domains, IBANs (mod 97), card numbers
(13-19 digits, Luhn), IPv4/IPv6, street addresses and postcodes, phones, national-ID
shapes, long and dash-grouped account or order numbers, last digits of a card, dates of
birth, social handles and usernames, secrets after a cue (``password: ...``), codes
mixing letters and digits. Each detector returns
``(type, start, end)`` spans; :func:`find_structured` runs them in stages over masked text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

Span = tuple[str, int, int]

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'()\[\]]+", re.IGNORECASE)
HANDLE = re.compile(
    r"(?<![\w@])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?\b"  # dots: Instagram
    r"|(?<![\w/])u/[A-Za-z0-9_-]{3,20}\b"
)
#: what follows "username:", "password is", "api key=": a value, whatever it looks like
CUED_VALUE = re.compile(
    r"\b(?P<cue>user ?name|user ?id|login|handle|gamertag|password|passcode|passwd|pwd|pin|"
    r"api[ _-]?key|access[ _-]?token|secret)(?P<sep>\s*(?:is|:|=)\s*|\s+)[\"'“]?"
    r"(?P<value>[^\s\"'”,;]{3,64})",
    re.IGNORECASE,
)
SECRET_CUES = ("password", "passcode", "passwd", "pwd", "pin", "apikey", "accesstoken", "secret")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
CARD_RUN = re.compile(r"(?<![\w-])\d+(?:[ -]\d+)*")
IBAN_RUN = re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]*(?: [A-Z0-9]+)*")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,8}){1,5}(?![\w])"
    r"|(?<![\w+])\+\d{7,15}\b|(?<!\w)\d{10,12}\b"
)
#: US SSN shape; runs of 9 or 13+ digits with no separators (account, policy and national
#: numbers; amounts that long are written with separators, 10-12 digits are phones)
NUMBER_ID = re.compile(
    r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])|(?<![\w.,+])(?:\d{9}|\d{13,})(?![\w]|[.,]\d)"
)
#: Order and reference numbers in dash-separated groups ("114-3941689-8533821")
DASHED_NUMBER = re.compile(r"(?<![\w-])\d{2,}(?:-\d{2,}){1,5}(?![\w-])")
#: The last digits of a card or an account: "ending in 4471", "last four digits are 0932"
LAST_DIGITS = re.compile(
    r"\b(?:ending|ends|ended)\s+(?:in|with)\s+(\d{3,6})\b"
    r"|\blast\s+(?:4|four|3|three|5|five|6|six)\s+(?:digits\s+)?(?:are\s+|is\s+|:\s*)?(\d{3,6})\b",
    re.IGNORECASE,
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
#: A date of birth after its cue ("born 12/03/1988", "DOB: 1990-04-02", "born on 3 May 1985")
BIRTH_DATE = re.compile(
    r"\b(?:born(?:\s+on)?|d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday)"
    r"\s*(?:is|was|:|-)?\s*"
    r"(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}(?:st|nd|rd|th)?\s+" + _MONTH + r",?\s+\d{4}"
    r"|" + _MONTH + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})",
    re.IGNORECASE,
)
DATE_LIKE = re.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}$|^(?:19|20)\d\d[-–](?:19|20)?\d\d$")
STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
    r"|Square|Sq|Terrace|Parkway|Pkwy|Highway|Hwy|Close|Crescent|Row|Alley)"
)
STREET = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][\w'-]*\.?\s+){1,4}" + STREET_SUFFIX + r"\b\.?"
    r"(?:,?\s+(?:Apt|Suite|Unit|Flat)\.?\s*#?\w+)?"
    # typed in lower case: only the suffixes that are not also ordinary words
    r"|\b\d{1,5}[a-z]?,?\s+(?:[a-z][\w'-]*\s+){1,3}"
    r"(?:street|st|avenue|ave|road|rd|blvd|boulevard|lane|drive|crescent|terrace|parkway)\b\.?"
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring)\s+\d{1,4}[a-z]?\b"
    # French, Italian, Spanish, Portuguese: the number comes first, the street word next
    r"|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|boulevard|bd|chemin|allée|impasse|via|"
    r"viale|piazza|calle|avenida|rua|travessa|plaza)\s+(?:[\w'’-]+\s+){0,3}[\w'’-]+"
    r"|\bP\.?\s?O\.?\s+Box\s+\d+\b",
)
#: UK postcodes; a US ZIP only after a state code ("CA 94105"), or it is just a number
POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b|\b[A-Z]{2}\s\d{5}(?:-\d{4})?\b")
DOMAIN = re.compile(
    r"(?<![\w@./-])(?:[a-z0-9-]+\.)+(?:com|org|net|io|co|ai|app|dev|info|biz|me|uk|de|fr|"
    r"paris|in|pk|ru|cn|us|ca|au|edu|gov|shop|store|site|online|tech)\b(?!\.\w)"
    r"(?:/[^\s<>\"'()\[\]]*[^\s<>\"'()\[\].,;:!?])?",  # with a path: "github.com/sam-okafor"
    re.IGNORECASE,
)
CODE_ID = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9][\w-]{5,}(?![\w])|#\d+\b")


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


def _cued_values(t: str) -> list[Span]:
    out: list[Span] = []
    for m in CUED_VALUE.finditer(t):
        cue = re.sub(r"[ _-]", "", m.group("cue").lower())
        value = m.group("value").rstrip(".!?)")
        if not m.group("sep").strip() and not re.search(r"[\d_.@]", value):
            continue  # "login page", "password reset": without ":" or "is", only code shapes
        if value.lower() in ("is", "and", "the", "for", "was", "will", "here", "below"):
            continue
        kind = "SECRET" if cue in SECRET_CUES else "HANDLE"
        out.append((kind, m.start("value"), m.start("value") + len(value)))
    return out


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
    out = [("ADDRESS", m.start(), m.end()) for m in STREET.finditer(t)]
    return out + [("ADDRESS", m.start(), m.end()) for m in POSTCODE.finditer(t)]


def _number_ids(t: str) -> list[Span]:
    return [("ID", m.start(), m.end()) for m in NUMBER_ID.finditer(t)]


def _dashed_ids(t: str) -> list[Span]:
    out: list[Span] = []
    for m in DASHED_NUMBER.finditer(t):
        if len(re.sub(r"\D", "", m.group(0))) >= 10 and not DATE_LIKE.match(m.group(0)):
            out.append(("ID", m.start(), m.end()))
    for m in LAST_DIGITS.finditer(t):
        group = 1 if m.group(1) else 2
        out.append(("ID", m.start(group), m.end(group)))
    return out


def _birth_dates(t: str) -> list[Span]:
    return [("DOB", m.start("date"), m.end("date")) for m in BIRTH_DATE.finditer(t)]


def _is_plain_number(raw: str) -> bool:
    """Thousands groups (1 000 000) and single years are numbers, not phones."""
    return bool(re.fullmatch(r"\d{1,3}(?: \d{3})+", raw)) and not raw.startswith("0")


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
    return out + [
        ("ID", m.start(), m.end())
        for m in CODE_ID.finditer(t)
        if not re.fullmatch(r"\d+(?:-[a-z]+)+", m.group(0))  # "18-year-old", "24-hour"
    ]


#: In order: each stage sees the text with earlier finds masked, so a phone pattern cannot
#: swallow the IP address next to it, and what one stage takes no later stage splits.
STAGES = (
    _emails_urls,
    _domains,
    _cued_values,
    _birth_dates,
    _ibans,
    _cards,
    _ips,
    _addresses,
    _number_ids,
    _phones,
    _dashed_ids,
    _handles_ids,
)
MASK = "\uffff"  # neither a word character nor a space nor a digit


def find_structured(text: str) -> list[Span]:
    """Every structured find in ``text``, none overlapping another."""
    found: list[Span] = []
    masked = text
    for stage in STAGES:
        spans = stage(masked)
        for kind, start, end in spans:
            if MASK not in masked[start:end]:
                found.append((kind, start, end))
        for _kind, start, end in spans:
            masked = masked[:start] + MASK * (end - start) + masked[end:]
    return found
