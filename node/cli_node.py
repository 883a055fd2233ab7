"""CLI: ``bitterbot node start|status`` and ``bitterbot bench node``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from bitterbot.node.cli_common import CliContext, bench, home_option, pass_cli, print_json
from bitterbot.protocol.errors import BitterbotError, NetworkError

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
    from bitterbot.node.p2p_peers import parse_listen_addr, parse_peer_addr
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
        raise _single_error(group) from None


def _single_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The one BitterbotError inside trio's exception groups, so main() prints it plainly."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, BitterbotError | KeyboardInterrupt):
            return exc
    return group


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
    from bitterbot.node.client import call_node

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


# --- benchmark ---------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@bench.command("node")
@click.option("--json", "as_json", is_flag=True, help="print JSON (the default output anyway)")
@click.option(
    "--idle", "idle_s", default=5.0, show_default=True, help="seconds idle before measuring RSS"
)
@click.option(
    "--with-model",
    is_flag=True,
    help="let the agent preload its default model (the RSS target is without a model)",
)
def bench_node(as_json: bool, idle_s: float, with_model: bool) -> None:
    """Start a real `bitterbot node start` child: start-to-ready time, idle RSS, stop time."""
    import httpx

    from bitterbot.node.home import Home

    with tempfile.TemporaryDirectory(prefix="bitterbot-bench-") as tmp:
        home = Home(Path(tmp) / "home")
        cmd = [
            sys.executable,
            "-c",
            "from bitterbot.node.cli import main; main()",
            "--home",
            str(home.path),
            "node",
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("BITTERBOT_")}
        env["BITTERBOT_AGENT_PRELOAD"] = "true" if with_model else "false"
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            ready_s = None
            while time.perf_counter() - t0 < 60 and child.poll() is None:
                running = home.read_running() if home.path.exists() else None
                if running:
                    token = home.api_token(create=False)
                    resp = httpx.get(
                        f"http://{running['api']}/v1/node/status",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=5,
                    )
                    if resp.status_code == 200:
                        ready_s = time.perf_counter() - t0
                        break
                time.sleep(0.02)
            if ready_s is None:
                err = (
                    child.stderr.read().decode(errors="replace") if child.poll() is not None else ""
                )
                raise NetworkError(f"the node did not become ready within 60 s {err.strip()}")
            ready_rss = _rss_mb(child.pid)
            cpu0, wall0 = _cpu_s(child.pid), time.perf_counter()
            time.sleep(idle_s)
            idle_cpu = (_cpu_s(child.pid) - cpu0) / (time.perf_counter() - wall0) * 100
            idle_rss = _rss_mb(child.pid)
            t1 = time.perf_counter()
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=15)
            stop_s = time.perf_counter() - t1
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    result = {
        "start_to_ready_s": round(ready_s, 3),
        "rss_at_ready_mb": round(ready_rss, 1),
        "idle_rss_mb": round(idle_rss, 1),
        "idle_s": idle_s,
        "idle_cpu_percent": round(idle_cpu, 2),
        "stop_s": round(stop_s, 3),
        "exit_code": code,
        "model_preloaded": with_model,
        "target_idle_rss_mb": 150,
        "rss_ok": idle_rss <= 150,
    }
    click.echo(json.dumps(result, indent=2))


COMMANDS: list[click.Command] = [node_group]
