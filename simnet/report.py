"""Run reports: ``report.md`` with the metrics, targets and events, plus matplotlib PNGs.

Plots are drawn from :attr:`RunResult.series` when the data is there:
``lookup_latency_ms`` and ``delivery_ms`` give latency CDFs, ``lookup_samples`` gives the
success rate over time (with churn/partition events marked), ``trust_scores`` gives honest
vs Sybil scores. matplotlib runs headless (Agg) and is imported only here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bitterbot.simnet.runners import RunResult
from bitterbot.simnet.scenarios import Scenario
from bitterbot.simnet.stats import cdf_points, windowed_rate


def _plot_cdf(path: Path, values: list[float], title: str, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = cdf_points(values)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(xs, ys, where="post")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of samples")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_rate(
    path: Path,
    samples: list[Any],
    events: list[dict[str, Any]],
    down: list[Any],
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = 1.0
    rows = windowed_rate([(float(t), bool(ok)) for t, ok in samples], window)
    fig, ax = plt.subplots(figsize=(7, 4))
    # one dot per window, sized by how many lookups it holds (no lines: windows can be empty)
    ax.scatter(
        [r[0] + window / 2 for r in rows],
        [r[1] for r in rows],
        s=[12 + 6 * r[2] for r in rows],
        alpha=0.7,
        label="lookups (dot size: count)",
    )
    marks = {"partition": "red", "heal": "green"}
    for event in events:
        if event["event"] in marks:
            ax.axvline(event.get("phase_s", event["at_s"]), color=marks[event["event"]], ls="--")
    ax.set_title(title)
    ax.set_xlabel("seconds into the workload")
    ax.set_ylabel(f"success rate per {window:.0f} s")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if len(down) > 1:
        ax.step(
            [p[0] for p in down],
            [p[1] for p in down],
            where="post",
            color="gray",
            alpha=0.7,
            label="fraction of nodes down",
        )
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_scores(path: Path, scores: dict[str, list[float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(scores)
    ax.boxplot([scores[n] for n in names])
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_title(title)
    ax.set_ylabel("trust weight behind the skill")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(out: Path, result: RunResult) -> list[str]:
    made: list[str] = []
    series = result.series
    if series.get("lookup_latency_ms"):
        _plot_cdf(
            out / "lookup_latency_cdf.png",
            series["lookup_latency_ms"],
            "DHT lookup latency (successful lookups)",
            "ms",
        )
        made.append("lookup_latency_cdf.png")
    if series.get("delivery_ms"):
        _plot_cdf(
            out / "delivery_cdf.png",
            series["delivery_ms"],
            "time until a node holds the message",
            "ms",
        )
        made.append("delivery_cdf.png")
    if series.get("lookup_samples"):
        _plot_rate(
            out / "success_over_time.png",
            series["lookup_samples"],
            result.events,
            series.get("down_fraction_over_time", []),
            "lookup success rate over time",
        )
        made.append("success_over_time.png")
    if series.get("trust_scores"):
        _plot_scores(
            out / "trust_scores.png", series["trust_scores"], "trust scores: honest vs Sybil"
        )
        made.append("trust_scores.png")
    return made


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "n/a" if value is None else str(value)


def render_markdown(
    scenario: Scenario, result: RunResult, targets: list[dict[str, Any]], plots: list[str]
) -> str:
    lines = [
        f"# simnet report: {scenario.name}",
        "",
        f"{scenario.description}".strip(),
        "",
        f"- kind: `{scenario.kind}`, seed: `{scenario.seed}`, nodes: {scenario.nodes}",
        f"- scenario file: `{scenario.source}`",
        "",
        "## Targets",
        "",
    ]
    if targets:
        lines += ["| metric | bound | measured | met |", "|---|---|---|---|"]
        for row in targets:
            bound = " and ".join(f"{k} {row[k]:g}" for k in ("min", "max") if k in row)
            lines.append(
                f"| `{row['metric']}` | {bound} | {_fmt(row['value'])} | "
                f"{'yes' if row['met'] else '**no**'} |"
            )
    else:
        lines.append("(this scenario declares no targets)")
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| `{k}` | {_fmt(v)} |" for k, v in result.metrics.items()]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p}]({p})" for p in plots]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    faults = [e for e in result.events if e["event"] not in {"start"} or e.get("restart")]
    if faults:
        lines += [
            "",
            "## Fault events",
            "",
            "Times are seconds into the workload (negative: before it started).",
            "",
            "| at (s) | event | details |",
            "|---|---|---|",
        ]
        for event in faults[:200]:
            skip = {"at_s", "phase_s", "event"}
            details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in skip)
            lines.append(
                f"| {event.get('phase_s', event['at_s'])} | {event['event']} | {details} |"
            )
        if len(faults) > 200:
            lines.append(f"| ... | {len(faults) - 200} more | |")
    params = json.dumps(scenario.params, indent=2, sort_keys=True)
    lines += ["", "## Parameters", "", "```json", params, "```", ""]
    return "\n".join(lines)


def write_report(
    out: Path, scenario: Scenario, result: RunResult, targets: list[dict[str, Any]]
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(out, result)
    path = out / "report.md"
    path.write_text(render_markdown(scenario, result, targets, plots), encoding="utf-8")
    (out / "metrics.json").write_text(
        json.dumps({"metrics": result.metrics, "targets": targets}, indent=2), encoding="utf-8"
    )
    return path
