"""Settings: declared once, loaded once at the entry point, passed down.

Precedence: defaults < ``config.toml`` in the home < ``BITTERBOT_*`` environment < flags.
Every setting has a one-line description; ``bitterbot config show`` prints them all with
the source of each value. Subsystems declare their settings in :data:`SETTINGS` below, in
their own section, so every environment variable is declared exactly once.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitterbot.protocol.errors import ConfigError

CONFIG_FILE = "config.toml"


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    raise ValueError(f"expected a list of strings, got {value!r}")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _as_str(value: Any) -> str:
    return str(value)


def _as_hostport(value: Any) -> str:
    text = str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    description: str
    parse: Callable[[Any], Any] = _as_str

    @property
    def env(self) -> str:
        return "BITTERBOT_" + self.name.upper().replace(".", "_").replace("-", "_")


SETTINGS: list[Setting] = [
    # --- node ---------------------------------------------------------------
    Setting("node.listen", ["/ip4/0.0.0.0/tcp/4001"], "libp2p listen multiaddrs", _as_list),
    Setting(
        "node.seeds", [], "seed peers to bootstrap from (multiaddrs ending in /p2p/<id>)", _as_list
    ),
    Setting("node.max_peers", 64, "connections kept open at most", _as_int),
    Setting(
        "node.dht_query_timeout_s", 3, "seconds a DHT lookup waits for one peer's answer", _as_int
    ),
    Setting(
        "api.listen", "127.0.0.1:8765", "local HTTP API address (token required)", _as_hostport
    ),
    Setting("metrics.listen", "127.0.0.1:9464", "Prometheus metrics address", _as_hostport),
    Setting("log.level", "warning", "log level: debug, info, warning, error"),
    # --- agent --------------------------------------------------------------
    Setting(
        "agent.model", "smollm2", "default model: 'smollm2' (embedded), a GGUF path, or ollama:NAME"
    ),
    Setting("agent.threads", 2, "CPU threads for local inference", _as_int),
    Setting("agent.preload", True, "load the default model when the node starts", _as_bool),
    Setting("agent.context", 2048, "context length (tokens) for local models", _as_int),
    Setting("agent.max_tokens", 256, "default answer length limit (tokens)", _as_int),
    Setting(
        "agent.system_prompt",
        "You are Bitterbot, a concise and accurate assistant. Answer in one short sentence.",
        "system prompt for ask and chat (empty: the model's own default)",
    ),
    Setting(
        "ollama.url", "http://127.0.0.1:11434", "ollama server URL (used for ollama:NAME models)"
    ),
    # --- cloud and privacy ----------------------------------------------------
    Setting("cloud.url", "", "OpenAI-compatible base URL of the cloud provider (empty: cloud off)"),
    Setting("cloud.model", "", "cloud model name"),
    Setting("cloud.api_key", "", "cloud API key (or BITTERBOT_CLOUD_API_KEY; never logged)"),
    Setting("cloud.policy", "never", "cloud escalation: never, ask or auto"),
    Setting(
        "cloud.daily_budget_microusd", 1_000_000, "daily cloud spend cap in micro-USD", _as_int
    ),
    Setting(
        "cloud.send_history",
        False,
        "send chat history to the cloud (off: current task only)",
        _as_bool,
    ),
    Setting(
        "cloud.max_local_words", 80, "requests longer than this (words) count as too hard", _as_int
    ),
    Setting(
        "cloud.escalate_on_length", False, "escalate when the local answer was cut off", _as_bool
    ),
    Setting("privacy.terms", [], "words always redacted before the cloud (your name...)", _as_list),
    Setting(
        "privacy.ner",
        True,
        "privacy gate uses its NER model (about 140 MB when loaded; off: word lists only)",
        _as_bool,
    ),
    Setting("cloud.skill_policies", [], "per-skill cloud policy: SKILL=never|ask|auto", _as_list),
    # --- skills and market --------------------------------------------------
    Setting(
        "skills.max_package_bytes", 64 * 1024 * 1024, "largest skill package accepted", _as_int
    ),
    Setting("skills.seed_installed", True, "serve installed free skills to other peers", _as_bool),
    Setting("skills.deadline_ms", 10_000, "wall-clock limit of one WASM skill run (ms)", _as_int),
    Setting("skills.memory_mb", 64, "memory cap of one WASM skill run (MiB)", _as_int),
    Setting(
        "skills.fuel", 10_000_000_000, "instruction budget (fuel) of one WASM skill run", _as_int
    ),
    Setting(
        "market.reannounce_s", 3600, "seconds between re-announcements of published skills", _as_int
    ),
    # --- documents ------------------------------------------------------------
    Setting("docs.max_file_bytes", 32 * 1024 * 1024, "larger documents are skipped", _as_int),
    Setting("docs.passages", 3, "passages given to the model per document question", _as_int),
    Setting(
        "docs.vectors", "static", "passage vectors: 'static' (fast) or 'minilm' (contextual, slow)"
    ),
    # --- reputation -----------------------------------------------------------
    Setting("rep.roots", [], "trust roots: keys (ed25519:...) of auditors you trust", _as_list),
    Setting(
        "rep.gossip_max_age_s",
        86400,
        "oldest attestation accepted by gossip (sync takes older)",
        _as_int,
    ),
    Setting(
        "rep.rate_per_min", 60, "attestations per minute accepted per attester via gossip", _as_int
    ),
    Setting(
        "rep.sync_interval_s", 60, "seconds between reputation catch-up syncs with peers", _as_int
    ),
    # --- payments -------------------------------------------------------------
    Setting(
        "pay.backend", "ledger", "settlement: 'ledger' (TEST MONEY) or 'cashu:<mint URL>' (ecash)"
    ),
    Setting("pay.ledger_path", "", "test-money ledger folder (empty: HOME/ledger; share to pool)"),
    Setting("pay.test_grant", 1_000_000, "TEST MONEY minted to a new node's account", _as_int),
    Setting("pay.default_capacity", 10_000, "capacity of new channels (smallest unit)", _as_int),
    Setting("pay.dispute_window_ms", 86_400_000, "dispute window of our channels (ms)", _as_int),
    Setting("pay.require_deposit", True, "take vouchers only once the deposit is locked", _as_bool),
    Setting("pay.group_commit_max", 256, "vouchers per durable LMDB commit at most", _as_int),
]

_BY_NAME = {s.name: s for s in SETTINGS}


class Settings(Mapping[str, Any]):
    """Resolved settings with the source of each value."""

    def __init__(self, home: Path, values: dict[str, Any], sources: dict[str, str]) -> None:
        self.home = home
        self._values = values
        self._sources = sources

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Any:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def source(self, name: str) -> str:
        return self._sources[name]

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        values, sources = dict(self._values), dict(self._sources)
        for name, raw in overrides.items():
            if raw is None:
                continue
            values[name] = _parse(_setting(name), raw, "flag")
            sources[name] = "flag"
        return Settings(self.home, values, sources)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for s in SETTINGS:
            value = self._values[s.name]
            if s.name == "cloud.api_key" and value:
                value = "***"
            out.append(
                {
                    "name": s.name,
                    "value": value,
                    "source": self._sources[s.name],
                    "env": s.env,
                    "description": s.description,
                }
            )
        return out


def _setting(name: str) -> Setting:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown setting {name!r}", hint="see `bitterbot config show`") from None


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    try:
        return setting.parse(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{setting.name} from {where}: {exc}", hint=setting.description) from exc


def default_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("BITTERBOT_HOME") or Path.home() / ".bitterbot").expanduser()


def load_settings(
    home: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    home = (home or default_home(env)).expanduser().absolute()
    values = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    path = home / CONFIG_FILE
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}", hint="fix or remove the file") from exc
        for name, raw in _flatten(data).items():
            values[name] = _parse(_setting(name), raw, str(path))
            sources[name] = str(path)
    for s in SETTINGS:
        if s.env in env:
            values[s.name] = _parse(s, env[s.env], s.env)
            sources[s.name] = s.env
    return Settings(home, values, sources).with_overrides(overrides or {})


def default_settings(
    overrides: Mapping[str, Any] | None = None, home: Path | None = None
) -> Settings:
    """The declared defaults plus ``overrides``: no config file, no environment.

    For code that runs a part of the node outside a node (tests, benchmarks, tools), so it
    sees every setting with its one declared default instead of inventing its own.
    """
    values = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    home = home if home is not None else default_home({})
    return Settings(home, values, sources).with_overrides(overrides or {})


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
