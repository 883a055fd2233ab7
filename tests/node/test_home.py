"""The node's home: key and token files, permissions, corruption, the single-node lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bitterbot.node.home import Home
from bitterbot.node.p2p.peer_id import peer_id_of
from bitterbot.protocol.errors import HomeError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_identity_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    first = home.identity()
    assert mode(home.path / "node.key") == 0o600
    assert mode(home.path) == 0o700
    assert Home(tmp_path / "h").identity().public_key == first.public_key
    assert peer_id_of(first).startswith("12D3KooW")


def test_api_token_is_stable_and_private(tmp_path: Path) -> None:
    home = Home(tmp_path)
    token = home.api_token()
    assert len(token) >= 32
    assert home.api_token() == token
    assert mode(tmp_path / "api.token") == 0o600


def test_corrupt_key_file_gets_a_clear_error(tmp_path: Path) -> None:
    home = Home(tmp_path).ensure()
    (tmp_path / "node.key").write_bytes(b"short")
    os.chmod(tmp_path / "node.key", 0o600)
    with pytest.raises(HomeError, match="corrupt") as info:
        home.identity()
    assert info.value.hint


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.identity()
    os.chmod(tmp_path / "node.key", 0o644)
    with pytest.raises(HomeError, match="chmod 600"):
        home.identity()


def test_unwritable_home_gets_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(HomeError, match="--home"):
        Home(blocker / "home").ensure()


def test_second_holder_of_the_lock_is_told_the_pid(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from pathlib import Path; from bitterbot.node.home import Home;"
            "Home(Path(sys.argv[1])).acquire_lock(); print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        home = Home(tmp_path)
        assert home.running_pid() == child.pid
        with pytest.raises(HomeError, match=f"already running .*pid {child.pid}") as info:
            home.acquire_lock()
        assert info.value.code == "already_running"
    finally:
        child.kill()
        child.wait()
    home = Home(tmp_path)
    assert home.running_pid() is None
    home.acquire_lock()  # the lock died with its holder
    home.release_lock()
