"""The ``bitterbot`` command. Errors are printed here, once, with what to do next."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from bitterbot.node.cli.common import CliContext, bench, home_option, pass_cli, print_json
from bitterbot.node.config import default_home
from bitterbot.protocol.errors import BitterbotError
from bitterbot.protocol.identity import encode_key


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="node home folder [env BITTERBOT_HOME, default ~/.bitterbot]",
)
@click.option("--debug", is_flag=True, help="show tracebacks and debug logs")
@click.version_option(package_name="bitterbot")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, debug: bool) -> None:
    """Bitterbot: a private AI agent on your own machine, and a peer-to-peer skill market."""
    ctx.obj = CliContext(home_path=(home or default_home()).expanduser().absolute(), debug=debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command("id")
@home_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def id_command(cli_ctx: CliContext, as_json: bool) -> None:
    """Print this node's peer ID (creates the identity on first use)."""
    from bitterbot.node.p2p.peer_id import peer_id_of

    ident = cli_ctx.home.ensure().identity()
    peer_id = peer_id_of(ident)
    if as_json:
        print_json({"peer_id": peer_id, "public_key": encode_key(ident.public_key)})
    else:
        click.echo(peer_id)


@cli.group("config")
def config_group() -> None:
    """Settings."""


@config_group.command("show")
@home_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def config_show(cli_ctx: CliContext, as_json: bool) -> None:
    """Print every setting, its value, where the value came from, and what it does."""
    rows = cli_ctx.settings().describe()
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("setting", "value", "source", "description")
    for row in rows:
        table.add_row(row["name"], repr(row["value"]), row["source"], row["description"])
    Console().print(table)


#: Entry-point group through which installed packages add CLI commands (simnet is one).
PLUGIN_GROUP = "bitterbot.cli"
BENCH_MODULES = ("node", "agent", "router", "skill", "docs", "market", "rep", "pay")


def _register() -> None:
    """Attach each noun's commands, then the plugins' (import failures stay visible)."""
    import importlib
    from importlib.metadata import entry_points

    from bitterbot.node.cli import agent, docs, market, node, pay, rep, router, skill

    for module in (node, agent, router, skill, docs, market, rep, pay):
        for command in module.COMMANDS:
            cli.add_command(command)
    for plugin in entry_points(group=PLUGIN_GROUP):
        for command in plugin.load():
            cli.add_command(command)
    for name in BENCH_MODULES:  # each attaches its commands to the ``bench`` group
        importlib.import_module(f"bitterbot.node.bench.{name}")

    cli.add_command(bench)


_register()


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BitterbotError as exc:
        if debug:
            raise
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  what to do: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
