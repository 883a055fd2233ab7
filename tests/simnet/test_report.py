"""The report writer: Markdown with targets and metrics, and real PNG plots."""

from __future__ import annotations

import json

from bitterbot.simnet.report import write_report
from bitterbot.simnet.runners import RunResult
from bitterbot.simnet.scenarios import evaluate_targets, load


def test_report_has_targets_metrics_events_and_plots(tmp_path):
    scenario = load("churn")
    result = RunResult(
        metrics={"lookup_success_rate": 0.98, "lookup_latency_p95_ms": 420.0, "nodes": 30},
        series={
            "lookup_latency_ms": [100.0, 200.0, 300.0, 420.0],
            "lookup_samples": [(0.1, True), (1.5, False), (2.2, True)],
            "down_fraction_over_time": [(0.0, 0.0), (1.0, 0.3)],
            "trust_scores": {"honest": [0.8, 0.9], "sybil": [0.0, 0.01]},
            "delivery_ms": [10.0, 30.0],
        },
        events=[
            {"at_s": 1.0, "phase_s": 1.0, "event": "kill", "node": 4},
            {"at_s": 2.0, "phase_s": 2.0, "event": "partition", "groups": 2},
        ],
        notes=["a note"],
    )
    targets = evaluate_targets(scenario.targets, result.metrics)
    path = write_report(tmp_path, scenario, result, targets)
    text = path.read_text()
    assert "| `lookup_success_rate` | min 0.99 | 0.98 | **no** |" in text
    assert "| 1.0 | kill | node=4 |" in text
    assert "a note" in text
    for png in (
        "lookup_latency_cdf.png",
        "success_over_time.png",
        "trust_scores.png",
        "delivery_cdf.png",
    ):
        data = (tmp_path / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 2000
        assert f"]({png})" in text
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["nodes"] == 30
    assert saved["targets"][0]["met"] is False
