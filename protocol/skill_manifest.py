"""Skill manifests: the Agent Skills ``SKILL.md`` plus Bitterbot's ``bitterbot.toml``.

A skill folder holds ``SKILL.md`` (YAML front matter ``name``, ``description``, optional
``license`` and ``metadata``; a Markdown body that is the prompt) and, for Bitterbot skills,
``bitterbot.toml``::

    version = "1.2.0"                 # semver, monotonic per (publisher, name)
    publisher = "ed25519:..."         # optional; when present must equal the signer
    price = 0                         # integer, smallest unit of the payment currency
    entry = "skill.wasm"              # optional wasm32-wasi module (else: prompt-only)
    model = "model.gguf"              # optional bundled GGUF model
    examples = ["what is 2+2", ...]   # example utterances for the router
    tags = ["math"]

    [permissions]
    llm_tokens = 0                    # token budget for local LLM generation per run
    docs = false                      # document search
    files = "none"                    # "none" | "read" | "write": folders the user grants
    net = []                          # host names an HTTP fetch may reach

Everything here is pure: functions take bytes, return values or raise our errors.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import ValidationError
from .identity import decode_key

SKILL_FILE = "SKILL.md"
MANIFEST_FILE = "bitterbot.toml"
MAX_SKILL_MD_BYTES = 256 * 1024
MAX_MANIFEST_BYTES = 64 * 1024
MAX_EXAMPLES = 64
MAX_EXAMPLE_LEN = 300
MAX_TAGS = 16
MAX_NET_HOSTS = 16
MAX_LLM_TOKENS = 65536
MAX_NAME_CHARS = 64  # the name is an identifier (catalogs, DHT keys): no leeway
# Agent Skills limits of free-text fields. Real clients load skills past them, so past them
# is a warning; the hard limits (well above) are what a hostile file meets.
SPEC_DESCRIPTION_CHARS, HARD_DESCRIPTION_CHARS = 1024, 8192
SPEC_COMPATIBILITY_CHARS, HARD_COMPATIBILITY_CHARS = 500, 4096
FILE_MODES = ("none", "read", "write")

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_HOST = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_TAG = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


# --- semver -------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int, int, tuple[tuple[int, int | str], ...]]:
    """A sortable key for a semver string; raises :class:`ValidationError` if invalid.

    A pre-release sorts before its release (``1.0.0-rc.1 < 1.0.0``); numeric identifiers
    sort numerically and before alphanumeric ones, as semver 2.0 says.
    """
    m = _SEMVER.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValidationError(
            f"version {text!r} is not semver", hint="use MAJOR.MINOR.PATCH, e.g. 1.0.0"
        )
    pre: tuple[tuple[int, int | str], ...]
    if m.group(4) is None:
        pre = ((2, 0),)  # a release sorts after every pre-release
    else:
        parts: list[tuple[int, int | str]] = []
        for ident in m.group(4).split("."):
            parts.append((0, int(ident)) if ident.isdigit() else (1, ident))
        pre = tuple(parts)
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre


def compare_versions(a: str, b: str) -> int:
    ka, kb = parse_version(a), parse_version(b)
    return (ka > kb) - (ka < kb)


# --- invisible Unicode ----------------------------------------------------------------


def reveal_invisible(text: str) -> str:
    """Make invisible and direction-changing characters visible as ``<U+XXXX NAME>``.

    Covers format characters (zero-width spaces and joiners, bidi embeddings, overrides and
    isolates, the BOM, Unicode tags U+E0000..E007F), other control characters except
    newline and tab, unassigned and private-use code points. Used on consent screens so a
    prompt cannot hide instructions from the user who approves it.
    """
    out: list[str] = []
    for ch in text:
        cat = unicodedata.category(ch)
        hidden = cat in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp") or (cat == "Zs" and ch != " ")
        if ch in "\n\t" or not hidden:
            out.append(ch)
            continue
        name = unicodedata.name(ch, "")
        out.append(f"<U+{ord(ch):04X}{' ' + name if name else ''}>")
    return "".join(out)


def has_invisible(text: str) -> bool:
    return reveal_invisible(text) != text


# --- SKILL.md -----------------------------------------------------------------------


@dataclass(frozen=True)
class SkillDoc:
    """A parsed ``SKILL.md``: front matter fields and the Markdown body (the prompt)."""

    name: str
    description: str
    body: str
    license: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    compatibility: str | None = None
    #: what a strict reader of the Agent Skills spec would refuse but real clients accept
    warnings: tuple[str, ...] = ()


def _within(value: str, field_name: str, spec: int, hard: int, warnings: list[str]) -> None:
    if len(value) > hard:
        raise ValidationError(
            f"{SKILL_FILE}: {field_name} is {len(value)} characters, over the limit of {hard}",
            hint=f"shorten it (the Agent Skills spec asks for at most {spec})",
        )
    if len(value) > spec:
        warnings.append(
            f"{field_name} is {len(value)} characters; the Agent Skills spec asks for at most "
            f"{spec} (accepted, as other clients do)"
        )


def parse_skill_md(data: bytes) -> SkillDoc:
    if len(data) > MAX_SKILL_MD_BYTES:
        raise ValidationError(
            f"{SKILL_FILE} is {len(data)} bytes, over the limit of {MAX_SKILL_MD_BYTES}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{SKILL_FILE} is not UTF-8") from exc
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text.startswith("---\n"):
        raise ValidationError(
            f"{SKILL_FILE} has no YAML front matter",
            hint="start the file with ---, then name: and description:, then ---",
        )
    end = text.find("\n---", 4)
    if end < 0:
        raise ValidationError(f"{SKILL_FILE}: front matter is not closed by ---")
    head, body = text[4:end], text[end + 4 :]
    body = body.split("\n", 1)[1] if "\n" in body else ""
    try:
        meta = yaml.safe_load(head)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{SKILL_FILE}: front matter is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValidationError(f"{SKILL_FILE}: front matter must be a mapping")
    warnings: list[str] = []
    name, desc = meta.get("name"), meta.get("description")
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME_CHARS:
        raise ValidationError(
            f"{SKILL_FILE}: name {name!r} is invalid",
            hint="lower-case letters, digits and single hyphens, at most 64 characters",
        )
    if not isinstance(desc, str) or not desc.strip():
        raise ValidationError(
            f"{SKILL_FILE}: description is missing or empty",
            hint="say in description: what the skill does and when to use it",
        )
    desc = desc.strip()
    _within(desc, "description", SPEC_DESCRIPTION_CHARS, HARD_DESCRIPTION_CHARS, warnings)
    lic = meta.get("license")
    if lic is not None and not isinstance(lic, str):
        raise ValidationError(f"{SKILL_FILE}: license must be a string")
    compat = meta.get("compatibility")
    if compat is not None:
        if not isinstance(compat, str):
            raise ValidationError(f"{SKILL_FILE}: compatibility must be a string")
        _within(
            compat, "compatibility", SPEC_COMPATIBILITY_CHARS, HARD_COMPATIBILITY_CHARS, warnings
        )
    raw_md = meta.get("metadata") or {}
    if not isinstance(raw_md, dict):
        raise ValidationError(f"{SKILL_FILE}: metadata must be a mapping")
    metadata = {str(k): str(v) for k, v in raw_md.items()}
    return SkillDoc(name, desc, body, lic, metadata, compat, tuple(warnings))


# --- bitterbot.toml -------------------------------------------------------------------


@dataclass(frozen=True)
class Permissions:
    llm_tokens: int = 0
    docs: bool = False
    files: str = "none"
    net: tuple[str, ...] = ()

    def to_obj(self) -> dict[str, Any]:
        return {
            "llm_tokens": self.llm_tokens,
            "docs": self.docs,
            "files": self.files,
            "net": list(self.net),
        }

    def is_empty(self) -> bool:
        return self == Permissions()

    def within(self, other: Permissions) -> bool:
        """True if every right in ``self`` is also in ``other``."""
        order = FILE_MODES.index
        return (
            self.llm_tokens <= other.llm_tokens
            and (not self.docs or other.docs)
            and order(self.files) <= order(other.files)
            and set(self.net) <= set(other.net)
        )

    def describe(self) -> list[str]:
        lines = []
        if self.llm_tokens:
            lines.append(
                f"generate text with your local model (up to {self.llm_tokens} tokens a run)"
            )
        if self.docs:
            lines.append("search your indexed documents")
        if self.files == "read":
            lines.append("read files in folders you grant")
        elif self.files == "write":
            lines.append("read AND WRITE files in folders you grant")
        for host in self.net:
            lines.append(f"fetch web pages from {host} over HTTPS/HTTP")
        return lines or ["nothing: no files, no network, no model, no documents"]


def permissions_from_obj(obj: Any) -> Permissions:
    if obj is None:
        return Permissions()
    if not isinstance(obj, dict):
        raise ValidationError("permissions must be a table")
    unknown = set(obj) - {"llm_tokens", "docs", "files", "net"}
    if unknown:
        raise ValidationError(
            f"unknown permissions {sorted(unknown)}",
            hint="known: llm_tokens, docs, files, net",
        )
    tokens = obj.get("llm_tokens", 0)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 <= tokens <= MAX_LLM_TOKENS:
        raise ValidationError(f"permissions.llm_tokens must be an integer 0..{MAX_LLM_TOKENS}")
    docs = obj.get("docs", False)
    if not isinstance(docs, bool):
        raise ValidationError("permissions.docs must be true or false")
    files = obj.get("files", "none")
    if files not in FILE_MODES:
        raise ValidationError(f"permissions.files must be one of {', '.join(FILE_MODES)}")
    net = obj.get("net", [])
    if not isinstance(net, list) or len(net) > MAX_NET_HOSTS:
        raise ValidationError(f"permissions.net must be a list of at most {MAX_NET_HOSTS} hosts")
    hosts: list[str] = []
    for host in net:
        if not isinstance(host, str) or not _HOST.match(host) or host.replace(".", "").isdigit():
            raise ValidationError(
                f"permissions.net: {host!r} is not a host name",
                hint="list DNS names like api.example.com; IP addresses are not allowed",
            )
        hosts.append(host)
    return Permissions(tokens, docs, files, tuple(sorted(set(hosts))))


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    version: str
    price: int = 0
    publisher: bytes | None = None
    entry: str | None = None
    model: str | None = None
    examples: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    permissions: Permissions = field(default_factory=Permissions)
    license: str | None = None

    @property
    def kind(self) -> str:
        return "wasm" if self.entry else "prompt"

    def to_obj(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "price": self.price,
            "entry": self.entry,
            "model": self.model,
            "examples": list(self.examples),
            "tags": list(self.tags),
            "permissions": self.permissions.to_obj(),
            "license": self.license,
            "kind": self.kind,
        }


def _rel_path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must be a relative file path")
    check_archive_path(value)
    return value


def parse_manifest(doc: SkillDoc, data: bytes | None) -> Manifest:
    """Combine a parsed ``SKILL.md`` with ``bitterbot.toml`` bytes (None: a plain skill).

    A plain Agent Skills folder (no ``bitterbot.toml``) becomes a prompt-only skill,
    version 0.0.0, price 0, no permissions.
    """
    if data is None:
        return Manifest(doc.name, doc.description, "0.0.0", license=doc.license)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValidationError(f"{MANIFEST_FILE} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        obj = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"{MANIFEST_FILE} is not valid TOML: {exc}") from exc
    known = {"version", "publisher", "price", "entry", "model", "examples", "tags", "permissions"}
    unknown = set(obj) - known
    if unknown:
        raise ValidationError(f"{MANIFEST_FILE}: unknown keys {sorted(unknown)}")
    version = obj.get("version")
    if not isinstance(version, str):
        raise ValidationError(f"{MANIFEST_FILE}: version is required (semver string)")
    parse_version(version)
    price = obj.get("price", 0)
    if isinstance(price, bool) or not isinstance(price, int) or not 0 <= price < 2**63:
        raise ValidationError(
            f"{MANIFEST_FILE}: price must be a non-negative integer (smallest currency unit)"
        )
    publisher = None
    if obj.get("publisher"):
        publisher = decode_key(str(obj["publisher"]))
    entry = _rel_path(obj["entry"], "entry") if obj.get("entry") else None
    if entry is not None and not entry.endswith(".wasm"):
        raise ValidationError(f"{MANIFEST_FILE}: entry must be a .wasm file")
    model = _rel_path(obj["model"], "model") if obj.get("model") else None
    if model is not None and not model.endswith(".gguf"):
        raise ValidationError(f"{MANIFEST_FILE}: model must be a .gguf file")
    examples = obj.get("examples", [])
    if (
        not isinstance(examples, list)
        or len(examples) > MAX_EXAMPLES
        or not all(isinstance(e, str) and 0 < len(e) <= MAX_EXAMPLE_LEN for e in examples)
    ):
        raise ValidationError(
            f"{MANIFEST_FILE}: examples must be at most {MAX_EXAMPLES} strings of 1..{MAX_EXAMPLE_LEN} characters"
        )
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise ValidationError(f"{MANIFEST_FILE}: tags must be a list of at most {MAX_TAGS}")
    for tag in tags:
        if not isinstance(tag, str) or not _TAG.match(tag):
            raise ValidationError(f"{MANIFEST_FILE}: tag {tag!r} is invalid (lower-case words)")
    perms = permissions_from_obj(obj.get("permissions"))
    return Manifest(
        name=doc.name,
        description=doc.description,
        version=version,
        price=price,
        publisher=publisher,
        entry=entry,
        model=model,
        examples=tuple(examples),
        tags=tuple(tags),
        permissions=perms,
        license=doc.license,
    )


def check_archive_path(path: str) -> None:
    """Refuse absolute paths, ``..``, empty or odd components, backslashes and controls."""
    if (
        not path
        or len(path) > 255
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(unicodedata.category(c).startswith("C") for c in path)
    ):
        raise ValidationError(f"archive path {path!r} is not allowed", code="bad_archive_path")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValidationError(f"archive path {path!r} is not allowed", code="bad_archive_path")
