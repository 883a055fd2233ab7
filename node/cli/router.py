"""CLI: `bitterbot router eval`, `privacy redact|log|eval`, `bench router|escalation|privacy`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, cast

import click

from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json
from bitterbot.protocol.errors import ValidationError

MAX_STDIN_BYTES = 1 << 20


def router_encoder(cli_ctx: CliContext, int8: bool = False) -> Any:
    from bitterbot.agent.encoder import get_encoder

    return get_encoder(cli_ctx.home_path / "cache", quantized=int8)


int8_option = click.option(
    "--int8", is_flag=True, help="int8 encoder (23 MB instead of 91 MB, slightly less accurate)"
)


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(
            f"cannot read {path}: {exc}", hint="pass a JSON file in CLINC150 format"
        ) from exc


def installed_router(cli_ctx: CliContext) -> Any:
    """A :class:`~bitterbot.agent.router.Router` over this home's installed skills, its
    head cached in ``<home>/cache/router-head.npz`` (for ``router route`` and ``ask``)."""
    from bitterbot.agent.router import Router
    from bitterbot.node.skills_store import open_manager
    from bitterbot.node.store import Store

    home = cli_ctx.home.ensure()
    store = Store(home.db_path)
    try:
        manager = open_manager(home.path, store, cli_ctx.settings())
        try:
            intents = manager.intents()
        finally:
            manager.close()
    finally:
        store.close()
    router = Router(router_encoder(cli_ctx))
    router.set_skills(intents, head_cache=home.path / "cache" / "router-head.npz")
    return router


@click.group("router")
def router_group() -> None:
    """The intent router: which skill, the local model, or the cloud."""


@router_group.command("eval")
@home_option
@click.option("--data", "data_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option(
    "--train-split",
    "train_splits",
    multiple=True,
    help="split to train on (repeat for several); default: every development split "
    "(train, oos_train, val, oos_val) in the file that is not scored",
)
@click.option(
    "--oos-train-split",
    "oos_train_splits",
    multiple=True,
    help="the same as --train-split (kept for older scripts)",
)
@click.option("--eval-split", default="val", show_default=True)
@click.option("--oos-split", default="oos_val", show_default=True)
@click.option(
    "--features",
    type=click.Choice(["layers", "embedding"]),
    default="layers",
    show_default=True,
    help="layers: pooled layers 4-6 (best with many examples per intent); embedding: the "
    "sentence embedding the node's skill router uses",
)
@int8_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def router_eval(
    cli_ctx: CliContext,
    data_path: Path,
    train_splits: tuple[str, ...],
    oos_train_splits: tuple[str, ...],
    eval_split: str,
    oos_split: str,
    features: str,
    int8: bool,
    as_json: bool,
) -> None:
    """Train the router head on a CLINC150-format file and score it on other splits.

    Prints the held-out figures next to the cross-validated estimate over the training
    splits (the threshold is chosen from the latter; the eval splits choose nothing)."""
    from bitterbot.agent.router_eval import evaluate

    data = read_json_file(data_path)
    if not isinstance(data, dict):
        raise ValidationError(f"{data_path} is not a JSON object of splits")
    result = evaluate(
        data,
        router_encoder(cli_ctx, int8),
        train_splits=list(train_splits + oos_train_splits) or None,
        eval_split=eval_split,
        oos_split=oos_split or None,
        features=features,
    )
    if as_json:
        print_json(result)
        return
    cv = cast(dict[str, Any], result.pop("cross_validated"))
    for key, value in result.items():
        click.echo(f"{key:>18}: {value}")
    click.echo(
        f"cross-validated ({cv['folds']} folds over the training splits): in-scope accuracy "
        f"{cv['in_scope_accuracy']:.2%}, OOS recall {cv['oos_recall']:.2%} "
        f"+- {cv['oos_recall_margin']:.0%} ({cv['n_oos']} OOS examples)"
    )
    click.echo(
        f"OOS recall on {eval_split}/{oos_split} rests on {result['n_oos_eval']} queries: "
        f"+- {result['oos_recall_margin']:.0%} (95%)"
    )


@router_group.command("skills-eval")
@home_option
@click.option("--data", "data_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--skills", default=8, show_default=True, help="intents installed as skills")
@click.option("--examples", default=6, show_default=True, help="examples per skill")
@click.option("--rounds", default=5, show_default=True, help="seeded rounds to average")
@click.option(
    "--features", type=click.Choice(["embedding", "layers"]), default="embedding", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def router_skills_eval(
    cli_ctx: CliContext,
    data_path: Path,
    skills: int,
    examples: int,
    rounds: int,
    features: str,
    as_json: bool,
) -> None:
    """The node's job on a CLINC150-format file: a few intents as skills with a handful of
    examples each; share routed to the right skill, and share of other requests (other
    intents, out of scope) left to the local model."""
    from bitterbot.agent.router_eval import simulate_skills

    data = read_json_file(data_path)
    if not isinstance(data, dict):
        raise ValidationError(f"{data_path} is not a JSON object of splits")
    result = simulate_skills(
        data,
        router_encoder(cli_ctx),
        skills=skills,
        examples=examples,
        rounds=rounds,
        features=features,
    )
    if as_json:
        print_json(result)
        return
    for key, value in result.items():
        click.echo(f"{key:>26}: {value}")


@router_group.command("route")
@home_option
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def router_route(cli_ctx: CliContext, text: str, as_json: bool) -> None:
    """Where TEXT would go with the installed skills, and why (runs nothing, sends nothing)."""
    from bitterbot.agent.escalation import Escalation
    from bitterbot.agent.router import LOCAL_LLM

    router = installed_router(cli_ctx)
    decision = router.route(text)
    out: dict[str, Any] = {
        "route": decision.route,
        "reason": decision.reason,
        "candidate": decision.candidate,
        "score": round(decision.score, 3),
        "threshold": round(decision.threshold, 3),
        "elapsed_ms": round(decision.elapsed_ms, 3),
        "skills": sorted(router.skills),
    }
    if decision.route == LOCAL_LLM:  # what the escalation rule would say before the local model
        pre = Escalation.from_settings(cli_ctx.settings()).before_local(text)
        out["escalation"] = {"escalate": pre.escalate, "reason": pre.reason, "policy": pre.policy}
    if as_json:
        print_json(out)
        return
    click.echo(f"{out['route']}: {out['reason']}")
    if "escalation" in out:
        click.echo(f"cloud: {out['escalation']['reason']}")


async def confirm_on_terminal(preview: Any) -> bool:
    """``Orchestrator`` confirm callback for policy ``ask``: show exactly what would be sent
    (redacted messages, bytes, estimated cost) on stderr and ask y/N on the terminal."""
    import trio

    lines = [
        f"This request would go to {preview.provider} ({preview.model}): "
        f"{preview.bytes} bytes, about {preview.estimated_microusd} micro-USD.",
        "Redacted: "
        + (", ".join(f"{k}={v}" for k, v in sorted(preview.entity_counts.items())) or "nothing"),
    ]
    for message in preview.messages:
        lines.append(f"--- {message['role']} ---")
        lines.append(message["content"])
    click.echo("\n".join(lines), err=True)
    if not sys.stdin.isatty():
        click.echo("not a terminal: not sending", err=True)
        return False
    answer: bool = await trio.to_thread.run_sync(
        lambda: click.confirm("Send this to the cloud?", default=False, err=True)
    )
    return answer


def _stdin_text() -> str:
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise ValidationError(f"input over {MAX_STDIN_BYTES} bytes", hint="redact smaller pieces")
    return data.decode("utf-8", errors="replace")


@click.group("privacy")
def privacy_group() -> None:
    """The privacy gate: what would leave the device, and what did."""


@privacy_group.command("redact")
@click.option("--json", "as_json", is_flag=True, help="print JSON with entity spans")
def privacy_redact(as_json: bool) -> None:
    """Redact text from stdin: prints what would leave the device."""
    from bitterbot.agent.privacy import PrivacyGate

    red = PrivacyGate().redact(_stdin_text())
    if as_json:
        print_json({"redacted": red.redacted, "entities": [e.public() for e in red.entities]})
    else:
        click.echo(red.redacted)


@privacy_group.command("log")
@home_option
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def privacy_log(cli_ctx: CliContext, limit: int, as_json: bool) -> None:
    """Every request that left the device: time, provider, model, bytes, entities, hash."""
    from bitterbot.node.privacy_log import PrivacyLog
    from bitterbot.node.store import Store

    store = Store(cli_ctx.home.ensure().db_path)
    try:
        entries = PrivacyLog(store).entries(limit=limit)
    finally:
        store.close()
    if as_json:
        print_json(entries)
        return
    if not entries:
        click.echo("nothing has left this device")
    for e in entries:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["time_s"]))
        counts = ", ".join(f"{k}={v}" for k, v in sorted(e["entity_counts"].items())) or "none"
        click.echo(
            f"{stamp}Z {e['provider']} {e['model']} {e['bytes_sent']} bytes, "
            f"redacted {counts}, sha256 {e['payload_sha256'][:16]}"
        )


COMMANDS: list[click.Command] = [router_group, privacy_group]
