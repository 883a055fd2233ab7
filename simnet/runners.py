"""Scenario kinds and the runner module behind each, with what each one needs to exist.

A runner module has ``DEFAULTS`` (its ``[workload]`` keys) and ``async run(scenario,
run_dir) -> RunResult``. A kind whose subsystem is not in this build fails with
:class:`NotAvailableError` naming what it needs; it never produces made-up numbers.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from bitterbot.simnet.errors import NotAvailableError, ScenarioError


@dataclass(frozen=True)
class Kind:
    module: str  # runner module under bitterbot.simnet
    needs: tuple[str, ...]  # modules that must be importable for a run
    what: str  # human name of what is needed


KINDS: dict[str, Kind] = {
    "discovery": Kind(
        "bitterbot.simnet.run_discovery",
        ("bitterbot.node.p2p.host",),
        "node/p2p/host.py (P2PHost, DHT)",
    ),
    "gossip": Kind(
        "bitterbot.simnet.run_gossip",
        ("bitterbot.node.p2p.host", "bitterbot.node.rep.service", "bitterbot.protocol.attestation"),
        "node/rep/service.py and protocol/attestation.py (reputation gossip)",
    ),
    "sybil": Kind(
        "bitterbot.simnet.run_sybil",
        ("bitterbot.protocol.attestation", "bitterbot.protocol.trust"),
        "protocol/attestation.py and protocol/trust.py (trust computation)",
    ),
    "market": Kind(
        "bitterbot.simnet.run_market",
        ("bitterbot.node.p2p.host", "bitterbot.node.market", "bitterbot.node.pay.service"),
        "node/market.py and node/pay/service.py (publish, search, buy, install over the network)",
    ),
    "cheaters": Kind(
        "bitterbot.simnet.run_cheaters",
        ("bitterbot.protocol.channel", "bitterbot.node.pay.service"),
        "protocol/channel.py and node/pay/service.py (payment channels)",
    ),
}


@dataclass
class RunResult:
    metrics: dict[str, Any]
    series: dict[str, Any] = field(default_factory=dict)  # raw data for plots
    events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Unavailable:
    """Stands in for a runner not written yet, so scenario files still validate."""

    DEFAULTS: dict[str, Any] | None = None


def _available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing(kind: str) -> list[str]:
    spec = KINDS[kind]
    return [m for m in (spec.module, *spec.needs) if not _available(m)]


def runner_for(kind: str) -> Any:
    """The runner module for validation (its DEFAULTS); see :func:`load_runner` to run."""
    if kind not in KINDS:
        raise ScenarioError(
            f"unknown scenario kind {kind!r}", hint=f"kinds: {', '.join(sorted(KINDS))}"
        )
    if not _available(KINDS[kind].module):
        return _Unavailable
    return importlib.import_module(KINDS[kind].module)


def load_runner(kind: str) -> ModuleType:
    """The runner module, or :class:`NotAvailableError` saying what is missing."""
    runner_for(kind)
    absent = missing(kind)
    if absent:
        raise NotAvailableError(
            f"scenario kind {kind!r} is not available yet: needs {KINDS[kind].what}"
            f" (missing: {', '.join(absent)})",
            hint="run a scenario whose subsystem is built: `bitterbot simnet list` shows which",
        )
    return importlib.import_module(KINDS[kind].module)
