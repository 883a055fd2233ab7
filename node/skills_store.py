"""LMDB records of installed skills, their grants, and the highest version ever installed.

Two named databases in the node's store:

- ``skills``: skill name -> the record :class:`bitterbot.agent.skills.SkillManager` writes
  (package id, version, publisher, permissions declared and granted, granted folders,
  prompt hash, install folder...);
- ``skill_versions``: ``publisher \\x00 name`` -> highest version installed. It is kept when a
  skill is removed, so removing and reinstalling an older version is still a downgrade.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitterbot.node.store import Store

SKILLS_DB = "skills"
VERSIONS_DB = "skill_versions"


class LmdbSkillRecords:
    """:class:`bitterbot.agent.skills.SkillRecords` on the node's LMDB store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Open both databases in a write transaction first: a handle that Store first
        # opens in a read transaction fails later writes with EINVAL (reported to the lead).
        with store.write() as txn:
            txn.count(SKILLS_DB)
            txn.count(VERSIONS_DB)

    def get(self, name: str) -> dict[str, Any] | None:
        with self.store.read() as txn:
            record: dict[str, Any] | None = txn.get(SKILLS_DB, name)
        return record

    def put(self, name: str, record: dict[str, Any]) -> None:
        with self.store.write() as txn:
            txn.put(SKILLS_DB, name, record)

    def delete(self, name: str) -> bool:
        with self.store.write() as txn:
            return txn.delete(SKILLS_DB, name)

    def all(self) -> list[dict[str, Any]]:
        with self.store.read() as txn:
            return [value for _key, value in txn.items(SKILLS_DB)]

    def highest_version(self, publisher: str, name: str) -> str | None:
        with self.store.read() as txn:
            version: str | None = txn.get(VERSIONS_DB, _version_key(publisher, name))
        return version

    def set_highest_version(self, publisher: str, name: str, version: str) -> None:
        with self.store.write() as txn:
            txn.put(VERSIONS_DB, _version_key(publisher, name), version)


def _version_key(publisher: str, name: str) -> bytes:
    return publisher.encode("utf-8") + b"\x00" + name.encode("utf-8")


def skills_dir(home_path: Path) -> Path:
    """Where installed skills' files live: ``<home>/skills/<package id>/``."""
    return Path(home_path) / "skills"


def packages_dir(home_path: Path) -> Path:
    """Package files kept by ID (``<home>/packages/<id>.bbskill``) for ``install ID``."""
    return Path(home_path) / "packages"


def open_manager(home_path: Path, store: Store, settings: Any = None) -> Any:
    """A :class:`~bitterbot.agent.skills.SkillManager` for a node home and its store."""
    from bitterbot.agent.sandbox import SandboxLimits
    from bitterbot.agent.skills import SkillManager
    from bitterbot.protocol.skillpkg import Limits

    limits, sandbox_limits = Limits(), SandboxLimits()
    if settings is not None:
        limits = Limits(max_package_bytes=int(settings["skills.max_package_bytes"]))
        sandbox_limits = SandboxLimits(
            fuel=int(settings["skills.fuel"]),
            deadline_ms=int(settings["skills.deadline_ms"]),
            memory_bytes=int(settings["skills.memory_mb"]) << 20,
        )
    manager = SkillManager(
        skills_dir(home_path),
        LmdbSkillRecords(store),
        limits=limits,
        sandbox_limits=sandbox_limits,
        license_check=license_checker(home_path, store),
    )
    manager.install_builtins()  # cheap when they are up to date
    return manager


def license_checker(home_path: Path, store: Store) -> Any:
    """The paid-skill gate: this node must hold a valid license, unless it is the publisher."""
    from bitterbot.node.home import Home
    from bitterbot.node.pay.buyer import find_license
    from bitterbot.protocol.identity import decode_key

    home = Home(home_path)

    def check(record: dict[str, Any]) -> None:
        node_key = home.identity(create=False).public_key
        publisher = decode_key(record["publisher"])
        own = {node_key}
        publisher_key = home.publisher_identity()
        if publisher_key is not None:
            own.add(publisher_key.public_key)
        if publisher in own:
            return
        find_license(store, node_key, record["name"], record["version"], publisher)

    return check


#: The fields of an installed skill that listings show (CLI ``--json`` and the API alike).
ROW_KEYS = (
    "name", "version", "kind", "id", "publisher", "source", "price", "description",
    "examples", "tags", "granted", "folders",
)  # fmt: skip


def skill_row(record: dict[str, Any]) -> dict[str, Any]:
    """One installed skill as ``skill list --json`` and ``GET /v1/skills`` show it."""
    return {k: record.get(k) for k in ROW_KEYS}


def run_output(out: Any) -> dict[str, Any]:
    """A skill run (``SkillOutput``) as ``skill run --json`` and the API return it."""
    return {
        "name": out.name,
        "kind": out.kind,
        "output": out.text,
        "stderr": out.stderr,
        "elapsed_ms": round(out.elapsed_ms, 3),
        "tokens_used": out.tokens_used,
        "fuel_used": out.fuel_used,
    }


def skills_of(ctx: Any) -> Any:
    """The running node's skill manager (``ctx.skills``), opened on first use."""
    if ctx.skills is None:
        ctx.skills = open_manager(ctx.home.path, ctx.store, ctx.settings)
    return ctx.skills
