"""Reading documents into sentence-whole chunks that know where they came from.

Readers turn a file's bytes into *blocks* of text that each start at a known position (a
source line, a PDF page, a DOCX paragraph); the chunker cuts the blocks into passages of
whole sentences and records the line range (or page) each passage covers, which is what a
citation shows. Nothing here writes anywhere: files are read, never copied.

Bad input never crashes a run: every refusal is a :class:`DocumentSkipped` with a short
``reason`` code (``unsupported``, ``binary``, ``encrypted``, ``too_large``, ``unreadable``,
``empty``) and a message for the report.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from bitterbot.protocol.errors import ValidationError

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".log", ".csv"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
TARGET_CHARS = 700  # ~150 word pieces: inside the encoder's window, big enough for context
MAX_CHARS = 1200  # a single sentence longer than this is cut at a space


class DocumentSkipped(ValidationError):
    """A file that is not ingested; ``reason`` is a short stable word for reports."""

    code = "document_skipped"

    def __init__(self, path: Path | str, reason: str, message: str) -> None:
        super().__init__(
            f"{path}: {message}", hint="the file was skipped; the rest of the run continues"
        )
        self.path = str(path)
        self.reason = reason
        self.detail = message


@dataclass(frozen=True)
class Block:
    """Text that begins at ``line`` (a source line, or a paragraph for DOCX) of ``page``."""

    text: str
    line: int = 1
    page: int | None = None


@dataclass(frozen=True)
class TextChunk:
    text: str
    position: dict[str, int]  # {"line_start", "line_end"} or {"page"} (+ lines within it)


@dataclass
class Document:
    path: Path
    kind: str
    sha256: str
    size: int
    blocks: list[Block] = field(default_factory=list)


# --- finding files -------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    path: Path
    explicit: bool  # named on the command line (sniffed as text if the suffix is unknown)


def discover(paths: Iterable[Path | str]) -> Iterator[Candidate | DocumentSkipped]:
    """Files under ``paths`` (folders walked in sorted order, hidden entries skipped)."""
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    child = Path(root) / name
                    if child.suffix.lower() in SUPPORTED_SUFFIXES:
                        yield Candidate(child, explicit=False)
                    else:
                        yield DocumentSkipped(
                            child,
                            "unsupported",
                            f"unsupported file type {child.suffix or '(none)'}",
                        )
        elif path.is_file():
            yield Candidate(path, explicit=True)
        elif path.exists():
            yield DocumentSkipped(path, "unsupported", "not a regular file")
        else:
            yield DocumentSkipped(path, "unreadable", "no such file or folder")


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DocumentSkipped(
                path, "too_large", f"{size} bytes is over the {max_bytes}-byte limit"
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise DocumentSkipped(path, "unreadable", exc.strerror or str(exc)) from exc
    if len(data) > max_bytes:  # grew while we looked
        raise DocumentSkipped(path, "too_large", f"over the {max_bytes}-byte limit")
    return data


def kind_of(path: Path, explicit: bool = True) -> str:
    suffix = path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix == ".pdf":
        return "pdf"
    if suffix == ".docx":
        return "docx"
    if suffix in {".md", ".markdown"}:
        return "markdown"
    if suffix in TEXT_SUFFIXES or explicit:
        return "text"
    raise DocumentSkipped(path, "unsupported", f"unsupported file type {suffix or '(none)'}")


def parse_document(path: Path, data: bytes, kind: str) -> Document:
    """Blocks of ``data`` read as ``kind``; raises :class:`DocumentSkipped` on bad input."""
    if kind == "pdf":
        blocks = _pdf_blocks(path, data)
    elif kind == "docx":
        blocks = _docx_blocks(path, data)
    else:
        text = decode_text(path, data)
        if kind == "html":
            blocks = _html_blocks(text)
        elif kind == "markdown":
            blocks = [Block(_strip_markdown(text))]
        else:
            blocks = [Block(text)]
    if not any(b.text.strip() for b in blocks):
        raise DocumentSkipped(path, "empty", "no text found")
    return Document(path, kind, file_sha256(data), len(data), blocks)


# --- readers -------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(path: Path, data: bytes) -> str:
    if b"\x00" in data[:65536]:
        raise DocumentSkipped(path, "binary", "binary content (NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    sample = text[:65536]
    bad = len(_CONTROL.findall(sample)) + sample.count("\ufffd")
    if sample and bad / len(sample) > 0.01:
        raise DocumentSkipped(path, "binary", "binary content (control characters)")
    return text


_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARK = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?|```.*$)", re.MULTILINE)
_MD_EMPH = re.compile(r"(\*\*|__|`)")


def _strip_markdown(text: str) -> str:
    """Drop markup that hurts matching; never adds or removes a newline (lines stay true)."""
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_MARK.sub("", text)
    return _MD_EMPH.sub("", text)


_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "td", "th", "table", "section", "article",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "header", "footer", "title",
}  # fmt: skip


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._skip = 0
        self._parts: list[str] = []
        self._line = 1

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in {"script", "style", "noscript", "template"}:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "noscript", "template"}:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.flush()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._parts:
            self._line = self.getpos()[0]
            stripped = data.lstrip("\n")  # leading newlines belong before the text's line
            self._line += data.count("\n") - stripped.count("\n")
            data = stripped
        self._parts.append(data)

    def flush(self) -> None:
        text = "".join(self._parts)
        self._parts = []
        if text.strip():
            self.blocks.append(Block(text, self._line))


def _html_blocks(text: str) -> list[Block]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    parser.flush()
    return parser.blocks


def _pdf_blocks(path: Path, data: bytes) -> list[Block]:
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentSkipped(path, "encrypted", "the PDF is encrypted (password needed)")
        blocks = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if text.strip():
                blocks.append(Block(text, 1, page=number))
        return blocks
    except DocumentSkipped:
        raise
    except (
        PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        NotImplementedError,  # an encryption handler pypdf does not implement
        RecursionError,
        OSError,
        zlib.error,
        struct.error,
    ) as exc:
        # pypdf reports malformed files through many exception types (found by fuzzing)
        message = str(exc) or type(exc).__name__
        if "crypt" in message.lower():
            raise DocumentSkipped(path, "encrypted", f"the PDF is encrypted: {message}") from exc
        raise DocumentSkipped(path, "unreadable", f"not a readable PDF: {message}") from exc


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx_blocks(path: Path, data: bytes) -> list[Block]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("word/document.xml")
            if info.file_size > 8 * len(data) + (1 << 20):  # refuse zip bombs
                raise DocumentSkipped(path, "too_large", "document.xml expands too much")
            root = ElementTree.fromstring(archive.read(info))
    except (
        zipfile.BadZipFile,
        KeyError,
        ElementTree.ParseError,
        RuntimeError,  # an encrypted member
        NotImplementedError,  # a compression method zipfile lacks
        ValueError,
        EOFError,
        OSError,
        zlib.error,
        struct.error,
    ) as exc:
        raise DocumentSkipped(path, "unreadable", f"not a readable DOCX: {exc}") from exc
    blocks = []
    for number, para in enumerate(root.iter(f"{_W}p"), start=1):
        text = "".join(t.text or "" for t in para.iter(f"{_W}t"))
        if text.strip():
            blocks.append(Block(text, number))  # "line" is the paragraph number here
    return blocks


# --- chunking ------------------------------------------------------------------------

# a sentence ends after . ! ? (and closing quotes/brackets) plus space, at a blank line, or
# before a line that starts a heading, a table row or a list item
_BOUNDARY = re.compile(
    r"[.!?][\"')\]\u201d\u2019]*\s+|\n[ \t]*\n\s*|\n(?=[ \t]*(?:#|\||[-*+][ \t]|\d+[.)][ \t]))"
)
_SEPARATOR = "\n\n"  # between blocks: a sentence boundary that belongs to no block


def sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _BOUNDARY.finditer(text):
        end = m.end()
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _split_long(start: int, end: int, text: str, max_chars: int) -> Iterator[tuple[int, int]]:
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        if cut <= start:
            cut = start + max_chars
        yield start, cut
        start = cut
    yield start, end


def chunk_blocks(
    blocks: list[Block], target_chars: int = TARGET_CHARS, max_chars: int = MAX_CHARS
) -> list[TextChunk]:
    """Passages of whole sentences (a sentence over ``max_chars`` is cut at a space).

    Passages never span two PDF pages, so a page citation is exact.
    """
    chunks: list[TextChunk] = []
    by_page: dict[int | None, list[Block]] = {}
    for block in blocks:
        by_page.setdefault(block.page, []).append(block)
    for page, page_blocks in by_page.items():
        chunks.extend(_chunk_run(page_blocks, page, target_chars, max_chars))
    return chunks


def _chunk_run(
    blocks: list[Block], page: int | None, target_chars: int, max_chars: int
) -> Iterator[TextChunk]:
    text = _SEPARATOR.join(b.text for b in blocks)
    offsets, off = [], 0
    for b in blocks:
        offsets.append(off)
        off += len(b.text) + len(_SEPARATOR)

    def line_at(pos: int) -> int:
        i = max(0, bisect.bisect_right(offsets, pos) - 1)
        return blocks[i].line + text.count(
            "\n", offsets[i], min(pos, offsets[i] + len(blocks[i].text))
        )

    pieces: list[tuple[int, int]] = []
    for s, e in sentence_spans(text):
        pieces.extend(_split_long(s, e, text, max_chars))

    cur_start, cur_end = -1, -1
    for s, e in pieces:
        if cur_start >= 0 and e - cur_start > target_chars:
            yield _make_chunk(text, cur_start, cur_end, page, line_at)
            cur_start = -1
        if cur_start < 0:
            cur_start = s
        cur_end = e
        # a paragraph ends here: end the passage too once it has some substance
        if (
            e - cur_start >= target_chars // 3
            and text.count("\n", s, e) - text[s:e].rstrip().count("\n") >= 2
        ):
            yield _make_chunk(text, cur_start, cur_end, page, line_at)
            cur_start = -1
    if cur_start >= 0:
        yield _make_chunk(text, cur_start, cur_end, page, line_at)


def _make_chunk(text: str, start: int, end: int, page: int | None, line_at: Any) -> TextChunk:
    raw = text[start:end]
    lead = len(raw) - len(raw.lstrip())
    trail = len(raw.rstrip())
    first, last = line_at(start + lead), line_at(start + max(lead, trail - 1))
    position = {"line_start": first, "line_end": last}
    if page is not None:
        position["page"] = page
    return TextChunk(_tidy(raw), position)


_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANKS = re.compile(r"\n\s*\n\s*")


def _tidy(raw: str) -> str:
    """Runs of spaces collapsed, lines trimmed; paragraph breaks (blank lines) kept."""
    text = "\n".join(line.strip() for line in _SPACES.sub(" ", raw).split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def format_position(position: dict[str, Any]) -> str:
    """``p. 3`` or ``lines 10-14`` (``line 7``) for a citation."""
    if "page" in position:
        return f"p. {position['page']}"
    a, b = position.get("line_start"), position.get("line_end")
    return f"line {a}" if a == b else f"lines {a}-{b}"
