"""The market as a person uses it: two `bitterbot node start` processes and the CLI.

A developer publishes a skill folder from their node; a user whose node only knows the
developer's address as a seed searches, installs (consent accepted with --yes) and runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitterbot.node.home import Home

CLI = [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()"]
LOCAL = ["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]
CALC = Path(__file__).parents[2] / "agent" / "builtin" / "calculator"


SHARED: dict[str, str] = {}  # settings every process of a test shares (see the paid test)


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("BITTERBOT_")}
    out["BITTERBOT_AGENT_PRELOAD"] = "false"  # no model needed here
    return {**out, **SHARED}


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


def start_node(home: Path, *extra: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [*CLI, "--home", str(home), "node", "start", *LOCAL, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        info = Home(home).read_running() if home.exists() else None
        if info:
            return proc, info
        time.sleep(0.1)
    raise AssertionError("node did not start")


def start_developer_and_user(tmp_path: Path, procs: list) -> tuple[Path, Path, dict]:
    """A developer's node, and a user's node that knows only the developer as its seed."""
    dev_home, user_home = tmp_path / "dev", tmp_path / "user"
    dev, dev_info = start_node(dev_home)
    procs.append(dev)
    seed = next(a for a in dev_info["listen_addrs"] if a.startswith("/ip4/127.0.0.1/"))
    user, _ = start_node(user_home, "--seed", seed)
    procs.append(user)
    return dev_home, user_home, dev_info


def calculator_named(tmp_path: Path, name: str) -> Path:
    """A copy of the built-in calculator skill folder under another name."""
    folder = tmp_path / name
    shutil.copytree(CALC, folder, ignore=shutil.ignore_patterns("src"))
    skill_md = (folder / "SKILL.md").read_text().replace("name: calculator", f"name: {name}")
    (folder / "SKILL.md").write_text(skill_md)
    return folder


@pytest.fixture
def procs():
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_publish_search_install_run_from_the_command_line(tmp_path: Path, procs) -> None:
    dev_home, user_home, dev_info = start_developer_and_user(tmp_path, procs)
    folder = calculator_named(tmp_path, "unit-calc")

    out = cli(dev_home, "skill", "publish", str(folder), "--node-key", "--json")
    assert out.returncode == 0, out.stderr
    published = json.loads(out.stdout)
    assert published["name"] == "unit-calc" and published["price"] == 0

    deadline = time.monotonic() + 60
    offers: list[dict] = []
    while time.monotonic() < deadline and not offers:
        found = cli(user_home, "skill", "search", "unit-calc", "--json")
        assert found.returncode == 0, found.stderr
        offers = json.loads(found.stdout)
        time.sleep(0.5)
    assert [o["package_id"] for o in offers] == [published["package_id"]]
    assert offers[0]["publisher"] == published["publisher"]
    tagged = json.loads(cli(user_home, "skill", "search", "--tag", "units", "--json").stdout)
    assert [o["name"] for o in tagged] == ["unit-calc"]

    installed = cli(user_home, "skill", "install", "unit-calc", "--yes", "--json")
    assert installed.returncode == 0, installed.stderr
    row = json.loads(installed.stdout)
    assert row["from_network"] is True and row["id"] == published["package_id"]
    assert row["seeding"]["seeding"] is True

    ran = cli(user_home, "skill", "run", "unit-calc", "1 km to m", "--json")
    assert ran.returncode == 0, ran.stderr
    assert "1000" in json.loads(ran.stdout)["output"]


def test_install_of_an_unknown_name_without_a_node_says_to_start_one(tmp_path: Path) -> None:
    out = cli(tmp_path / "nobody", "skill", "install", "no-such-skill", "--yes")
    assert out.returncode != 0
    assert "bitterbot node start" in out.stderr and "Traceback" not in out.stderr


def test_install_of_a_skill_flagged_by_a_trusted_attester_is_refused(tmp_path: Path) -> None:
    from bitterbot.agent.skills import read_folder
    from bitterbot.protocol.identity import Identity
    from bitterbot.protocol.skillpkg import build_package, sign_package

    files = {k: v for k, v in read_folder(CALC).items() if not k.startswith("src/")}
    files["SKILL.md"] = files["SKILL.md"].replace(b"name: calculator", b"name: shady-calc")
    pkg = sign_package(build_package(files), Identity.generate(), int(time.time() * 1000))
    path = tmp_path / "shady.bbskill"
    path.write_bytes(pkg.to_bytes())
    home = tmp_path / "user"
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("it exfiltrates ~/.ssh")

    flagged = cli(home, "rep", "flag", pkg.id, "--evidence", str(evidence))
    assert flagged.returncode == 0, flagged.stderr
    refused = cli(home, "skill", "install", str(path), "--yes")
    assert refused.returncode != 0
    assert "refused" in refused.stderr and "Traceback" not in refused.stderr
    assert "shady-calc" not in cli(home, "skill", "list", "--json").stdout

    forced = cli(home, "skill", "install", str(path), "--yes", "--ignore-reputation")
    assert forced.returncode == 0, forced.stderr


def test_a_paid_skill_is_bought_over_a_channel_and_runs_only_with_a_license(
    tmp_path: Path, procs, monkeypatch
) -> None:
    # one machine, one TEST MONEY ledger shared by both nodes
    monkeypatch.setitem(SHARED, "BITTERBOT_PAY_LEDGER_PATH", str(tmp_path / "ledger"))
    dev_home, user_home, dev_info = start_developer_and_user(tmp_path, procs)
    folder = calculator_named(tmp_path, "paid-calc")
    out = cli(dev_home, "skill", "publish", str(folder), "--price", "250", "--node-key", "--json")
    assert out.returncode == 0, out.stderr
    published = json.loads(out.stdout)
    assert published["price"] == 250 and published["seller"] == dev_info["peer_id"]

    deadline = time.monotonic() + 60
    offers: list[dict] = []
    while time.monotonic() < deadline and not offers:
        offers = json.loads(cli(user_home, "skill", "search", "paid-calc", "--json").stdout)
        time.sleep(0.5)
    assert offers and offers[0]["price"] == 250

    unpaid = cli(user_home, "skill", "install", "paid-calc", "--yes")
    assert unpaid.returncode != 0 and "--max-price 250" in unpaid.stderr

    bought = cli(
        user_home, "skill", "install", "paid-calc", "--yes", "--max-price", "250", "--json"
    )
    assert bought.returncode == 0, bought.stderr
    row = json.loads(bought.stdout)
    assert row["paid"]["amount"] == 250
    ran = cli(user_home, "skill", "run", "paid-calc", "2 + 2", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["output"].strip().endswith("= 4")
    status = json.loads(cli(user_home, "pay", "status", "--json").stdout)
    assert "250" in json.dumps(status)

    # the decrypted package copied to another home installs, but does not run: no license
    thief = tmp_path / "thief"
    package = next((user_home / "packages").glob(f"{row['id']}.bbskill"))
    assert cli(thief, "skill", "install", str(package), "--yes").returncode == 0
    stolen = cli(thief, "skill", "run", "paid-calc", "2 + 2")
    assert stolen.returncode != 0 and "license" in stolen.stderr.lower()
