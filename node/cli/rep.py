"""CLI: `bitterbot rep` — rate, flag, audit, revoke, trust, distrust, show, roots, status.

Statements are signed with the node key and written to the node's ledger at once; the
running node gossips them within a second, a stopped node when it next starts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click

from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json
from bitterbot.node.p2p.peer_id import parse_peer
from bitterbot.protocol.errors import ValidationError


@click.group("rep")
def rep_group() -> None:
    """Reputation: rate and flag skills, vouch for peers, see why a skill is trusted."""


def _open(cli_ctx: CliContext) -> Any:
    from bitterbot.node.rep.service import RepConfig, Reputation
    from bitterbot.node.store import Store

    home = cli_ctx.home.ensure()
    identity = home.identity()
    store = Store(home.db_path)
    return Reputation(store, identity, RepConfig.from_settings(cli_ctx.settings()))


def _file_hash(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _done(cli_ctx: CliContext, rep: Any, att: Any, as_json: bool, what: str) -> None:
    running = cli_ctx.home.running_pid() is not None
    rep.ledger.store.close()
    if as_json:
        print_json({**att.describe(), "gossip": "now" if running else "at next node start"})
        return
    click.echo(f"{what} (attestation {att.seq}, id {att.id.hex()[:16]})")
    if running:
        click.echo("the running node gossips it within a second")
    else:
        click.echo("saved; it will be gossiped when the node starts (bitterbot node start)")


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


@rep_group.command("rate")
@home_option
@click.argument("skill")
@click.argument("stars", type=click.IntRange(1, 5))
@click.option("--text", default="", help="a short review (at most 280 bytes)")
@click.option("--publisher", default=None, help="the skill publisher's peer ID or key")
@json_option
@pass_cli
def rate_cmd(
    cli_ctx: CliContext, skill: str, stars: int, text: str, publisher: str | None, as_json: bool
) -> None:
    """Rate SKILL (its package ID) with STARS from 1 to 5."""
    pub = parse_peer(publisher) if publisher else None
    rep = _open(cli_ctx)
    att = rep.rate(skill, stars, text, pub)
    _done(cli_ctx, rep, att, as_json, f"rated {skill} {stars} star(s)")


@rep_group.command("flag")
@home_option
@click.argument("skill")
@click.option(
    "--evidence",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="file with the evidence (its SHA-256 is signed)",
)
@click.option("--reason", default="", help="what is wrong, in a sentence")
@json_option
@pass_cli
def flag_cmd(cli_ctx: CliContext, skill: str, evidence: Path, reason: str, as_json: bool) -> None:
    """Flag SKILL as malware or abuse, with evidence."""
    rep = _open(cli_ctx)
    att = rep.flag(skill, _file_hash(evidence), reason)
    _done(cli_ctx, rep, att, as_json, f"flagged {skill}")


@rep_group.command("audit")
@home_option
@click.argument("skill")
@click.option("--pass/--fail", "passed", default=None, help="the audit verdict")
@click.option(
    "--report",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="the audit report (its SHA-256 is signed)",
)
@click.option("--finding", "findings", multiple=True, help="a finding (repeatable)")
@json_option
@pass_cli
def audit_cmd(
    cli_ctx: CliContext,
    skill: str,
    passed: bool | None,
    report: Path,
    findings: tuple[str, ...],
    as_json: bool,
) -> None:
    """Publish an audit of SKILL: --pass or --fail, with the report file."""
    if passed is None:
        raise click.UsageError("give the verdict: --pass or --fail")
    rep = _open(cli_ctx)
    att = rep.audit(skill, passed, _file_hash(report), list(findings))
    _done(cli_ctx, rep, att, as_json, f"audit of {skill}: {'pass' if passed else 'fail'}")


@rep_group.command("revoke")
@home_option
@click.argument("skill")
@click.option("--reason", default="", help="why the version is withdrawn")
@json_option
@pass_cli
def revoke_cmd(cli_ctx: CliContext, skill: str, reason: str, as_json: bool) -> None:
    """Revoke a skill version you published (installs of it are then refused)."""
    rep = _open(cli_ctx)
    att = rep.revoke(skill, reason)
    _done(cli_ctx, rep, att, as_json, f"revoked {skill}")


def _trust(cli_ctx: CliContext, peer: str, vouch: bool, as_json: bool) -> None:
    key = parse_peer(peer)
    rep = _open(cli_ctx)
    if key == rep.identity.public_key:
        rep.ledger.store.close()
        raise ValidationError("that is this node's own key", hint="name another peer")
    att = rep.vouch(key, vouch)
    _done(cli_ctx, rep, att, as_json, f"{'vouched for' if vouch else 'distrusted'} {peer}")


@rep_group.command("trust")
@home_option
@click.argument("peer")
@json_option
@pass_cli
def trust_cmd(cli_ctx: CliContext, peer: str, as_json: bool) -> None:
    """Vouch for PEER: it becomes one of your trust roots."""
    _trust(cli_ctx, peer, True, as_json)


@rep_group.command("distrust")
@home_option
@click.argument("peer")
@json_option
@pass_cli
def distrust_cmd(cli_ctx: CliContext, peer: str, as_json: bool) -> None:
    """Distrust PEER: its statements and those it vouched for stop counting for you."""
    _trust(cli_ctx, peer, False, as_json)


@rep_group.command("show")
@home_option
@click.argument("skill")
@click.option("--publisher", default=None, help="the publisher's peer ID or key, if known")
@json_option
@pass_cli
def show_cmd(cli_ctx: CliContext, skill: str, publisher: str | None, as_json: bool) -> None:
    """Score, tier and the attestations that decided them, for SKILL."""
    pub = parse_peer(publisher) if publisher else None
    rep = _open(cli_ctx)
    assessment = rep.assess(skill, pub).describe()
    rep.ledger.store.close()
    if as_json:
        print_json(assessment)
        return
    from rich.console import Console
    from rich.table import Table

    score = assessment["score"]
    console = Console()
    console.print(
        f"[bold]{skill}[/bold]: {assessment['tier']}"
        + (f", score {score:.2f}/5" if score is not None else ", no weighted score")
        + f", support {assessment['support']:.4f}"
    )
    for reason in assessment["reasons"]:
        console.print(f"  - {reason}")
    if assessment["evidence"]:
        table = Table("effect", "attester", "weight", "trusted", "when (ms)")
        for ev in assessment["evidence"]:
            table.add_row(
                ev["effect"],
                ev["attester"][:16],
                f"{ev['weight']:.4f}",
                "yes" if ev["trusted"] else "no",
                str(ev["ts"]),
            )
        console.print(table)


@rep_group.command("roots")
@home_option
@json_option
@pass_cli
def roots_cmd(cli_ctx: CliContext, as_json: bool) -> None:
    """Your trust roots (this node, configured auditors, peers you vouched for)."""
    from bitterbot.protocol.identity import encode_key

    rep = _open(cli_ctx)
    rows = []
    for key in sorted(rep.graph.roots()):
        info = rep.graph.peer_info(key)
        why = (
            "this node"
            if key == rep.identity.public_key
            else "configured (rep.roots)"
            if key in rep.graph.configured_roots
            else "you vouched for it"
        )
        rows.append({"key": encode_key(key), "trust": info["trust"], "why": why})
    rep.ledger.store.close()
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['key']}  trust {row['trust']:.4f}  ({row['why']})")


@rep_group.command("status")
@home_option
@json_option
@pass_cli
def status_cmd(cli_ctx: CliContext, as_json: bool) -> None:
    """Ledger size, pending (not yet gossiped) attestations, attesters, roots."""
    rep = _open(cli_ctx)
    status = rep.status()
    rep.ledger.store.close()
    if as_json:
        print_json(status)
        return
    for key, value in status.items():
        click.echo(f"{key}: {value}")


COMMANDS: list[click.Command] = [rep_group]
