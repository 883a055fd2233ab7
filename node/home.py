"""The node's home folder: key, API token, lock, running-node info.

Layout (all created on first start, folder 0700, secrets 0600)::

    ~/.bitterbot/
        node.key        32-byte ed25519 seed of the node identity
        api.token       bearer token of the local HTTP API
        node.lock       flock held by the running node; holds its pid
        node.json       address of the running node's API and metrics (removed on exit)
        config.toml     optional settings
        db/             LMDB environment
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from bitterbot.protocol.errors import HomeError
from bitterbot.protocol.identity import Identity

KEY_FILE = "node.key"
PUBLISHER_KEY_FILE = "publisher.key"  # an optional separate key for signing skills
TOKEN_FILE = "api.token"
LOCK_FILE = "node.lock"
RUNNING_FILE = "node.json"


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600 (write, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Home:
    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self._lock_fd: int | None = None

    def ensure(self) -> Home:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise HomeError(
                f"cannot use {self.path} as the node's home: {exc.strerror or exc}",
                hint="choose a writable folder with --home or BITTERBOT_HOME",
            ) from exc
        return self

    @property
    def db_path(self) -> Path:
        return self.path / "db"

    # --- identity -----------------------------------------------------------
    def identity(self, create: bool = True) -> Identity:
        return self._key(KEY_FILE, create)

    def publisher_identity(self) -> Identity | None:
        """The separate publisher key (``bitterbot key new``), or None without one."""
        if not (self.path / PUBLISHER_KEY_FILE).exists():
            return None
        return self._key(PUBLISHER_KEY_FILE, create=False)

    def _key(self, name: str, create: bool) -> Identity:
        path = self.path / name
        if not path.exists():
            if not create:
                raise HomeError(
                    f"no node key in {self.path}", hint="start the node once: bitterbot node start"
                )
            self.ensure()
            ident = Identity.generate()
            write_private(path, ident.seed)
            return ident
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise HomeError(
                f"{path} is readable by other users (mode {mode:o})",
                hint=f"run: chmod 600 {path}",
            )
        seed = path.read_bytes()
        if len(seed) != 32:
            raise HomeError(
                f"{path} is corrupt ({len(seed)} bytes, expected 32)",
                hint="restore it from a backup, or move it away to create a new identity (a new peer ID)",
            )
        return Identity.from_seed(seed)

    # --- API token ----------------------------------------------------------
    def api_token(self, create: bool = True) -> str:
        path = self.path / TOKEN_FILE
        if path.exists():
            token = path.read_text(encoding="ascii", errors="replace").strip()
            if len(token) >= 32:
                return token
            if not create:
                raise HomeError(
                    f"{path} is corrupt", hint="delete it; the node makes a new one at start"
                )
        if not create:
            raise HomeError(
                f"no API token in {self.path}", hint="start the node: bitterbot node start"
            )
        self.ensure()
        token = secrets.token_urlsafe(32)
        write_private(path, token.encode("ascii"))
        return token

    # --- single running node ------------------------------------------------
    def acquire_lock(self) -> None:
        self.ensure()
        path = self.path / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise HomeError(
                f"a node is already running on {self.path} (pid {pid})",
                hint="stop it first, or use another --home",
                code="already_running",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                (self.path / RUNNING_FILE).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def running_pid(self) -> int | None:
        """pid of the node holding the lock, or None when no node runs on this home."""
        path = self.path / LOCK_FILE
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def write_running(self, info: dict[str, Any]) -> None:
        write_private(self.path / RUNNING_FILE, json.dumps(info).encode())

    def read_running(self) -> dict[str, Any] | None:
        """Info of the running node (API address...), or None when none runs."""
        if self.running_pid() is None:
            return None
        try:
            data: dict[str, Any] = json.loads((self.path / RUNNING_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data
