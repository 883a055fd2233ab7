"""CLI: the network side of skills: ``skill publish``, ``skill search`` (and network installs).

These talk to the running node (its DHT and transfer protocol), through the local API.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import click

from bitterbot.node.api.client import call_node
from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json
from bitterbot.protocol.errors import ValidationError

COMMANDS: list[click.Command] = []

_PRICE_LINE = re.compile(r"^\s*price\s*=.*$", re.M)


def with_price(manifest_text: str, price: int) -> str:
    """The manifest with its top-level ``price`` set (before any table, as TOML requires)."""
    head, sep, tables = manifest_text.partition("\n[")
    head = _PRICE_LINE.sub("", head).rstrip("\n")
    return f"price = {price}\n{head}\n" + (sep + tables if sep else "")


def pack_for_publish(cli_ctx: CliContext, source: Path, price: int | None, node_key: bool) -> bytes:
    """A signed package from a folder (with ``price`` written in) or a package file."""
    from bitterbot.agent.skills import read_folder
    from bitterbot.node.cli.skill import _now_ms, _publisher_identity
    from bitterbot.protocol.skill_manifest import MANIFEST_FILE
    from bitterbot.protocol.skillpkg import build_package, sign_package, verify_package

    if source.is_dir():
        files = read_folder(source)
        if price is not None:
            text = files.get(MANIFEST_FILE, b"").decode("utf-8")
            files[MANIFEST_FILE] = with_price(text, price).encode("utf-8")
        pkg = sign_package(build_package(files), _publisher_identity(cli_ctx, node_key), _now_ms())
        return pkg.to_bytes()
    data = source.read_bytes()
    verified = verify_package(data)
    if price is not None and price != verified.manifest.price:
        raise ValidationError(
            f"the package's signed price is {verified.manifest.price}, not {price}",
            hint="publish the skill folder with --price, or repack it with the new price",
        )
    return data


@click.command("publish")
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--price", type=click.IntRange(min=0), default=None, help="price in the smallest unit"
)
@click.option(
    "--node-key", is_flag=True, help="sign with the node key instead of the publisher key"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def publish_command(
    cli_ctx: CliContext, source: Path, price: int | None, node_key: bool, as_json: bool
) -> None:
    """Pack, sign and announce a skill (DIR or PKG) on the network from the running node."""
    data = pack_for_publish(cli_ctx, source, price, node_key)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "publish.bbskill"
        path.write_bytes(data)
        out = call_node(
            cli_ctx.home_path, "POST", "/v1/market/publish", {"path": str(path)}, timeout=120
        )
    if as_json:
        print_json(out)
        return
    click.echo(f"published {out['name']} {out['version']} ({out['package_id']})")
    click.echo(f"publisher {out['publisher']}, catalog #{out['catalog_seq']}, price {out['price']}")
    ann = out.get("announced", {})
    if ann.get("failed") and not ann.get("records"):
        click.echo("not announced yet (no peers): the node announces it once it joins a network")


@click.command("search")
@click.argument("name", required=False)
@click.option("--tag", default=None, help="search by tag or capability (e.g. math, cap:net)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def search_command(cli_ctx: CliContext, name: str | None, tag: str | None, as_json: bool) -> None:
    """Find skills on the network by NAME or --tag; signatures are checked."""
    if (name is None) == (tag is None):
        raise click.UsageError("give a skill NAME or --tag TAG")
    query = f"name={name}" if name is not None else f"tag={tag}"
    from urllib.parse import quote

    key, _, value = query.partition("=")
    out = call_node(cli_ctx.home_path, "GET", f"/v1/market/search?{key}={quote(value)}", timeout=60)
    offers: list[dict[str, Any]] = out["offers"]
    if as_json:
        print_json(offers)
        return
    if not offers:
        click.echo("no skill found")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "version", "price", "publisher", "providers", "reputation")
    for o in offers:
        rep = o.get("reputation") or {}
        table.add_row(
            o["name"], o["version"], str(o["price"]), o["publisher"][:24],
            str(len(o["providers"])), str(rep.get("tier", "-")),
        )  # fmt: skip
    Console().print(table)


def fetch_from_network(
    cli_ctx: CliContext, source: str, publisher: str | None, max_price: int = 0
) -> dict[str, Any]:
    """Have the running node download and verify ``source`` (a name or package ID), buying
    it first when it is a paid skill priced at most ``max_price``."""
    body = {"source": source, "publisher": publisher, "max_price": max_price}
    return dict(call_node(cli_ctx.home_path, "POST", "/v1/market/fetch", body, timeout=300))


def seed_after_install(
    cli_ctx: CliContext, package_id: str, record_hex: str | None
) -> dict[str, Any]:
    body = {"id": package_id, "record": record_hex or None}
    return dict(call_node(cli_ctx.home_path, "POST", "/v1/market/seed", body, timeout=60))


def _attach() -> None:
    from bitterbot.node.cli.skill import skill_group

    skill_group.add_command(publish_command)
    skill_group.add_command(search_command)


_attach()
