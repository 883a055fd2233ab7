"""Installed skills: install (verify, consent, grants, versions), import, remove, run.

:class:`SkillManager` keeps each installed skill's files in ``<root>/<package id>/`` and its
record in a store-like object (:class:`SkillRecords`; the node passes an LMDB one from
``bitterbot.node.skills_store``, tests and the agent alone can use :class:`MemoryRecords`).

Installing runs no code: the package is verified (``protocol.skillpkg.verify_package``),
the version checked against the highest one ever installed from that publisher (rollback
protection survives ``remove``), the user shown the permissions and the prompt with
invisible characters made visible, and only then are files written. Grants are exactly
what was shown and accepted. An update that changes the permissions or the prompt asks
again; an update that does neither keeps the grant.

Running: prompt-only skills render their ``SKILL.md`` body as a template for the local
model (no capabilities at all); WASM skills run in :class:`~bitterbot.agent.sandbox.Sandbox`
with the granted capabilities only, on a worker thread behind a limiter.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from bitterbot.agent.capabilities import Capabilities, NetPolicy
from bitterbot.agent.sandbox import FolderGrant, RunResult, Sandbox, SandboxLimits
from bitterbot.protocol.errors import (
    NotFoundError,
    SandboxViolation,
    SkillError,
    StaleError,
    ValidationError,
)
from bitterbot.protocol.identity import encode_key
from bitterbot.protocol.skill_manifest import (
    MANIFEST_FILE,
    SKILL_FILE,
    Manifest,
    Permissions,
    compare_versions,
    parse_skill_md,
    permissions_from_obj,
    reveal_invisible,
)
from bitterbot.protocol.skillpkg import (
    Limits,
    SkillFiles,
    content_id,
    load_files,
    pack_archive,
    verify_package,
)

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN_PUBLISHER = "builtin"
IMPORTED_PUBLISHER = "local-import"
MAX_FOLDER_FILES = 256

GenerateFn = Callable[[str, int], "str | Awaitable[str]"]
SearchFn = Callable[[str, int], "list[dict[str, Any]] | Awaitable[list[dict[str, Any]]]"]


class SkillRecords(Protocol):
    """Where installed-skill records and highest versions live (LMDB in a node)."""

    def get(self, name: str) -> dict[str, Any] | None: ...
    def put(self, name: str, record: dict[str, Any]) -> None: ...
    def delete(self, name: str) -> bool: ...
    def all(self) -> list[dict[str, Any]]: ...
    def highest_version(self, publisher: str, name: str) -> str | None: ...
    def set_highest_version(self, publisher: str, name: str, version: str) -> None: ...


class MemoryRecords:
    """Records in a dict: for the agent without a node, and for tests above this layer."""

    def __init__(self) -> None:
        self._skills: dict[str, dict[str, Any]] = {}
        self._versions: dict[tuple[str, str], str] = {}

    def get(self, name: str) -> dict[str, Any] | None:
        return self._skills.get(name)

    def put(self, name: str, record: dict[str, Any]) -> None:
        self._skills[name] = record

    def delete(self, name: str) -> bool:
        return self._skills.pop(name, None) is not None

    def all(self) -> list[dict[str, Any]]:
        return [self._skills[k] for k in sorted(self._skills)]

    def highest_version(self, publisher: str, name: str) -> str | None:
        return self._versions.get((publisher, name))

    def set_highest_version(self, publisher: str, name: str, version: str) -> None:
        self._versions[(publisher, name)] = version


@dataclass(frozen=True)
class ConsentRequest:
    """What the user is asked to approve; :meth:`text` is the screen shown."""

    manifest: Manifest
    publisher: str
    prompt: str
    is_update: bool
    changes: tuple[str, ...]
    warnings: tuple[str, ...] = ()  # past the Agent Skills spec, accepted (SkillDoc.warnings)

    def text(self) -> str:
        m = self.manifest
        head = f"{'Update' if self.is_update else 'Install'} skill {m.name} {m.version}"
        lines = [head, f"publisher: {self.publisher}", f"kind: {m.kind}", f"price: {m.price}"]
        if self.changes:
            lines.append("changed since you last approved it: " + ", ".join(self.changes))
        lines += [f"note: {w}" for w in self.warnings]
        lines.append("it may:")
        lines += [f"  - {line}" for line in m.permissions.describe()]
        lines.append("prompt (SKILL.md), invisible characters shown as <U+...>:")
        lines.append("-" * 60)
        lines.append(reveal_invisible(self.prompt))
        lines.append("-" * 60)
        return "\n".join(lines)


Consent = Callable[[ConsentRequest], bool]


def accept_declared(_request: ConsentRequest) -> bool:
    """``--yes``: accept exactly what the skill declares (the grant equals the declaration)."""
    return True


@dataclass
class SkillOutput:
    name: str
    kind: str
    text: str
    exit_code: int = 0
    stderr: str = ""
    elapsed_ms: float = 0.0
    tokens_used: int = 0
    fuel_used: int = 0


def read_folder(path: Path, *, skip_scripts: bool = False) -> dict[str, bytes]:
    """A skill folder's regular files (dotfiles skipped, symlinks refused), for packing."""
    root = Path(path)
    if not (root / SKILL_FILE).is_file():
        raise NotFoundError(f"{root} has no {SKILL_FILE}", hint="is this a skill folder?")
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if skip_scripts and rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != "scripts"]
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                raise ValidationError(f"{Path(dirpath) / d} is a symlink; skills hold plain files")
        for fname in sorted(filenames):
            if fname.startswith(".") or fname.endswith(".bbskill"):
                continue
            full = Path(dirpath) / fname
            if full.is_symlink() or not full.is_file():
                raise ValidationError(
                    f"{full} is a symlink or special file; skills hold plain files"
                )
            rel = (rel_dir / fname).as_posix()
            files[rel] = full.read_bytes()
            if len(files) > MAX_FOLDER_FILES:
                raise ValidationError(f"{root} has more than {MAX_FOLDER_FILES} files")
    return files


def _prompt_sha(files: dict[str, bytes]) -> str:
    return hashlib.sha256(files[SKILL_FILE]).hexdigest()


def render_prompt(body: str, user_input: str) -> str:
    """The prompt a prompt-only skill sends: its body with ``{{input}}`` filled in."""
    if "{{input}}" in body:
        return body.replace("{{input}}", user_input)
    return f"{body.strip()}\n\nUser request:\n{user_input}\n"


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class SkillManager:
    def __init__(
        self,
        root: Path,
        records: SkillRecords,
        *,
        limits: Limits | None = None,
        sandbox: Sandbox | None = None,
        sandbox_limits: SandboxLimits | None = None,
        max_concurrent_runs: int = 2,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        license_check: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``license_check(record)`` raises unless this node holds a valid license for the
        paid skill ``record``; without one, paid skills do not run at all."""
        self.root = Path(root)
        self.license_check = license_check
        self.records = records
        self.limits = limits or Limits()
        self._sandbox = sandbox
        self.sandbox_limits = sandbox_limits or SandboxLimits()
        self._limiter = trio.CapacityLimiter(max_concurrent_runs)
        self._clock_ms = clock_ms

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(self.sandbox_limits)
        return self._sandbox

    def close(self) -> None:
        """Free the sandbox (see :meth:`Sandbox.close`); call before the process exits."""
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    # --- queries --------------------------------------------------------------------
    def installed(self) -> list[dict[str, Any]]:
        return self.records.all()

    def intents(self) -> list[Any]:
        """What the router trains on: each installed skill's description and examples."""
        from bitterbot.agent.router import SkillIntent

        return [
            SkillIntent(r["name"], r["description"], list(r["examples"])) for r in self.installed()
        ]

    def get(self, name: str) -> dict[str, Any]:
        record = self.records.get(name)
        if record is None:
            raise NotFoundError(
                f"no skill named {name!r} is installed", hint="see: bitterbot skill list"
            )
        return record

    def model_path(self, name: str) -> Path | None:
        """The GGUF model a skill bundles (installed with it), or None: use the default."""
        record = self.get(name)
        return Path(record["dir"]) / record["model"] if record.get("model") else None

    def prompt_text(self, name: str) -> str:
        record = self.get(name)
        return (Path(record["dir"]) / SKILL_FILE).read_text(encoding="utf-8")

    # --- install --------------------------------------------------------------------
    def install(self, data: bytes, consent: Consent, *, force: bool = False) -> dict[str, Any]:
        """Verify and install a package file's bytes. Runs no code from the package."""
        verified = verify_package(data, self.limits)
        publisher = encode_key(verified.publisher)
        return self._install_files(
            verified.skill, verified.id, publisher, "package", consent, force=force
        )

    def import_folder(
        self, folder: Path, consent: Consent, *, force: bool = False
    ) -> dict[str, Any]:
        """A plain Agent Skills folder becomes a prompt-only skill; ``scripts/`` is dropped."""
        files = read_folder(folder, skip_scripts=True)
        files.pop(MANIFEST_FILE, None)  # an import is prompt-only whatever the folder says
        skill = load_files(files)
        archive = pack_archive(files)
        return self._install_files(
            skill, content_id(archive), IMPORTED_PUBLISHER, "import", consent, force=force
        )

    def install_builtins(self) -> list[dict[str, Any]]:
        """Install (or refresh) the skills that ship with Bitterbot; they still run sandboxed."""
        out = []
        for folder in sorted(p for p in BUILTIN_DIR.iterdir() if (p / SKILL_FILE).is_file()):
            files = read_folder(folder)
            files = {k: v for k, v in files.items() if not k.startswith("src/")}
            skill = load_files(files)
            package_id = content_id(pack_archive(files))
            existing = self.records.get(skill.manifest.name)
            if existing and existing.get("publisher") != BUILTIN_PUBLISHER:
                continue  # the user installed their own skill under this name: keep it
            if existing and existing["id"] == package_id and Path(existing["dir"]).is_dir():
                continue  # up to date
            out.append(
                self._install_files(
                    skill,
                    package_id,
                    BUILTIN_PUBLISHER,
                    "builtin",
                    accept_declared,
                    force=True,
                )
            )
        return out

    def _install_files(
        self,
        skill: SkillFiles,
        package_id: str,
        publisher: str,
        source: str,
        consent: Consent,
        *,
        force: bool,
    ) -> dict[str, Any]:
        man = skill.manifest
        existing = self.records.get(man.name)
        if existing is not None and existing["publisher"] != publisher and not force:
            raise SkillError(
                f"a skill named {man.name!r} from another publisher ({existing['publisher']}) "
                "is installed",
                hint=f"remove it first: bitterbot skill remove {man.name}",
                code="name_taken",
            )
        if source == "package":
            highest = self.records.highest_version(publisher, man.name)
            if highest is not None and not force:
                cmp = compare_versions(man.version, highest)
                if cmp < 0:
                    raise StaleError(
                        f"{man.name} {man.version} is older than {highest}, which was "
                        "installed before: downgrade refused",
                        hint="use --force if you really want the older version",
                        code="downgrade",
                    )
                if cmp == 0 and existing is not None and existing["id"] != package_id:
                    raise StaleError(
                        f"{man.name} {man.version} is installed with different content",
                        hint="the publisher must bump the version for new content",
                        code="version_reused",
                    )
        prompt_sha = _prompt_sha(skill.files)
        changes: list[str] = []
        same_owner = existing is not None and existing["publisher"] == publisher
        if same_owner and existing is not None:
            old_grant = permissions_from_obj(existing["granted"])
            if man.permissions != old_grant:
                changes.append("permissions")
            if existing["prompt_sha256"] != prompt_sha:
                changes.append("prompt")
        needs_consent = not same_owner or bool(changes)
        request = ConsentRequest(
            man,
            publisher,
            skill.files[SKILL_FILE].decode("utf-8"),
            is_update=same_owner,
            changes=tuple(changes),
            warnings=skill.doc.warnings,
        )
        if needs_consent and not consent(request):
            raise SkillError(
                f"you did not approve {man.name} {man.version}; nothing was changed",
                hint="review the permissions and prompt, then install again",
                code="consent_refused",
            )
        target = self._write_files(package_id, skill.files)
        folders = existing["folders"] if same_owner and existing is not None else []
        if man.permissions.files == "none":
            folders = []
        elif man.permissions.files == "read":
            folders = [{**f, "write": False} for f in folders]
        record = {
            "name": man.name,
            "id": package_id,
            "version": man.version,
            "publisher": publisher,
            "source": source,
            "kind": man.kind,
            "description": man.description,
            "examples": list(man.examples),
            "tags": list(man.tags),
            "price": man.price,
            "entry": man.entry,
            "entry_sha256": hashlib.sha256(skill.files[man.entry]).hexdigest()
            if man.entry
            else None,
            "model": man.model,
            "license": man.license,
            "permissions": man.permissions.to_obj(),
            "granted": man.permissions.to_obj(),
            "folders": folders,
            "prompt_sha256": prompt_sha,
            "installed_at_ms": self._clock_ms(),
            "dir": str(target),
            "warnings": list(skill.doc.warnings),
        }
        old_dir = existing["dir"] if existing is not None else None
        self.records.put(man.name, record)
        if source == "package":
            self.records.set_highest_version(publisher, man.name, man.version)
        if old_dir and old_dir != str(target):
            shutil.rmtree(old_dir, ignore_errors=True)
        return record

    def _write_files(self, package_id: str, files: dict[str, bytes]) -> Path:
        target = self.root / package_id
        tmp = self.root / f".{package_id}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, mode=0o700)
        base = tmp.resolve()
        for rel, data in files.items():
            dest = (tmp / rel).resolve()
            if base not in dest.parents:  # belt and braces: paths were checked at unpack
                raise ValidationError(f"archive path {rel!r} escapes the skill folder")
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        return target

    # --- grants ---------------------------------------------------------------------
    def grant_folder(self, name: str, path: Path, *, write: bool = False) -> dict[str, Any]:
        record = self.get(name)
        mode = record["granted"]["files"]
        if mode == "none":
            raise SandboxViolation(f"{name} did not ask for file access; no folder can be granted")
        if write and mode != "write":
            raise SandboxViolation(f"{name} asked for read-only file access; write not granted")
        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise NotFoundError(f"{folder} is not a folder")
        folders = [f for f in record["folders"] if f["path"] != str(folder)]
        folders.append({"path": str(folder), "write": write})
        record = {**record, "folders": folders}
        self.records.put(name, record)
        return record

    def remove(self, name: str) -> dict[str, Any]:
        record = self.get(name)
        self.records.delete(name)
        shutil.rmtree(record["dir"], ignore_errors=True)
        return record

    # --- run ------------------------------------------------------------------------
    async def run(
        self,
        name: str,
        user_input: str,
        *,
        generate: GenerateFn | None = None,
        search: SearchFn | None = None,
        net: NetPolicy | None = None,
        folders: list[FolderGrant] | None = None,
        max_tokens: int = 256,
    ) -> SkillOutput:
        record = self.get(name)
        if int(record.get("price") or 0) > 0:
            if self.license_check is None:
                raise SkillError(
                    f"{name} is a paid skill and this runtime cannot check licenses",
                    hint="run it through the node (bitterbot node start)",
                    code="license_missing",
                )
            self.license_check(record)
        t0 = time.monotonic()
        if record["kind"] == "prompt":
            if generate is None:
                raise SkillError(
                    f"{name} is a prompt skill and needs the local model",
                    hint="start the agent runtime (bitterbot node start) or pass a model",
                    code="model_unavailable",
                )
            body = parse_skill_md(self.prompt_text(name).encode("utf-8")).body
            text = await _maybe_await(generate(render_prompt(body, user_input), max_tokens))
            return SkillOutput(name, "prompt", str(text), elapsed_ms=(time.monotonic() - t0) * 1000)
        return await self._run_wasm(record, user_input, generate, search, net, folders)

    async def _run_wasm(
        self,
        record: dict[str, Any],
        user_input: str,
        generate: GenerateFn | None,
        search: SearchFn | None,
        net: NetPolicy | None,
        folders: list[FolderGrant] | None,
    ) -> SkillOutput:
        name = record["name"]
        wasm = (Path(record["dir"]) / record["entry"]).read_bytes()
        if hashlib.sha256(wasm).hexdigest() != record["entry_sha256"]:
            raise SkillError(
                f"{name}'s module changed on disk since it was installed",
                hint=f"reinstall it: bitterbot skill remove {name}, then install again",
                code="tampered_install",
            )
        granted = permissions_from_obj(record["granted"])
        grants = self._folder_grants(record, granted, folders)
        caps = Capabilities(
            granted,
            generate=_from_thread(generate) if generate is not None else None,
            search=_from_thread(search) if search is not None else None,
            net=net,
        )
        calls = caps.host_calls()
        sandbox = self.sandbox

        def work() -> RunResult:
            return sandbox.run(
                wasm,
                name=name,
                input=user_input,
                folders=grants,
                calls=calls,
                limits=self.sandbox_limits,
            )

        result = await trio.to_thread.run_sync(work, limiter=self._limiter)
        text = result.stdout.decode("utf-8", errors="replace")
        stderr = result.stderr.decode("utf-8", errors="replace")
        if result.exit_code != 0:
            tail = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
            raise SkillError(
                f"{name} failed (exit code {result.exit_code}): {tail}", code="skill_failed"
            )
        return SkillOutput(
            name,
            "wasm",
            text,
            result.exit_code,
            stderr,
            result.elapsed_ms,
            caps.tokens_used,
            result.fuel_used,
        )

    def _folder_grants(
        self, record: dict[str, Any], granted: Permissions, folders: list[FolderGrant] | None
    ) -> list[FolderGrant]:
        stored = [FolderGrant(Path(f["path"]), bool(f["write"])) for f in record["folders"]]
        if folders is None:
            return stored
        if folders and granted.files == "none":
            raise SandboxViolation(f"{record['name']} was not granted file access")
        out = []
        for grant in folders:
            if grant.write and granted.files != "write":
                raise SandboxViolation(f"{record['name']} was not granted write access to files")
            out.append(FolderGrant(Path(grant.path).resolve(), grant.write))
        return out


def _from_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Let a sandbox worker thread call ``fn``, sync or async, on the trio side."""

    def call(*args: Any) -> Any:
        if inspect.iscoroutinefunction(fn):
            return trio.from_thread.run(fn, *args)
        result = fn(*args)  # a plain function: run it right here, on the worker thread
        if inspect.isawaitable(result):
            return trio.from_thread.run(_maybe_await, result)
        return result

    return call


def runtime_generate(
    runtime: Any, model: str | None = None
) -> Callable[[str, int], Awaitable[str]]:
    """A ``generate(prompt, max_tokens)`` over the agent runtime's local model.

    ``model``: a skill's bundled GGUF path (see :meth:`SkillManager.model_path`); None is
    the runtime's default model.
    """
    from bitterbot.agent.backends import GenerateOptions

    async def generate(prompt: str, max_tokens: int) -> str:
        backend = await runtime.backend(model)
        done = await backend.generate(
            [{"role": "user", "content": prompt}], GenerateOptions(max_tokens=max_tokens)
        )
        return str(done.text).strip()

    return generate
