"""``bitterbot bench transfer``: MB/s of a verified package transfer."""

from __future__ import annotations

import click

from bitterbot.node.cli.common import bench, print_json


@bench.command("transfer")
@click.option("--size-mb", type=click.IntRange(1, 60), default=50, help="package size")
@click.option("--runs", type=click.IntRange(1, 20), default=3)
@click.option("--json", "as_json", is_flag=True, help="print JSON (always JSON)")
def bench_transfer_command(size_mb: int, runs: int, as_json: bool) -> None:
    """MB/s of a hash-verified package transfer between two nodes on loopback."""
    import trio

    from bitterbot.node.bench.transfer import measure

    print_json(trio.run(measure, size_mb, runs))
