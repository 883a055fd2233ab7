"""CLI: ``bitterbot node start|status`` and ``bitterbot bench node``."""

from __future__ import annotations

import signal
from typing import Any

import click

from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json
from bitterbot.protocol.errors import BitterbotError, first_error

SHUTDOWN_DEADLINE_S = 4.5
SEED_REPORT_AFTER_S = 10.0


@click.group("node")
def node_group() -> None:
    """Run this node and look at it."""


@node_group.command("start")
@home_option
@click.option(
    "--listen",
    multiple=True,
    metavar="MULTIADDR",
    help="libp2p listen address (repeatable) [node.listen]",
)
@click.option(
    "--seed",
    multiple=True,
    metavar="MULTIADDR",
    help="seed peer .../p2p/<id> (repeatable) [node.seeds]",
)
@click.option("--api", "api_listen", metavar="HOST:PORT", help="local API address [api.listen]")
@click.option(
    "--metrics", "metrics_listen", metavar="HOST:PORT", help="metrics address [metrics.listen]"
)
@pass_cli
def start_command(
    cli_ctx: CliContext,
    listen: tuple[str, ...],
    seed: tuple[str, ...],
    api_listen: str | None,
    metrics_listen: str | None,
) -> None:
    """Start the node and run until Ctrl-C (SIGINT) or SIGTERM."""
    from bitterbot.node.p2p.peers import parse_listen_addr, parse_peer_addr
    from bitterbot.node.service import quiet_libp2p_logs

    settings = cli_ctx.settings(
        **{
            "node.listen": list(listen) or None,
            "node.seeds": list(seed) or None,
            "api.listen": api_listen,
            "metrics.listen": metrics_listen,
        }
    )
    for addr in settings["node.listen"]:  # fail before anything starts
        parse_listen_addr(addr)
    for addr in settings["node.seeds"]:
        parse_peer_addr(addr)
    quiet_libp2p_logs(cli_ctx.debug)

    import trio

    try:
        trio.run(_run_node, settings)
    except BaseExceptionGroup as group:
        raise first_error(group, (BitterbotError, KeyboardInterrupt)) or group from None


async def _run_node(settings: Any) -> None:
    import trio

    from bitterbot.node.service import NodeService
    from bitterbot.node.subsystems import default_starters

    service = NodeService(settings, starters=default_starters())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, service, nursery)
        info = await nursery.start(service.run)
        _print_banner(service, info)
        nursery.start_soon(_report_network, service)
        await service.stopped.wait()
        nursery.cancel_scope.cancel()
    click.echo("stopped")


async def _watch_signals(service: Any, nursery: Any) -> None:
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            click.echo(f"stopping ({signal.Signals(signum).name})...", err=True)
            service.stop()
            break
        # a hung teardown must not keep the process: hard deadline, then cancel all
        with trio.move_on_after(SHUTDOWN_DEADLINE_S):
            await service.stopped.wait()
            return
        nursery.cancel_scope.cancel()


def _print_banner(service: Any, info: dict[str, Any]) -> None:
    p2p = service.ctx.p2p
    click.echo(f"Bitterbot node {info['peer_id']}")
    for addr in p2p.listen_addrs():
        click.echo(f"  listening  {addr}")
    click.echo(f"  API        http://{info['api']}  (token: {service.home.path / 'api.token'})")
    click.echo(f"  metrics    http://{info['metrics']}/metrics")
    seeds = service.settings["node.seeds"]
    if seeds:
        click.echo(f"  network    joining through {len(seeds)} seed(s)")
    elif p2p.status()["network"] == "joining":
        click.echo("  network    reconnecting to peers known from earlier runs")
    else:
        click.echo(
            "  network    standalone: no seeds given; other nodes can join with "
            "--seed <one of the addresses above>"
        )
    click.echo("Press Ctrl-C to stop.")


async def _report_network(service: Any) -> None:
    """Say when the node joins, and say clearly when no seed answers (retries go on)."""
    import trio

    p2p = service.ctx.p2p
    with trio.move_on_after(SEED_REPORT_AFTER_S):
        await p2p.first_round_done.wait()
        await trio.sleep(0.2)  # let a fresh connection settle
    state = "joined" if p2p.connected_peers() else "alone"
    if state == "joined":
        click.echo(f"network: joined ({len(p2p.connected_peers())} peer(s) connected)")
    elif p2p.status()["network"] == "joining":
        problems = "; ".join(p2p.seed_errors.values()) or "no answer"
        click.echo(
            f"warning: cannot reach any seed yet ({problems}). Still retrying with backoff; "
            "check the --seed addresses and that the seeds are running.",
            err=True,
        )
    while True:
        await trio.sleep(2)
        now = "joined" if p2p.connected_peers() else "alone"
        if now != state:
            if now == "joined":
                click.echo(f"network: joined ({len(p2p.connected_peers())} peer(s) connected)")
            elif p2p.status()["network"] == "joining":
                click.echo("network: lost all peers; reconnecting", err=True)
            state = now


@node_group.command("status")
@home_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def status_command(cli_ctx: CliContext, as_json: bool) -> None:
    """Ask the running node of this home for its status (through its local API)."""
    from bitterbot.node.api.client import call_node

    status = call_node(cli_ctx.home_path, "GET", "/v1/node/status", timeout=10)
    if as_json:
        print_json(status)
        return
    click.echo(f"peer id         {status['peer_id']}")
    click.echo(f"network         {status['network']}")
    click.echo(f"uptime          {status['uptime_s']:.0f} s")
    click.echo(f"routing table   {status['routing_table_size']} peer(s)")
    click.echo(f"connected       {len(status['connected_peers'])} peer(s)")
    for peer in status["connected_peers"]:
        click.echo(f"  {peer}")
    for addr in status["listen_addrs"]:
        click.echo(f"listening       {addr}")
    for peer, problem in (status.get("seed_errors") or {}).items():
        click.echo(f"seed problem    {peer}: {problem}")


COMMANDS: list[click.Command] = [node_group]
