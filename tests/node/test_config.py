"""Settings precedence: defaults < config file < environment < flags, with sources."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bitterbot.node.config import SETTINGS, default_settings, load_settings
from bitterbot.protocol.errors import ConfigError


def test_precedence_and_sources(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[api]\nlisten = "127.0.0.1:9000"\n[agent]\nthreads = 3\n'
    )
    env = {
        "BITTERBOT_AGENT_THREADS": "4",
        "BITTERBOT_NODE_SEEDS": "/ip4/1.2.3.4/tcp/1,/ip4/5.6.7.8/tcp/2",
    }
    s = load_settings(tmp_path, {"agent.threads": 5}, env=env)
    assert s["api.listen"] == "127.0.0.1:9000"
    assert s.source("api.listen").endswith("config.toml")
    assert s["agent.threads"] == 5 and s.source("agent.threads") == "flag"
    assert s["node.seeds"] == ["/ip4/1.2.3.4/tcp/1", "/ip4/5.6.7.8/tcp/2"]
    assert s.source("node.seeds") == "BITTERBOT_NODE_SEEDS"
    assert s["metrics.listen"] == "127.0.0.1:9464" and s.source("metrics.listen") == "default"


def test_every_setting_has_a_description_and_a_unique_env_name() -> None:
    assert all(s.description for s in SETTINGS)
    envs = [s.env for s in SETTINGS]
    assert len(envs) == len(set(envs))


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api.listen"):
        load_settings(tmp_path, env={"BITTERBOT_API_LISTEN": "nonsense"})
    (tmp_path / "config.toml").write_text("not = [toml")
    with pytest.raises(ConfigError, match="config.toml"):
        load_settings(tmp_path, env={})
    (tmp_path / "config.toml").write_text("[nope]\nthing = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'nope.thing'"):
        load_settings(tmp_path, env={})


def test_api_key_is_masked_in_descriptions(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={"BITTERBOT_CLOUD_API_KEY": "sk-secret"})
    assert s["cloud.api_key"] == "sk-secret"
    shown = {row["name"]: row["value"] for row in s.describe()}
    assert shown["cloud.api_key"] == "***"


def _settings_reads(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, setting name, has a second default) for each read of a settings mapping."""

    def is_settings(node: ast.expr) -> bool:
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
        return name.endswith("settings")

    reads = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and is_settings(node.value)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            reads.append((node.lineno, node.slice.value, False))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and is_settings(node.func.value)
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            reads.append((node.lineno, str(node.args[0].value), True))
    return reads


def test_settings_are_read_by_declared_name_with_no_second_default() -> None:
    # One declaration per setting: a call site with its own default drifts from the declared
    # one (pay.test_grant, cloud.daily_budget_microusd and ollama.url once did).
    root = Path(__file__).resolve().parents[2]
    declared = {s.name for s in SETTINGS}
    found, problems = 0, []
    for folder in ("agent", "node", "simnet"):
        for path in sorted((root / folder).rglob("*.py")):
            for line, name, second_default in _settings_reads(ast.parse(path.read_text())):
                found += 1
                where = f"{path.relative_to(root)}:{line}"
                if name not in declared:
                    problems.append(f"{where}: {name!r} is not declared in node/config.py")
                if second_default:
                    problems.append(f"{where}: settings.get({name!r}, ...) repeats a default")
    assert found > 40  # the scan sees the call sites
    assert problems == []


def test_default_settings_hold_every_declared_default_and_parse_overrides() -> None:
    s = default_settings({"agent.threads": "3"})
    assert s["agent.threads"] == 3 and s.source("agent.threads") == "flag"
    assert all(s[d.name] == d.default for d in SETTINGS if d.name != "agent.threads")
    with pytest.raises(ConfigError, match="unknown setting"):
        default_settings({"agent.thread": 3})
