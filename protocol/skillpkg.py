"""Skill packages: deterministic archives, content IDs, publisher signatures, verification.

A package file (``NAME-VERSION.bbskill``) is one canonical msgpack map::

    {"v": 1, "format": "bitterbot-skill", "archive": bin, "sig": envelope | nil}

``archive`` is a POSIX ustar archive of the skill folder's regular files, written
deterministically: entries sorted by path, mtime 0, uid/gid 0, empty owner names, mode
0644, no directory entries. Packing the same folder always gives the same bytes.

The package ID is the CIDv1 (multibase base32, codec ``raw`` 0x55, multihash sha2-256) of
the archive bytes, e.g. ``bafkrei...``. ``sig`` is a signed envelope of kind
``skill.manifest`` whose payload pins the archive::

    {"id": str (the CID), "size": int, "name": str, "version": str}

Verification (:func:`verify_package`) checks, in order and before any file is used: the
outer size limit, the container shape, the signature, that the archive hashes to ``id``,
the archive's paths (no absolute paths, ``..``, links, devices or duplicates), per-file and
total size limits, that ``SKILL.md`` and ``bitterbot.toml`` parse, that name and version
match the signed payload, and that a ``publisher`` written in the manifest is the signer.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from typing import Any

from .codec import decode, encode, encode_uvarint, expect_map
from .envelope import Envelope, from_obj, seal
from .errors import DecodeError, SignatureError, TooLargeError, UnknownVersionError, ValidationError
from .identity import Identity, encode_key
from .skill_manifest import (
    MANIFEST_FILE,
    SKILL_FILE,
    Manifest,
    SkillDoc,
    check_archive_path,
    parse_manifest,
    parse_skill_md,
)

FORMAT = "bitterbot-skill"
VERSION = 1
SIG_KIND = "skill.manifest"
PACKAGE_SUFFIX = ".bbskill"


@dataclass(frozen=True)
class Limits:
    """Size limits checked before anything is unpacked (the node's settings feed these)."""

    max_package_bytes: int = 64 * 1024 * 1024
    max_file_bytes: int = 48 * 1024 * 1024
    max_files: int = 256


# --- content IDs ----------------------------------------------------------------------

_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _base32(data: bytes) -> str:
    bits, value, out = 0, 0, []
    for byte in data:
        value = (value << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append(_B32[(value >> bits) & 31])
    if bits:
        out.append(_B32[(value << (5 - bits)) & 31])
    return "".join(out)


def content_id(data: bytes) -> str:
    """CIDv1, raw codec, sha2-256 multihash, multibase base32 (``b`` prefix)."""
    digest = hashlib.sha256(data).digest()
    cid = (
        encode_uvarint(1)
        + encode_uvarint(0x55)
        + encode_uvarint(0x12)
        + encode_uvarint(len(digest))
        + digest
    )
    return "b" + _base32(cid)


def is_content_id(text: str) -> bool:
    return (
        isinstance(text, str)
        and len(text) == 59
        and text.startswith("bafkrei")
        and all(c in _B32 for c in text[1:])
    )


# --- deterministic archive --------------------------------------------------------------


def pack_archive(files: dict[str, bytes]) -> bytes:
    """A deterministic ustar archive of ``files`` (path -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(files, key=lambda p: p.encode("utf-8")):
            check_archive_path(path)
            data = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack_archive(archive: bytes, limits: Limits) -> dict[str, bytes]:
    """Read an archive, refusing anything but plain files at safe relative paths."""
    if len(archive) > limits.max_package_bytes:
        raise TooLargeError(f"archive of {len(archive)} bytes is over {limits.max_package_bytes}")
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_files:
                    raise TooLargeError(f"archive has more than {limits.max_files} entries")
                name = member.name
                check_archive_path(name)
                if not member.isreg():
                    what = "link" if member.issym() or member.islnk() else "special file"
                    raise ValidationError(
                        f"archive entry {name!r} is a {what}; only regular files are allowed",
                        code="bad_archive_path",
                    )
                if name in files:
                    raise ValidationError(f"archive entry {name!r} appears twice")
                if member.size > limits.max_file_bytes:
                    raise TooLargeError(f"{name!r} is {member.size} bytes, over the file limit")
                total += member.size
                if total > limits.max_package_bytes:
                    raise TooLargeError("archive content is over the package size limit")
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - regular files always have data
                    raise ValidationError(f"archive entry {name!r} has no data")
                files[name] = handle.read()
    except tarfile.TarError as exc:
        raise DecodeError(f"not a valid skill archive: {exc}") from exc
    return files


# --- package container ------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A package file's parts; nothing verified yet."""

    archive: bytes
    sig: dict[str, Any] | None

    @property
    def id(self) -> str:
        return content_id(self.archive)

    def to_bytes(self) -> bytes:
        return encode({"v": VERSION, "format": FORMAT, "archive": self.archive, "sig": self.sig})


def read_package(data: bytes, limits: Limits | None = None) -> Package:
    limits = limits or Limits()
    obj = decode(data, max_size=limits.max_package_bytes + 4096)
    m = expect_map(obj, "skill package", {"v": int, "format": str, "archive": bytes})
    if m["format"] != FORMAT:
        raise DecodeError(f"not a skill package (format {m['format']!r})")
    if m["v"] != VERSION:
        raise UnknownVersionError(f"skill package version {m['v']} is not supported")
    sig = m.get("sig")
    if sig is not None and not isinstance(sig, dict):
        raise DecodeError("skill package: sig must be a map or nil")
    return Package(m["archive"], sig)


@dataclass(frozen=True)
class SkillFiles:
    """A folder's files split into the parsed parts every skill has."""

    files: dict[str, bytes]
    doc: SkillDoc
    manifest: Manifest


def load_files(files: dict[str, bytes]) -> SkillFiles:
    if SKILL_FILE not in files:
        raise ValidationError(
            f"the skill has no {SKILL_FILE}", hint="run: bitterbot skill new NAME"
        )
    doc = parse_skill_md(files[SKILL_FILE])
    manifest = parse_manifest(doc, files.get(MANIFEST_FILE))
    for ref, what in ((manifest.entry, "entry"), (manifest.model, "model")):
        if ref is not None and ref not in files:
            raise ValidationError(f"{MANIFEST_FILE}: {what} {ref!r} is not in the package")
    return SkillFiles(files, doc, manifest)


def build_package(files: dict[str, bytes]) -> Package:
    """An unsigned package of ``files`` (validated first, so a broken skill never packs)."""
    load_files(files)
    return Package(pack_archive(files), None)


def sign_package(
    pkg: Package, identity: Identity, now_ms: int, limits: Limits | None = None
) -> Package:
    skill = load_files(unpack_archive(pkg.archive, limits or Limits()))
    man = skill.manifest
    if man.publisher is not None and man.publisher != identity.public_key:
        raise ValidationError(
            f"{MANIFEST_FILE} names publisher {encode_key(man.publisher)}, "
            f"but the signing key is {encode_key(identity.public_key)}",
            hint="sign with that key, or fix publisher = in bitterbot.toml",
        )
    payload = {"id": pkg.id, "size": len(pkg.archive), "name": man.name, "version": man.version}
    env = seal(SIG_KIND, payload, identity, now_ms)
    return Package(pkg.archive, env.to_obj())


@dataclass(frozen=True)
class VerifiedPackage:
    id: str
    publisher: bytes
    signed_at_ms: int
    skill: SkillFiles
    package: Package

    @property
    def manifest(self) -> Manifest:
        return self.skill.manifest


def verify_package(data: bytes, limits: Limits | None = None) -> VerifiedPackage:
    """Verify a package file completely (see the module docstring). Runs no code."""
    limits = limits or Limits()
    if len(data) > limits.max_package_bytes + 4096:
        raise TooLargeError(
            f"package of {len(data)} bytes is over the limit of {limits.max_package_bytes}",
            hint="raise skills.max_package_bytes if you trust it",
        )
    pkg = read_package(data, limits)
    if pkg.sig is None:
        raise SignatureError("the package is not signed", hint="run: bitterbot skill sign PATH")
    env: Envelope = from_obj(pkg.sig, kinds={SIG_KIND})
    payload = expect_map(
        env.payload, "skill signature", {"id": str, "size": int, "name": str, "version": str}
    )
    actual = pkg.id
    if payload["id"] != actual or payload["size"] != len(pkg.archive):
        raise SignatureError(
            "the package content does not match its signature (tampered or corrupted)",
            hint="download it again from its publisher",
            code="hash_mismatch",
        )
    skill = load_files(unpack_archive(pkg.archive, limits))
    man = skill.manifest
    if man.name != payload["name"] or man.version != payload["version"]:
        raise SignatureError("the signed name or version differs from the manifest")
    if man.publisher is not None and man.publisher != env.signer:
        raise SignatureError(
            f"the manifest names publisher {encode_key(man.publisher)} but the package is "
            f"signed by {encode_key(env.signer)}",
            hint="do not install it: someone else signed this skill",
            code="wrong_publisher",
        )
    return VerifiedPackage(actual, env.signer, env.ts, skill, pkg)
