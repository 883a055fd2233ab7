"""``bitterbot bench router|escalation|privacy``: router latency, cloud share, privacy gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from bitterbot.node.cli.common import CliContext, bench, home_option, pass_cli, print_json
from bitterbot.node.cli.router import int8_option, read_json_file, router_encoder
from bitterbot.protocol.errors import ValidationError


@bench.command("router")
@home_option
@click.option("--queries", default=200, show_default=True, help="single queries to time")
@int8_option
@click.option("--json", "as_json", is_flag=True, help="print JSON (always JSON)")
@pass_cli
def bench_router(cli_ctx: CliContext, queries: int, int8: bool, as_json: bool) -> None:
    """Router latency (one query at a time), retrain time and model size."""
    import numpy as np

    from bitterbot.agent.router import GENERAL_REQUESTS, Router

    start = time.perf_counter()
    encoder = router_encoder(cli_ctx, int8)
    load_s = time.perf_counter() - start
    router = Router(encoder)
    sample_skills = _sample_skills()
    start = time.perf_counter()
    for skill in sample_skills:
        router.skills[skill.name] = skill
    router.retrain()
    first_train_s = time.perf_counter() - start
    start = time.perf_counter()
    router.remove_skill(sample_skills[0].name)
    retrain_s = time.perf_counter() - start
    texts = [f"{GENERAL_REQUESTS[i % len(GENERAL_REQUESTS)]} {i}" for i in range(queries)]
    times = [router.route(text).elapsed_ms for text in texts]
    assert router.head is not None
    cv = router.head.cv
    print_json(
        {
            "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3),
            "queries": len(times),
            "encoder_load_s": round(load_s, 3),
            "train_s": round(first_train_s, 3),
            "retrain_after_remove_s": round(retrain_s, 3),
            "model_bytes": encoder.model_bytes + router.head.nbytes,
            "head_bytes": router.head.nbytes,
            "skills": len(router.skills),
            # out-of-fold, on the sample skills' own examples and GENERAL_REQUESTS
            "cv_in_scope_accuracy": round(cv.in_scope_accuracy, 4) if cv else None,
            "cv_local_llm_recall": round(cv.background_recall, 4) if cv else None,
        }
    )


def _sample_skills() -> list[Any]:
    """A few skills like the ones the market ships, for benchmarks."""
    from bitterbot.agent.router import SkillIntent

    return [
        SkillIntent(
            "weather",
            "current weather and forecasts for a place",
            [
                "what's the weather in paris",
                "will it rain tomorrow",
                "how hot is it outside",
                "forecast for the weekend",
                "do i need an umbrella today",
            ],
        ),
        SkillIntent(
            "timer",
            "set, list and cancel timers and alarms",
            [
                "set a timer for ten minutes",
                "wake me up at 7am",
                "cancel my alarm",
                "how much time is left on the timer",
                "remind me in an hour",
            ],
        ),
        SkillIntent(
            "currency",
            "convert amounts between currencies at today's rate",
            [
                "convert 100 dollars to euros",
                "how many yen is 50 pounds",
                "exchange rate usd to chf",
                "what is 20 euros in dollars",
            ],
        ),
        SkillIntent(
            "calculator",
            "arithmetic: add, subtract, multiply, divide, percentages",
            [
                "what is 17 times 23",
                "15 percent of 80",
                "add 45 and 99",
                "divide 144 by 12",
                "square root of 81",
            ],
        ),
    ]


@bench.command("escalation")
@home_option
@click.option("--data", "data_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--open-share", default=0.1, show_default=True, help="share of open requests")
@click.option("--model", default="gpt-4o-mini", show_default=True, help="priced cloud model")
@click.option("--tokens-out", default=300, show_default=True, help="assumed answer tokens")
@click.option("--json", "as_json", is_flag=True, help="print JSON (always JSON)")
@pass_cli
def bench_escalation(
    cli_ctx: CliContext,
    data_path: Path,
    open_share: float,
    model: str,
    tokens_out: int,
    as_json: bool,
) -> None:
    """Replay a mixed workload (CLINC val + open requests): share escalated, cost per 1,000."""
    from bitterbot.agent.escalation import AUTO, OPEN_TASKS, Escalation, ReplayTask, replay
    from bitterbot.agent.router import ROUTER_MAX_TOKENS, fit_head

    if not 0 <= open_share < 1:
        raise ValidationError("--open-share must be in [0, 1)")
    data = read_json_file(data_path)
    encoder = router_encoder(cli_ctx)
    train = data.get("train", []) + data.get("oos_train", [])
    x = encoder.encode_layers([q for q, _ in train], batch_size=64, max_length=ROUTER_MAX_TOKENS)
    head = fit_head(x, [y for _, y in train], background="oos")
    texts = [q for q, _ in data.get("val", []) + data.get("oos_val", [])]
    n_open = round(len(texts) * open_share / (1 - open_share))
    texts += [OPEN_TASKS[i % len(OPEN_TASKS)] for i in range(n_open)]
    features = encoder.encode_layers(texts, batch_size=64, max_length=ROUTER_MAX_TOKENS)
    labels, _ = head.predict(features)
    tasks = [ReplayTask(t, label is not None) for t, label in zip(texts, labels, strict=True)]
    escalation = Escalation(cloud_url="http://provider", cloud_model=model, policy=AUTO)
    result = replay(tasks, escalation, tokens_out=tokens_out)
    result["open_tasks"] = n_open
    print_json(result)


@bench.command("privacy")
@click.option("--data", "data_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--split", is_flag=True, help="also report the tune and held-out halves")
@click.option("--no-ner", is_flag=True, help="heuristics only, without the NER model")
@click.option("--structured", default=300, show_default=True, help="synthetic PII sentences")
@click.option("--json", "as_json", is_flag=True, help="print JSON (always JSON)")
def bench_privacy(
    data_path: Path, split: bool, no_ner: bool, structured: int, as_json: bool
) -> None:
    """Leakage and words kept on a PUPA-format CSV (user_query, pii_units[, unit_kinds]),
    structured-PII leakage on a synthetic set, time per query and the model's cost."""
    from bitterbot.agent import privacy_eval
    from bitterbot.agent.privacy import PrivacyGate
    from bitterbot.node.metrics import rss_bytes

    rows = privacy_eval.read_rows(data_path)
    gate = PrivacyGate(ner=not no_ner)
    rss_before = rss_bytes()
    gate.warm_up()
    model = gate.model()
    result: dict[str, Any] = {
        "data": data_path.name,
        "ner": model.name if model else None,
        "load_s": round(model.load_seconds, 3) if model else None,
        "rss_load_mb": round((rss_bytes() - rss_before) / 2**20, 1),
    }
    result |= privacy_eval.leakage(rows, gate)
    if split:
        result["split"] = {
            half: privacy_eval.leakage(privacy_eval.split(rows, half), gate)
            for half in ("tune", "held_out")
        }
    result["structured"] = privacy_eval.structured_leakage(gate, structured)
    result["rss_mb"] = round(rss_bytes() / 2**20, 1)
    print_json(result)
