"""deploy/: the netns testnet (really run when root), and checks that the shipped files agree
with the code (settings, metrics, compose addresses, container build inputs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"


def test_testnet_skips_with_a_message_when_not_root():
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        out = subprocess.run(
            ["bash", str(DEPLOY / "testnet.sh"), "3"], capture_output=True, text=True, timeout=60
        )
    else:  # drop to nobody, as CI without root would run it
        out = subprocess.run(
            [
                setpriv,
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "bash",
                str(DEPLOY / "testnet.sh"),
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    if os.geteuid() == 0 and setpriv is None:
        pytest.skip("cannot drop root here (no setpriv)")
    assert out.returncode == 0
    assert "SKIPPED" in out.stdout and "root" in out.stdout


@pytest.mark.root
@pytest.mark.timeout(240)
def test_testnet_nodes_in_separate_namespaces_join_through_the_seed(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    env = dict(os.environ, TESTNET_DIR=str(tmp_path / "testnet"))
    out = subprocess.run(
        ["bash", str(DEPLOY / "testnet.sh"), "3", "--timeout", "90"],
        capture_output=True,
        text=True,
        timeout=220,
        env=env,
    )
    if "SKIPPED" in out.stdout:
        pytest.skip(out.stdout.strip())
    report = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr[-2000:]
    assert report["all_checks_passed"] is True
    assert report["nodes_joined"] == 3
    assert report["tcp_to_seed_across_bridge"] is True
    addrs = {n["address"] for n in report["per_node"]}
    assert addrs == {"10.77.0.11", "10.77.0.12", "10.77.0.13"}
    assert len({n["peer_id"] for n in report["per_node"]}) == 3
    assert all(n["connected_peers"] >= 1 for n in report["per_node"])
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "bbtn-" not in listed  # torn down


def test_systemd_unit_is_hardened():
    unit = (DEPLOY / "bitterbot.service").read_text()
    keys = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert keys["User"] == "bitterbot"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
        "StateDirectoryMode": "0700",
    }.items():
        assert keys.get(key) == value, key
    assert "bitterbot node start" in keys["ExecStart"]


def test_seed_config_is_valid_for_the_node(tmp_path):
    from bitterbot.node.config import load_settings

    (tmp_path / "config.toml").write_bytes((DEPLOY / "seed-config.toml").read_bytes())
    settings = load_settings(tmp_path, env={})
    assert settings["node.listen"] == ["/ip4/0.0.0.0/tcp/4001"]
    assert settings.source("node.max_peers").endswith("config.toml")
    assert settings["api.listen"].startswith("127.0.0.1:")


def test_compose_seeds_agree_on_addresses_and_the_entrypoint_parses():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    seeds = {}
    for name in ("seed1", "seed2", "seed3"):
        env = services[name]["environment"]
        assert env["SEED_NAME"] == name
        seeds[name] = services[name]["networks"]["bitterbot"]["ipv4_address"]
        listed = dict(e.split("=") for e in env["SEEDS"].split())
        assert listed == seeds | {k: v for k, v in listed.items() if k not in seeds}
    assert listed == seeds
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {
        t for sc in prometheus["scrape_configs"] for g in sc["static_configs"] for t in g["targets"]
    }
    assert {f"{ip}:9464" for ip in seeds.values()} <= targets
    assert subprocess.run(["sh", "-n", str(DEPLOY / "seed-entrypoint.sh")]).returncode == 0


def test_containerfile_copies_only_files_that_exist():
    text = (DEPLOY / "Containerfile").read_text()
    sources = [
        src
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for src in line.split()[1:-1]
    ]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
    assert "GGML_NATIVE=OFF" in text and "USER bitterbot" in text


def test_dashboard_queries_only_metrics_the_node_exports(tmp_path):
    from prometheus_client import generate_latest

    from bitterbot.node.config import load_settings
    from bitterbot.node.context import NodeContext
    from bitterbot.node.home import Home
    from bitterbot.node.metrics import NodeMetrics
    from bitterbot.node.store import Store

    home = Home(tmp_path / "home").ensure()
    store = Store(home.db_path)
    try:
        ctx = NodeContext(load_settings(home.path, env={}), home, store, home.identity())
        metrics = NodeMetrics(ctx)
        metrics.observe_query("find_providers", 0.1, True)
        exported = generate_latest(metrics.registry).decode()
    finally:
        store.close()
    names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", exported, re.M))
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"\b((?:bitterbot|process)_[a-z_]+)\b", target["expr"]))
    assert queried, "the dashboard queries nothing"
    missing = sorted(q for q in queried if q not in names)
    assert not missing, f"dashboard uses metrics the node does not export: {missing}"


def test_scenario_files_ship_with_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["bitterbot.simnet"]
    assert "scenarios/*.toml" in data
    assert sys.version_info >= (3, 11)
