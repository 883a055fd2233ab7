"""CLI: `bitterbot simnet list` and `bitterbot simnet run SCENARIO`."""

from __future__ import annotations

from pathlib import Path

import click

from bitterbot.node.cli.common import print_json, stderr


@click.group("simnet")
def simnet_group() -> None:
    """Many real nodes on loopback, with churn, partitions and adversaries."""


@simnet_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def simnet_list(as_json: bool) -> None:
    """List the built-in scenarios and whether this build can run them."""
    from bitterbot.simnet.runners import KINDS, missing
    from bitterbot.simnet.scenarios import builtin_names, load

    rows = []
    for name in builtin_names():
        scenario = load(name)
        absent = missing(scenario.kind)
        rows.append(
            {
                "name": name,
                "kind": scenario.kind,
                "nodes": scenario.nodes,
                "available": not absent,
                "needs": KINDS[scenario.kind].what if absent else "",
                "description": scenario.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("scenario", "kind", "nodes", "runs here", "description")
    for row in rows:
        runs = "yes" if row["available"] else f"no: needs {row['needs']}"
        table.add_row(row["name"], row["kind"], str(row["nodes"]), runs, row["description"])
    Console().print(table)


@simnet_group.command("run")
@click.argument("scenario")
@click.option("--nodes", type=click.IntRange(min=2), default=None, help="override node count")
@click.option("--seed", type=int, default=None, help="override the random seed")
@click.option("--json", "as_json", is_flag=True, help="print the metrics as JSON")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="write report.md and PNG plots to this folder",
)
@click.option("--keep", is_flag=True, help="keep node homes and worker logs")
@click.option(
    "--backend",
    type=click.Choice(["ledger", "cashu"]),
    default=None,
    help="payments of market/cheaters: the TEST MONEY ledger or a local Cashu mint",
)
def simnet_run(
    scenario: str,
    nodes: int | None,
    seed: int | None,
    as_json: bool,
    report_dir: Path | None,
    keep: bool,
    backend: str | None,
) -> None:
    """Run SCENARIO (a built-in name or a .toml file) and print its metrics."""
    import trio

    from bitterbot.simnet.run import run_scenario
    from bitterbot.simnet.scenarios import load

    spec = load(scenario).with_overrides(nodes=nodes, seed=seed, backend=backend)
    if not as_json:
        stderr(
            f"simnet: running {spec.name} ({spec.kind}) with {spec.nodes} nodes, seed {spec.seed}"
        )
    summary = trio.run(lambda: run_scenario(spec, report_dir=report_dir, keep_homes=keep))
    if as_json:
        print_json(summary)
        return
    for key, value in summary["metrics"].items():
        click.echo(f"{key:32} {value}")
    for row in summary["targets"]:
        mark = "met" if row["met"] else "NOT met"
        bound = " ".join(f"{k} {row[k]:g}" for k in ("min", "max") if k in row)
        click.echo(f"target {row['metric']} ({bound}): {row['value']} {mark}")
    if "report" in summary:
        click.echo(f"report: {summary['report']}")


COMMANDS: list[click.Command] = [simnet_group]
