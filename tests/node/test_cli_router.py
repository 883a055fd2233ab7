"""CLI: router eval, privacy redact/log, bench router/privacy/escalation (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bitterbot.node.home import Home
from bitterbot.node.privacy_log import PrivacyLog
from bitterbot.node.store import Store

# shared/ sits beside the repository (here and in CI)
CLINC = Path(__file__).resolve().parents[2].parent / "shared/data/clinc150/train_val.json"


def run(*args: str, home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "BITTERBOT_HOME": str(home)},
        timeout=300,
    )


@pytest.fixture(scope="module")
def clinc_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CLINC.exists():
        pytest.skip("shared CLINC150 data not present")
    data = json.loads(CLINC.read_text())
    intents = sorted({y for _, y in data["train"]})[20:30]
    subset = {
        "train": [r for r in data["train"] if r[1] in intents][::2],
        "val": [r for r in data["val"] if r[1] in intents],
        "oos_train": data["oos_train"][:40],
        "oos_val": data["oos_val"][:30],
    }
    path = tmp_path_factory.mktemp("clinc") / "subset.json"
    path.write_text(json.dumps(subset))
    return path


def test_privacy_redact_prints_what_would_leave(tmp_path: Path) -> None:
    text = "Mail anna.k@example.com or call +44 20 7946 0958 about card 4111 1111 1111 1111."
    out = run("privacy", "redact", "--json", home=tmp_path, stdin=text)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "anna.k@example.com" not in data["redacted"] and "4111" not in data["redacted"]
    assert {e["type"] for e in data["entities"]} == {"EMAIL", "PHONE", "CARD"}
    for e in data["entities"]:
        assert set(e) == {"type", "start", "end"} and 0 <= e["start"] < e["end"] <= len(text)
    plain = run("privacy", "redact", home=tmp_path, stdin=text)
    assert plain.stdout.strip() == data["redacted"].strip()


def test_privacy_log_lists_what_the_node_sent(tmp_path: Path) -> None:
    empty = run("privacy", "log", "--json", home=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == []
    store = Store(Home(tmp_path).db_path)
    PrivacyLog(store).record_request(
        provider="http://p", model="m", payload=b"x" * 321, entity_counts={"EMAIL": 2}
    )
    store.close()
    out = run("privacy", "log", "--json", home=tmp_path)
    (entry,) = json.loads(out.stdout)
    assert entry["bytes_sent"] == 321 and entry["entity_counts"] == {"EMAIL": 2}
    assert len(entry["payload_sha256"]) == 64
    text = run("privacy", "log", home=tmp_path)
    assert "321 bytes" in text.stdout and "EMAIL=2" in text.stdout


def test_router_eval_prints_the_metrics(tmp_path: Path, clinc_subset: Path) -> None:
    out = run("router", "eval", "--data", str(clinc_subset), "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"in_scope_accuracy", "oos_recall", "oos_precision", "p50_ms", "p99_ms",
            "model_bytes", "n_eval"} <= set(data)  # fmt: skip
    assert data["n_eval"] == 200 + 30
    assert data["in_scope_accuracy"] > 0.85 and data["model_bytes"] < 100_000_000
    cv = data["cross_validated"]  # next to the held-out figures, from the training splits
    assert cv["folds"] == 5 and cv["n_in_scope"] == 500 and cv["n_oos"] == 40
    assert cv["in_scope_accuracy"] > 0.85 and 0 <= cv["oos_recall"] <= 1
    assert data["n_oos_eval"] == 30 and data["oos_recall_margin"] > 0
    assert data["train_splits"] == ["train", "oos_train"]  # the development splits not scored
    text = run("router", "eval", "--data", str(clinc_subset), home=tmp_path)
    assert "cross-validated (5 folds" in text.stdout and "rests on 30 queries" in text.stdout
    bad = run("router", "eval", "--data", str(clinc_subset), "--eval-split", "test", home=tmp_path)
    assert bad.returncode != 0 and "no split 'test'" in bad.stderr
    assert "Traceback" not in bad.stderr
    both = run("router", "eval", "--data", str(clinc_subset), "--train-split", "val", home=tmp_path)
    assert both.returncode != 0 and "both trained on and scored" in both.stderr
    older = run("router", "eval", "--data", str(clinc_subset), "--train-split", "train",
                "--oos-train-split", "oos_train", "--json", home=tmp_path)  # fmt: skip
    assert older.returncode == 0, older.stderr
    assert json.loads(older.stdout)["train_splits"] == ["train", "oos_train"]


def test_bench_escalation_reports_share_and_cost(tmp_path: Path, clinc_subset: Path) -> None:
    out = run("bench", "escalation", "--data", str(clinc_subset), "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert 0 < data["share_escalated"] < 0.2
    assert data["cost_per_1000_usd"] < data["cloud_only_cost_per_1000_usd"]
    assert data["tasks"] == 230 + data["open_tasks"]


def test_bench_router_and_bench_privacy(tmp_path: Path) -> None:
    out = run("bench", "router", "--queries", "20", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["queries"] == 20 and 0 < data["p50_ms"] <= data["p99_ms"]
    assert data["model_bytes"] < 100_000_000
    assert 0.5 < data["cv_in_scope_accuracy"] <= 1 and 0 <= data["cv_local_llm_recall"] <= 1
    csv_path = tmp_path / "pupa.csv"
    csv_path.write_text(
        "user_query,pii_units\n"
        '"Rachel Zheng works at H&R Technology, mail rachel@hr.example",rachel zheng||h&r technology\n'
        '"Book a table for Johnny Bay at 7",johnny bay\n'
    )
    out = run("bench", "privacy", "--data", str(csv_path), "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["units"] == 3 and data["leakage"] == 0.0 and data["queries"] == 2


async def test_terminal_confirmation_shows_the_payload_and_refuses_without_a_tty(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bitterbot.agent.orchestrator import CloudPreview
    from bitterbot.node.cli.router import confirm_on_terminal

    preview = CloudPreview(
        [{"role": "user", "content": "write to [EMAIL_1]"}], 123, {"EMAIL": 1}, 45, "http://p", "m"
    )
    assert await confirm_on_terminal(preview) is False  # pytest's stdin is not a terminal
    err = capsys.readouterr().err
    assert "write to [EMAIL_1]" in err and "123 bytes" in err and "EMAIL=1" in err


def test_router_route_uses_the_installed_builtin_skills(tmp_path: Path) -> None:
    out = run("router", "route", "what is 17 times 23", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["route"] == "calculator" and "calculator" in data["skills"]
    assert (tmp_path / "cache" / "router-head.npz").is_file()  # reused on the next call
    general = json.loads(
        run("router", "route", "who painted the mona lisa", "--json", home=tmp_path).stdout
    )
    assert general["route"] == "local-llm"
    assert general["escalation"]["escalate"] is False  # cloud is off until configured
