"""Scenario files: TOML in ``simnet/scenarios/``, validated against each runner's defaults.

A scenario file::

    name = "churn"                 # defaults to the file name
    kind = "discovery"             # which runner drives it (see RUNNERS)
    description = "one line for `bitterbot simnet list`"
    seed = 1                       # every random choice derives from it

    [network]                      # harness: size, placement, latency/loss shim
    nodes = 30
    [workload]                     # what the nodes do (runner specific)
    [churn]                        # down_fraction, interval_s (0 = no churn)
    [partition]                    # groups, at_s, heal_s (groups = 0: none)
    [targets]                      # metric = { min = x } or { max = y }

Every section and key must be one the runner knows (its ``DEFAULTS``), so a typo is an
error instead of a silently ignored parameter.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bitterbot.simnet.errors import ScenarioError

BUILTIN_DIR = Path(str(resources.files("bitterbot.simnet") / "scenarios"))

#: Harness parameters every scenario shares.
NETWORK_DEFAULTS: dict[str, Any] = {
    "nodes": 10,
    "seeds": 3,
    "nodes_per_worker": 12,
    "join_batch": 5,
    "settle_s": 2.0,
    "delay_ms": 0.0,
    "loss": 0.0,
}
CHURN_DEFAULTS: dict[str, Any] = {"down_fraction": 0.0, "interval_s": 2.0}
PARTITION_DEFAULTS: dict[str, Any] = {"groups": 0, "at_s": 0.0, "heal_s": 0.0}


@dataclass
class Scenario:
    name: str
    kind: str
    description: str
    seed: int
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = ""

    def section(self, name: str) -> dict[str, Any]:
        return self.params.get(name, {})

    @property
    def nodes(self) -> int:
        return int(self.params["network"]["nodes"])

    def with_overrides(
        self, *, nodes: int | None = None, seed: int | None = None, backend: str | None = None
    ) -> Scenario:
        out = copy.deepcopy(self)
        if backend is not None:
            if "backend" not in out.params.get("workload", {}):
                raise ScenarioError(
                    f"the {out.kind} scenario makes no payments, so it has no backend",
                    hint="--backend applies to the market and cheaters scenarios",
                )
            out.params["workload"]["backend"] = backend
        if nodes is not None:
            if nodes < 2:
                raise ScenarioError(
                    "a simnet needs at least 2 nodes", hint="pass --nodes 2 or more"
                )
            out.params["network"]["nodes"] = nodes
            out.params["network"]["seeds"] = min(out.params["network"]["seeds"], nodes - 1)
        if seed is not None:
            out.seed = seed
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "seed": self.seed,
            "params": self.params,
            "targets": self.targets,
        }


def _merge(section: str, given: Any, defaults: dict[str, Any], where: str) -> dict[str, Any]:
    if given is None:
        return dict(defaults)
    if not isinstance(given, dict):
        raise ScenarioError(f"{where}: [{section}] must be a table")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key(s) in [{section}]: {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(defaults))}",
        )
    out = dict(defaults)
    for key, value in given.items():
        default = defaults[key]
        if isinstance(default, bool) != isinstance(value, bool) or (
            isinstance(default, int | float) and not isinstance(value, int | float)
        ):
            raise ScenarioError(
                f"{where}: [{section}] {key} = {value!r} has the wrong type",
                hint=f"expected something like {default!r}",
            )
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            raise ScenarioError(f"{where}: [{section}] {key} must be an integer")
        out[key] = value
    return out


def parse(text: str, *, where: str, default_name: str = "") -> Scenario:
    from bitterbot.simnet.runners import runner_for

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where}: not valid TOML: {exc}") from exc
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise ScenarioError(f'{where}: missing kind = "..."', hint='e.g. kind = "discovery"')
    runner = runner_for(kind)
    allowed = {"name", "kind", "description", "seed", "network", "workload", "churn"}
    allowed |= {"partition", "targets"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown top-level key(s): {', '.join(unknown)}")
    seed = data.get("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ScenarioError(f"{where}: seed must be an integer")
    params = {
        "network": _merge("network", data.get("network"), NETWORK_DEFAULTS, where),
        "workload": (
            dict(data.get("workload") or {})
            if runner.DEFAULTS is None  # runner not written yet: load_runner refuses to run
            else _merge("workload", data.get("workload"), runner.DEFAULTS, where)
        ),
        "churn": _merge("churn", data.get("churn"), CHURN_DEFAULTS, where),
        "partition": _merge("partition", data.get("partition"), PARTITION_DEFAULTS, where),
    }
    targets: dict[str, dict[str, float]] = {}
    for metric, bound in (data.get("targets") or {}).items():
        if (
            not isinstance(bound, dict)
            or not bound
            or set(bound) - {"min", "max"}
            or not all(isinstance(v, int | float) for v in bound.values())
        ):
            raise ScenarioError(
                f"{where}: target {metric} must look like {{ min = 0.99 }} or {{ max = 500 }}"
            )
        targets[metric] = {k: float(v) for k, v in bound.items()}
    return Scenario(
        name=str(data.get("name") or default_name or kind),
        kind=kind,
        description=str(data.get("description", "")),
        seed=seed,
        params=params,
        targets=targets,
        source=where,
    )


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if not path.suffix == ".toml" or not path.exists():
        path = BUILTIN_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise ScenarioError(
            f"no scenario named {name_or_path!r}",
            hint=f"built-in scenarios: {', '.join(builtin_names())}; or pass a .toml path",
        )
    return parse(path.read_text(encoding="utf-8"), where=str(path), default_name=path.stem)


def evaluate_targets(
    targets: dict[str, dict[str, float]], metrics: dict[str, Any]
) -> list[dict[str, Any]]:
    """One row per target: the measured value and whether it met the bound."""
    rows = []
    for metric, bound in targets.items():
        value = metrics.get(metric)
        if isinstance(value, bool):
            value = int(value)  # yes/no metrics compare as 1/0
        ok = isinstance(value, int | float)
        if ok and "min" in bound:
            ok = value >= bound["min"]
        if ok and "max" in bound:
            ok = value <= bound["max"]
        rows.append({"metric": metric, "value": value, **bound, "met": bool(ok)})
    return rows
