"""Installing a skill package: the one path the command line, the API and the market take.

verify -> reputation gate -> consent -> install -> keep the package file -> seed.

- verify: the signature, the content ID and every manifest limit (``verify_package``);
- reputation gate: refuse a skill revoked by its publisher or flagged by someone this node
  trusts (``InstallRefused``), unless the user overrides it;
- consent: the caller's callback sees exactly what the package declares;
- keep: the verified file stays in ``<home>/packages/<id>.bbskill`` so the market can serve
  it and ``install ID`` works offline;
- seed: a free skill is offered to other peers (when the node runs and seeding is on).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bitterbot.node.skills_store import packages_dir
from bitterbot.protocol.skillpkg import PACKAGE_SUFFIX, verify_package

#: Offers an installed free package to other peers; returns the seeding report.
Seeder = Callable[[str], Awaitable[dict[str, Any]]]


class InstallGate(Protocol):
    def check_install(
        self, skill: str, publisher: bytes | None = None, *, override: bool = False
    ) -> Any: ...


@dataclass(frozen=True)
class Installed:
    record: dict[str, Any]
    seeding: dict[str, Any] | None


async def install_package(
    data: bytes,
    *,
    manager: Any,
    gate: InstallGate,
    home_path: Path,
    consent: Callable[[Any], bool],
    force: bool = False,
    ignore_reputation: bool = False,
    seed: Seeder | None = None,
) -> Installed:
    """Install the package ``data`` with ``manager`` (a ``SkillManager``); see the module doc."""
    verified = verify_package(data, manager.limits)
    gate.check_install(verified.id, verified.publisher, override=ignore_reputation)
    record: dict[str, Any] = manager.install(data, consent, force=force)
    keep_package(home_path, record["id"], data)
    seeding = None
    if seed is not None and verified.manifest.price == 0:
        seeding = await seed(record["id"])
    return Installed(record, seeding)


def keep_package(home_path: Path, package_id: str, data: bytes) -> Path:
    """Keep the verified package file by ID (written to a temporary file, then renamed)."""
    folder = packages_dir(home_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{package_id}{PACKAGE_SUFFIX}"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path
