"""deploy/: the netns testnet (really run when root), systemd-analyze on the unit (when
installed), and checks that the shipped files agree with the code (settings, metrics,
compose addresses, container build inputs, the Grafana dashboard).

The container image itself is built and run by deploy/verify-container.sh (podman, minutes
of CPU), not here."""

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

ROOT = Path(__file__).parents[1]
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


def unit_directives(text: str) -> dict[str, list[str]]:
    """Service-section directives of a unit file, every value of repeated keys in order."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}" if section != "Service" else key, []).append(value)
    return out


UNIT = DEPLOY / "bitterbot.service"


def test_systemd_unit_is_hardened():
    keys = unit_directives(UNIT.read_text())
    one = {k: v[-1] for k, v in keys.items()}
    assert one["User"] == "bitterbot" and one["Group"] == "bitterbot"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "PrivateMounts": "yes",
        "PrivateUsers": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "ProtectProc": "invisible",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "RemoveIPC": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
        "StateDirectoryMode": "0700",
    }.items():
        assert one.get(key) == value, f"{key}={one.get(key)!r}, want {value!r}"
    # Only the socket families the node uses: IP for libp2p, UNIX for local IPC, NETLINK to
    # list the interfaces that a 0.0.0.0 listen address is advertised as (getifaddrs).
    assert set(one["RestrictAddressFamilies"].split()) == {
        "AF_INET",
        "AF_INET6",
        "AF_UNIX",
        "AF_NETLINK",
    }
    filters = keys["SystemCallFilter"]
    assert "@system-service" in filters[0].split()
    denied = {g for f in filters if f.startswith("~") for g in f[1:].split()}
    assert {
        "@privileged",
        "@mount",
        "@module",
        "@raw-io",
        "@debug",
        "@reboot",
        "@resources",
    } <= denied
    assert "bitterbot node start" in one["ExecStart"]
    assert one["ExecStart"].startswith("/")  # systemd requires an absolute path


def _unit_with_existing_executables(tmp_path: Path) -> Path:
    """The unit with /opt/bitterbot/bin/bitterbot pointed at this environment's bitterbot,
    since `verify` checks that every Exec*= program exists."""
    installed = Path(sys.executable).with_name("bitterbot")
    if not installed.exists():
        pytest.skip(f"no bitterbot script next to {sys.executable}")
    text = UNIT.read_text().replace("/opt/bitterbot/bin/bitterbot", str(installed))
    copy = tmp_path / "bitterbot.service"
    copy.write_text(text)
    return copy


def _systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    return subprocess.run([analyze, *args], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    unit = _unit_with_existing_executables(tmp_path)
    out = _systemd_analyze("verify", "--man=no", str(unit))
    # verify exits 0 on unknown keys and unparsable values, but names them on stderr.
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_systemd_analyze_verify_would_report_a_broken_directive(tmp_path):
    """The test above can fail: a typo in a hardening value is reported."""
    unit = _unit_with_existing_executables(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    out = _systemd_analyze("verify", "--man=no", str(unit))
    assert "protect system" in out.stderr.lower()


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path):
    unit = _unit_with_existing_executables(tmp_path)
    out = _systemd_analyze("security", "--offline=yes", "--no-pager", str(unit))
    if "--offline" in out.stderr or "unrecognized option" in out.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout[-2000:] + out.stderr[-2000:]
    # 0 is sealed, 10 is unprotected; 2.0 or less is what systemd calls OK. What remains is
    # deliberate: a p2p node needs the network, and llama.cpp/wasmtime need W+X memory.
    assert float(match.group(1)) <= 2.0, out.stdout


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


def containerfile_instructions() -> list[str]:
    """Instructions of the Containerfile, continuation lines joined, comments dropped."""
    lines = [line for line in (DEPLOY / "Containerfile").read_text().splitlines() if line.strip()]
    joined = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return [i.strip() for i in joined.replace("\\\n", " ").splitlines()]


def test_containerfile_builds_for_any_architecture():
    instructions = containerfile_instructions()
    froms = [i for i in instructions if i.startswith("FROM ")]
    assert len(froms) == 2 and all(f.split()[1] == "${BASE_IMAGE}" for f in froms)
    base = next(i for i in instructions if i.startswith("ARG BASE_IMAGE="))
    assert base.endswith("debian:bookworm-slim")  # published for amd64 and arm64
    for instruction in instructions:
        assert not re.search(r"x86|amd64|aarch64|arm64|march=native", instruction), instruction
    # The venv is copied between stages: both must run the same /usr/bin/python3.
    apt = [i for i in instructions if "apt-get install" in i]
    assert len(apt) == 2 and all(re.search(r"\bpython3\b", i) for i in apt)
    # fastecdsa (libp2p) compiles against GMP: headers to build, the library to run.
    assert "libgmp-dev" in apt[0] and "libgmp10" in apt[1]


def test_containerfile_model_switch_keeps_the_llama_layer_cached():
    """A build ARG changes the cache key of every later RUN: WITH_MODELS must be declared
    after llama-cpp-python is built, or the seed image (WITH_MODELS=0) rebuilds llama.cpp."""
    instructions = containerfile_instructions()
    llama = next(n for n, i in enumerate(instructions) if "llama-cpp-python==" in i)
    with_models = next(n for n, i in enumerate(instructions) if i.startswith("ARG WITH_MODELS"))
    uses = [n for n, i in enumerate(instructions) if "$WITH_MODELS" in i]
    assert llama < with_models < min(uses)


SCRIPTS = ["testnet.sh", "seed-entrypoint.sh", "verify-container.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_deploy_scripts_parse_and_pass_shellcheck(script):
    path = DEPLOY / script
    shell = "sh" if path.read_text().startswith("#!/bin/sh") else "bash"
    assert subprocess.run([shell, "-n", str(path)], timeout=30).returncode == 0
    assert os.access(path, os.X_OK), f"{script} is not executable"
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    out = subprocess.run(
        [shellcheck, "-S", "warning", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout


DASHBOARD = DEPLOY / "grafana-dashboard.json"
# Labels Prometheus itself adds to every scraped series, and the histogram bucket bound.
SCRAPE_LABELS = {"job", "instance", "le"}


@pytest.fixture(scope="module")
def exported_series(tmp_path_factory) -> dict[str, set[str]]:
    """Every series name a node's /metrics serves, with its label names (one DHT query
    observed, so the counter and histogram have samples)."""
    from prometheus_client import generate_latest

    from bitterbot.node.config import load_settings
    from bitterbot.node.context import NodeContext
    from bitterbot.node.home import Home
    from bitterbot.node.metrics import NodeMetrics
    from bitterbot.node.store import Store

    home = Home(tmp_path_factory.mktemp("metrics") / "home").ensure()
    store = Store(home.db_path)
    try:
        ctx = NodeContext(load_settings(home.path, env={}), home, store, home.identity())
        metrics = NodeMetrics(ctx)
        metrics.observe_query("find_providers", 0.1, False)
        exported = generate_latest(metrics.registry).decode()
    finally:
        store.close()
    series: dict[str, set[str]] = {}
    for name, labels in re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? ", exported, re.M):
        series.setdefault(name, set()).update(re.findall(r'(\w+)="', labels))
    return series


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return exprs


METRIC = r"\b((?:bitterbot|process)_[a-z_]+)\b"


def test_dashboard_queries_only_metrics_the_node_exports(exported_series):
    queried = {m for expr in dashboard_queries() for m in re.findall(METRIC, expr)}
    assert len(queried) >= 5, f"the dashboard queries almost nothing: {queried}"
    missing = sorted(q for q in queried if q not in exported_series)
    assert not missing, f"dashboard uses metrics the node does not export: {missing}"


def test_dashboard_filters_and_groups_only_by_labels_the_metrics_have(exported_series):
    for expr in dashboard_queries():
        used = set(re.findall(METRIC, expr))
        have = set().union(*(exported_series.get(m, set()) for m in used)) | SCRAPE_LABELS
        for metric, matchers in re.findall(METRIC + r"\{([^}]*)\}", expr):
            names = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
            extra = names - exported_series.get(metric, set()) - SCRAPE_LABELS
            assert not extra, f"{metric} has no label {sorted(extra)} (in {expr})"
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            names = {g.strip() for g in group.split(",") if g.strip()}
            assert names <= have, f"grouping by {sorted(names - have)} in {expr}"
        for counter in re.findall(r"\b(?:rate|increase)\((\w+)", expr):
            assert counter.endswith(("_total", "_bucket", "_sum", "_count")), (
                f"rate() of a gauge: {expr}"
            )


def test_dashboard_is_a_well_formed_grafana_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        assert panel["type"] in {"stat", "timeseries", "table", "gauge", "bargauge", "text"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        uid = panel["datasource"]["uid"]
        assert uid.startswith("${") and uid[2:-1] in variables, uid
        for target in panel["targets"]:
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var in variables, f"${var} is not a dashboard variable"


def test_grafana_provisioning_matches_compose_and_prometheus():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/bitterbot.yaml").read_text()
    )["providers"][0]
    dashboard_in_container = mounts["./grafana-dashboard.json"]
    assert Path(dashboard_in_container).parent == Path(provider["options"]["path"])
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"][0]
    prometheus_ip = compose["services"]["prometheus"]["networks"]["bitterbot"]["ipv4_address"]
    assert source["type"] == "prometheus"
    assert source["url"] == f"http://{prometheus_ip}:9090"
    job = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]
    dashboard = json.loads(DASHBOARD.read_text())
    current_job = next(v for v in dashboard["templating"]["list"] if v["name"] == "job")
    assert current_job["current"]["value"] == job["job_name"]


def test_scenario_files_ship_with_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["bitterbot.simnet"]
    assert "scenarios/*.toml" in data
    assert sys.version_info >= (3, 11)
