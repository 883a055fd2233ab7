"""Settings precedence: defaults < config file < environment < flags, with sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitterbot.node.config import SETTINGS, load_settings
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
