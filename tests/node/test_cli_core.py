"""Core CLI: identity, settings listing, and errors printed once without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bitterbot.node.home import Home
from bitterbot.node.p2p.peer_id import peer_id_of


def run(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "BITTERBOT_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_id_prints_the_peer_id_of_the_home_key(tmp_path: Path) -> None:
    out = run("id", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["peer_id"] == peer_id_of(Home(tmp_path).identity())
    again = run("id", home=tmp_path)
    assert again.stdout.strip() == data["peer_id"]


def test_config_show_lists_every_setting_with_its_source(tmp_path: Path) -> None:
    out = run("config", "show", "--json", home=tmp_path, env={"BITTERBOT_AGENT_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["agent.threads"]["value"] == 1
    assert rows["agent.threads"]["source"] == "BITTERBOT_AGENT_THREADS"
    assert rows["api.listen"]["source"] == "default"
    assert all(row["description"] for row in rows.values())


def test_bad_setting_is_one_clear_message_without_traceback(tmp_path: Path) -> None:
    out = run("config", "show", home=tmp_path, env={"BITTERBOT_API_LISTEN": "nope"})
    assert out.returncode == 2
    assert "error: api.listen" in out.stderr
    assert "what to do:" in out.stderr
    assert "Traceback" not in out.stderr


def test_corrupt_key_file_is_reported_with_the_fix(tmp_path: Path) -> None:
    Home(tmp_path).ensure()
    key = tmp_path / "node.key"
    key.write_bytes(b"garbage")
    key.chmod(0o600)
    out = run("id", home=tmp_path)
    assert out.returncode == 1
    assert "corrupt" in out.stderr and "Traceback" not in out.stderr
