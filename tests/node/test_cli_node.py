"""`bitterbot node start|status` and `bench node` as a person runs them: real child processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitterbot.node.home import Home

CLI = [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()"]
LOCAL = ["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]


def env_without_settings(preload_model: bool = False) -> dict[str, str]:
    """The caller's environment minus BITTERBOT_* settings; the agent's model preload is off
    unless asked for (it costs CPU and memory and is tested with the agent)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITTERBOT_")}
    env["BITTERBOT_AGENT_PRELOAD"] = "true" if preload_model else "false"
    return env


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env_without_settings()
    )


class Node:
    """A `bitterbot node start` child process."""

    def __init__(self, home: Path, *extra: str, preload_model: bool = False) -> None:
        self.home = Home(home)
        self.proc = subprocess.Popen(
            [*CLI, "--home", str(home), "node", "start", *LOCAL, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_without_settings(preload_model),
        )

    def wait_ready(self, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            info = self.home.read_running() if self.home.path.exists() else None
            if info:
                return info
            time.sleep(0.05)
        raise AssertionError("node did not become ready")

    def terminate(self, sig: int = signal.SIGTERM) -> tuple[int, str, str, float]:
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, out, err, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def nodes():
    started: list[Node] = []

    def start(home: Path, *extra: str, preload_model: bool = False) -> Node:
        node = Node(home, *extra, preload_model=preload_model)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


def test_node_start_status_and_sigterm_within_5_s_without_traceback(tmp_path, nodes):
    node = nodes(tmp_path / "a", preload_model=True)  # the full default node
    info = node.wait_ready()
    status = run("node", "status", "--json", "--home", str(tmp_path / "a"))
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["peer_id"] == info["peer_id"]
    assert data["network"] == "standalone"
    assert data["listen_addrs"][0].endswith("/p2p/" + info["peer_id"])

    second = run("--home", str(tmp_path / "a"), "node", "start", *LOCAL)
    assert second.returncode != 0
    assert f"already running on {tmp_path / 'a'} (pid {node.proc.pid})" in second.stderr
    assert "Traceback" not in second.stderr

    code, out, err, took = node.terminate(signal.SIGTERM)
    assert code == 0, err
    assert took < 5
    assert "Traceback" not in err and "Error" not in err, err
    assert info["peer_id"] in out
    assert "standalone" in out
    assert not (tmp_path / "a" / "node.json").exists()


def test_sigint_stops_a_joined_node_cleanly_and_restart_keeps_the_peer_id(tmp_path, nodes):
    seed = nodes(tmp_path / "seed")
    seed_info = seed.wait_ready()
    seed_addr = seed_info["listen_addrs"][0]
    joiner = nodes(tmp_path / "b", "--seed", seed_addr)
    info = joiner.wait_ready()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = json.loads(run("node", "status", "--json", "--home", str(tmp_path / "b")).stdout)
        if seed_info["peer_id"] in status["connected_peers"]:
            break
        time.sleep(0.3)
    assert seed_info["peer_id"] in status["connected_peers"]
    assert status["network"] == "joined"

    code, out, err, took = joiner.terminate(signal.SIGINT)
    assert (code, took < 5) == (0, True), err
    assert "Traceback" not in err, err
    assert "network: joined" in out

    again = nodes(tmp_path / "b")  # no --seed: reconnects from the known-peer book
    assert again.wait_ready()["peer_id"] == info["peer_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = json.loads(run("node", "status", "--json", "--home", str(tmp_path / "b")).stdout)
        if seed_info["peer_id"] in status["connected_peers"]:
            break
        time.sleep(0.3)
    assert seed_info["peer_id"] in status["connected_peers"]
    assert status["seeds"] == []
    code, out, err, _ = seed.terminate()
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--listen", "/ip4/1.2.3/tcp/1"], "malformed listen address"),
        (["--listen", "/ip4/127.0.0.1/udp/1"], "unsupported listen address"),
        (["--seed", "/ip4/127.0.0.1/tcp/4001"], "has no /p2p/<peer id> part"),
        (["--seed", "not-a-multiaddr"], "malformed peer address"),
        (["--api", "localhost"], "expected HOST:PORT"),
    ],
)
def test_malformed_addresses_are_one_clear_message(tmp_path, args, needle):
    out = run("--home", str(tmp_path / "h"), "node", "start", *args)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr
    assert "what to do:" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_p2p_port_in_use_is_reported_with_the_fix(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = run(
            "--home",
            str(tmp_path / "h"),
            "node",
            "start",
            *LOCAL,
            "--listen",
            f"/ip4/127.0.0.1/tcp/{port}",
        )  # two listen addresses: the free port-0 one binds, this one cannot
    assert out.returncode == 1
    assert f"cannot listen on /ip4/127.0.0.1/tcp/{port}" in out.stderr
    assert "in use" in out.stderr
    assert "--listen" in out.stderr
    assert "Traceback" not in out.stderr
    assert Home(tmp_path / "h").running_pid() is None


def test_an_api_port_in_use_is_reported_with_the_fix(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = run(
            "--home", str(tmp_path / "h"), "node", "start", *LOCAL, "--api", f"127.0.0.1:{port}"
        )
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} for the API" in out.stderr
    assert "--api HOST:PORT" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unwritable_home_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = run("--home", str(blocker / "home"), "node", "start", *LOCAL)
    assert out.returncode == 1
    assert "cannot use" in out.stderr and "--home" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_corrupt_key_file_is_reported(tmp_path):
    home = Home(tmp_path / "h").ensure()
    (home.path / "node.key").write_bytes(b"short")
    (home.path / "node.key").chmod(0o600)
    out = run("--home", str(home.path), "node", "start", *LOCAL)
    assert out.returncode == 1
    assert "is corrupt" in out.stderr and "what to do:" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unreachable_seed_is_reported_while_the_node_keeps_retrying(tmp_path, nodes):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ghost = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
    node = nodes(tmp_path / "h", "--seed", f"/ip4/127.0.0.1/tcp/{port}/p2p/{ghost}")
    node.wait_ready()
    time.sleep(3)
    assert node.proc.poll() is None  # still running: retries with backoff
    code, out, err, _ = node.terminate()
    assert code == 0
    assert "cannot reach any seed yet" in err
    assert "check the --seed addresses" in err
    assert "Traceback" not in err


def test_status_without_a_running_node_says_how_to_start_one(tmp_path):
    out = run("node", "status", "--json", "--home", str(tmp_path / "none"))
    assert out.returncode == 1
    assert "no node is running" in out.stderr
    assert "bitterbot node start" in out.stderr


@pytest.mark.slow
def test_bench_node_measures_a_real_child(tmp_path):
    out = run("bench", "node", "--json", "--idle", "1", timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert 0 < result["start_to_ready_s"] < 30
    assert 20 < result["idle_rss_mb"] < 1000
    assert result["exit_code"] == 0
    assert result["stop_s"] < 5
