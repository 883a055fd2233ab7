"""CLI: ``bitterbot skill ...``, ``bitterbot key ...`` (publisher key), ``bench sandbox``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import click

from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json, stderr
from bitterbot.node.home import PUBLISHER_KEY_FILE
from bitterbot.node.skills_store import run_output, skill_row
from bitterbot.protocol.errors import HomeError, NotFoundError, SkillError

# --- shared helpers ---------------------------------------------------------------------


@contextmanager
def _manager(cli_ctx: CliContext) -> Iterator[Any]:
    from bitterbot.node.skills_store import open_manager
    from bitterbot.node.store import Store

    home = cli_ctx.home.ensure()
    store = Store(home.db_path)
    manager = open_manager(home.path, store, cli_ctx.settings())
    try:
        yield manager
    finally:
        manager.close()
        store.env.close()


def _publisher_identity(cli_ctx: CliContext, use_node_key: bool) -> Any:
    home = cli_ctx.home
    if use_node_key:
        return home.identity()
    ident = home.publisher_identity()
    if ident is None:
        raise HomeError(
            f"no publisher key in {home.path}",
            hint="create one: bitterbot key new (or sign with --node-key)",
        )
    return ident


def _consent(yes: bool, quiet: bool) -> Any:
    def ask(request: Any) -> bool:
        if not quiet:
            click.echo(request.text(), err=True)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise SkillError(
                "installing needs your approval, and there is no terminal to ask on",
                hint="review the text above, then pass --yes to accept exactly what it declares",
                code="consent_needed",
            )
        return click.confirm("Grant these permissions and install?", default=False, err=True)

    return ask


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- skill ------------------------------------------------------------------------------


@click.group("skill")
def skill_group() -> None:
    """Skill packages: make, sign, install, list, run."""


@skill_group.command("new")
@click.argument("name")
@click.option(
    "--wasm", is_flag=True, help="a Rust skill compiled to wasm32-wasi (default: prompt skill)"
)
@click.option(
    "--dir", "parent", type=click.Path(path_type=Path), default=Path("."), help="where to create it"
)
@home_option
@pass_cli
def new_command(cli_ctx: CliContext, name: str, wasm: bool, parent: Path) -> None:
    """Scaffold a working example skill in ./NAME."""
    publisher = None
    key_path = cli_ctx.home.path / PUBLISHER_KEY_FILE
    if key_path.exists():
        from bitterbot.protocol.identity import encode_key

        publisher = encode_key(_publisher_identity(cli_ctx, False).public_key)
    target = scaffold(parent / name, name, wasm=wasm, publisher=publisher)
    click.echo(str(target))


@skill_group.command("pack")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--out", type=click.Path(path_type=Path), help="package file (default NAME-VERSION.bbskill)"
)
@click.option("--unsigned", is_flag=True, help="do not sign (sign later with skill sign)")
@click.option(
    "--node-key", is_flag=True, help="sign with the node key instead of the publisher key"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def pack_command(
    cli_ctx: CliContext,
    folder: Path,
    out: Path | None,
    unsigned: bool,
    node_key: bool,
    as_json: bool,
) -> None:
    """Pack a skill folder deterministically; print the package path and ID."""
    from bitterbot.agent.skills import read_folder
    from bitterbot.protocol.skillpkg import PACKAGE_SUFFIX, build_package, load_files, sign_package

    files = read_folder(folder)
    man = load_files(files).manifest
    pkg = build_package(files)
    if not unsigned:
        pkg = sign_package(pkg, _publisher_identity(cli_ctx, node_key), _now_ms())
    out = out or Path(f"{man.name}-{man.version}{PACKAGE_SUFFIX}")
    out.write_bytes(pkg.to_bytes())
    if as_json:
        print_json(
            {
                "path": str(out),
                "id": pkg.id,
                "signed": not unsigned,
                "name": man.name,
                "version": man.version,
            }
        )
    else:
        click.echo(f"{out}\n{pkg.id}")


@skill_group.command("sign")
@click.argument("package", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--node-key", is_flag=True, help="sign with the node key instead of the publisher key"
)
@home_option
@pass_cli
def sign_command(cli_ctx: CliContext, package: Path, node_key: bool) -> None:
    """Sign (or re-sign) a package file with your publisher key; print its ID."""
    from bitterbot.protocol.skillpkg import read_package, sign_package

    pkg = read_package(package.read_bytes())
    signed = sign_package(pkg, _publisher_identity(cli_ctx, node_key), _now_ms())
    package.write_bytes(signed.to_bytes())
    click.echo(signed.id)


def _package_bytes(cli_ctx: CliContext, source: str) -> bytes:
    from bitterbot.node.skills_store import packages_dir
    from bitterbot.protocol.skillpkg import PACKAGE_SUFFIX, is_content_id

    path = Path(source)
    if path.is_file():
        return path.read_bytes()
    if is_content_id(source):
        cached = packages_dir(cli_ctx.home.path) / f"{source}{PACKAGE_SUFFIX}"
        if cached.is_file():
            return cached.read_bytes()
        raise NotFoundError(
            f"package {source} is not on this machine",
            hint="fetch it from the market first (bitterbot market get ID), or install a file",
        )
    raise NotFoundError(f"no package file {source}", hint="give a .bbskill path or a package ID")


@skill_group.command("install")
@click.argument("source")
@click.option("--yes", is_flag=True, help="accept exactly the declared permissions without asking")
@click.option(
    "--force", is_flag=True, help="allow a downgrade or replacing another publisher's skill"
)
@click.option("--publisher", default=None, help="from the network: the publisher key to choose")
@click.option(
    "--max-price",
    type=click.IntRange(min=0),
    default=0,
    help="from the network: buy a paid skill costing at most this (smallest unit)",
)
@click.option(
    "--ignore-reputation", is_flag=True, help="install even if flagged by someone you trust"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def install_command(
    cli_ctx: CliContext,
    source: str,
    yes: bool,
    force: bool,
    publisher: str | None,
    max_price: int,
    ignore_reputation: bool,
    as_json: bool,
) -> None:
    """Verify and install a package: a PATH, a package ID, or a skill NAME from the network.

    Network installs go through the running node (DHT lookup, verified transfer) and then
    the same verification and consent as a local file. Runs no code.
    """
    import trio

    from bitterbot.node.api.client import running_api
    from bitterbot.node.cli.market import fetch_from_network, seed_after_install
    from bitterbot.node.install import install_package

    fetched: dict[str, Any] | None = None
    try:
        data = _package_bytes(cli_ctx, source)
    except NotFoundError:
        if running_api(cli_ctx.home_path) is None:
            raise NotFoundError(
                f"{source} is not a package file or a package kept on this machine",
                hint="to install from the network, start the node first: bitterbot node start",
            ) from None
        if not as_json:
            click.echo(f"looking for {source} on the network...", err=True)
        fetched = fetch_from_network(cli_ctx, source, publisher, max_price)
        if fetched.get("paid") and not as_json:
            click.echo(f"bought for {fetched['paid']['amount']} (TEST MONEY)", err=True)
        data = Path(fetched["path"]).read_bytes()
    record_hex = fetched["record"] if fetched else None

    async def seed(package_id: str) -> dict[str, Any]:
        return await trio.to_thread.run_sync(seed_after_install, cli_ctx, package_id, record_hex)

    with _manager(cli_ctx) as manager:
        installed = trio.run(
            partial(
                install_package,
                data,
                manager=manager,
                gate=_reputation(cli_ctx, manager),
                home_path=cli_ctx.home.path,
                consent=_consent(yes, as_json),
                force=force,
                ignore_reputation=ignore_reputation,
                seed=seed if running_api(cli_ctx.home_path) is not None else None,
            )
        )
    record, seeding = installed.record, installed.seeding
    if as_json:
        print_json(
            {
                **skill_row(record),
                "from_network": fetched is not None,
                "paid": fetched.get("paid") if fetched else None,
                "seeding": seeding,
            }
        )
    else:
        click.echo(f"installed {record['name']} {record['version']} ({record['id']})")
        if seeding and seeding.get("seeding"):
            click.echo("seeding it to other peers (turn off with skills.seed_installed = false)")


def _reputation(cli_ctx: CliContext, manager: Any) -> Any:
    """This node's reputation, read from its store: the install gate of a CLI install."""
    from bitterbot.node.rep.service import RepConfig, Reputation

    return Reputation(
        manager.records.store, cli_ctx.home.identity(), RepConfig.from_settings(cli_ctx.settings())
    )


@skill_group.command("import")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--yes", is_flag=True, help="accept without asking (an import has no permissions)")
@click.option("--force", is_flag=True, help="replace a skill of the same name")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def import_command(
    cli_ctx: CliContext, folder: Path, yes: bool, force: bool, as_json: bool
) -> None:
    """Import a plain Agent Skills folder (SKILL.md) as a prompt-only skill.

    Its scripts/ folder is never copied or executed.
    """
    with _manager(cli_ctx) as manager:
        record = manager.import_folder(folder, _consent(yes, as_json), force=force)
    if as_json:
        print_json({**skill_row(record), "warnings": record["warnings"]})
    else:
        for warning in record["warnings"]:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"imported {record['name']} as a prompt-only skill ({record['id']})")


@skill_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def list_command(cli_ctx: CliContext, as_json: bool) -> None:
    """Installed skills."""
    with _manager(cli_ctx) as manager:
        rows = [skill_row(r) for r in manager.installed()]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no skills installed (try: bitterbot skill install PATH)")
    for r in rows:
        click.echo(
            f"{r['name']:<24} {r['version']:<10} {r['kind']:<7} {r['source']:<8} {r['description'][:60]}"
        )


@skill_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def show_command(cli_ctx: CliContext, name: str, as_json: bool) -> None:
    """One skill: version, permissions granted, folders, and its prompt (invisible characters shown)."""
    from bitterbot.protocol.skill_manifest import permissions_from_obj, reveal_invisible

    with _manager(cli_ctx) as manager:
        record = manager.get(name)
        prompt = manager.prompt_text(name)
    if as_json:
        print_json({**skill_row(record), "prompt": reveal_invisible(prompt)})
        return
    for key in ("name", "version", "kind", "id", "publisher", "source", "price"):
        click.echo(f"{key}: {record[key]}")
    click.echo("granted:")
    for line in permissions_from_obj(record["granted"]).describe():
        click.echo(f"  - {line}")
    for folder in record["folders"]:
        click.echo(
            f"  folder {folder['path']} ({'read-write' if folder['write'] else 'read-only'})"
        )
    click.echo("prompt:")
    click.echo(reveal_invisible(prompt))


@skill_group.command("grant")
@click.argument("name")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--write", is_flag=True, help="allow writing (only if the skill asked for it)")
@home_option
@pass_cli
def grant_command(cli_ctx: CliContext, name: str, folder: Path, write: bool) -> None:
    """Let a skill that asked for file access see FOLDER (read-only unless --write)."""
    with _manager(cli_ctx) as manager:
        manager.grant_folder(name, folder, write=write)
    click.echo(f"{name} may now {'read and write' if write else 'read'} {folder.resolve()}")


@skill_group.command("remove")
@click.argument("name")
@home_option
@pass_cli
def remove_command(cli_ctx: CliContext, name: str) -> None:
    """Uninstall a skill (its highest version is remembered: no silent downgrade later)."""
    with _manager(cli_ctx) as manager:
        record = manager.remove(name)
    click.echo(f"removed {record['name']} {record['version']}")


@skill_group.command("run")
@click.argument("name")
@click.argument("text", required=False, default="")
@click.option(
    "--folder",
    "folders",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="grant a folder for this run (repeatable)",
)
@click.option("--max-tokens", type=int, default=None, help="answer length for prompt skills")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def run_command(
    cli_ctx: CliContext,
    name: str,
    text: str,
    folders: tuple[Path, ...],
    max_tokens: int | None,
    as_json: bool,
) -> None:
    """Run an installed skill on TEXT (or stdin when TEXT is -)."""
    import trio

    if text == "-":
        text = sys.stdin.read()
    settings = cli_ctx.settings()

    async def main() -> Any:
        from bitterbot.agent.sandbox import FolderGrant
        from bitterbot.agent.skills import runtime_generate

        with _manager(cli_ctx) as manager:
            record = manager.get(name)
            needs_model = record["kind"] == "prompt" or record["granted"]["llm_tokens"] > 0
            runtime = None
            generate = None
            if needs_model:
                from bitterbot.agent.runtime import AgentRuntime

                runtime = AgentRuntime(settings, home=cli_ctx.home.path)
                bundled = manager.model_path(name)
                generate = runtime_generate(runtime, str(bundled) if bundled else None)
            try:
                return await manager.run(
                    name,
                    text,
                    generate=generate,
                    folders=[FolderGrant(f) for f in folders] if folders else None,
                    max_tokens=max_tokens or int(settings["agent.max_tokens"]),
                )
            finally:
                if runtime is not None:
                    await runtime.aclose()

    out = trio.run(main)
    if as_json:
        print_json(run_output(out))
    else:
        click.echo(out.text.rstrip("\n"))


# --- scaffold -----------------------------------------------------------------------------

_SKILL_MD = """---
name: {name}
description: Say what this skill does and when to use it (the router reads this).
license: Apache-2.0
---
{body}
"""

_PROMPT_BODY = """You are a helpful assistant. Answer the request below in one short paragraph.

Request:
{{input}}
"""

_WASM_BODY = """# {name}

Echoes its input in upper case. Replace src/main.rs with your code, then run ./build.sh.
"""

_TOML = """version = "0.1.0"
{publisher}price = 0
{entry}tags = []
examples = [
  "an example request this skill answers",
  "another way a user might ask for it",
]

[permissions]
# llm_tokens = 256        # generate text with the local model
# docs = true             # search the user's documents
# files = "read"          # read folders the user grants ("write" to change them)
# net = ["api.example.com"]
"""

_MAIN_RS = """// A wasm32-wasi command: the input is argv[1], the answer goes to stdout.
fn main() {{
    let input = std::env::args().nth(1).unwrap_or_default();
    println!("{{}}", input.to_uppercase());
}}
"""

_BUILD_SH = """#!/bin/sh
# Needs Debian's rustc with the wasm32-wasi std: apt-get install rustc libstd-rust-dev-wasm32 lld
set -eu
cd "$(dirname "$0")"
/usr/bin/rustc --edition 2021 --target wasm32-wasi -C opt-level=s -C strip=symbols \\
  -C panic=abort -C lto src/main.rs -o {name}.wasm
echo "built {name}.wasm"
"""


def scaffold(target: Path, name: str, *, wasm: bool, publisher: str | None) -> Path:
    """Write an example skill folder; a wasm skill is built when Debian's rustc is present."""
    import subprocess

    from bitterbot.protocol.errors import ValidationError
    from bitterbot.protocol.skill_manifest import parse_skill_md

    if target.exists():
        raise ValidationError(f"{target} already exists", hint="choose another name or --dir")
    body = _WASM_BODY.format(name=name) if wasm else _PROMPT_BODY
    skill_md = _SKILL_MD.format(name=name, body=body)
    parse_skill_md(skill_md.encode())  # the name must be valid before anything is written
    target.mkdir(parents=True)
    (target / "SKILL.md").write_text(skill_md, encoding="utf-8")
    toml = _TOML.format(
        publisher=f'publisher = "{publisher}"\n' if publisher else "",
        entry=f'entry = "{name}.wasm"\n' if wasm else "",
    )
    (target / "bitterbot.toml").write_text(toml, encoding="utf-8")
    if wasm:
        (target / "src").mkdir()
        (target / "src" / "main.rs").write_text(_MAIN_RS.format(), encoding="utf-8")
        build = target / "build.sh"
        build.write_text(_BUILD_SH.format(name=name), encoding="utf-8")
        build.chmod(0o755)
        if Path("/usr/bin/rustc").exists() and Path("/usr/lib/rustlib/wasm32-wasi").is_dir():
            done = subprocess.run([str(build)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                stderr(f"build failed; fix and run {build}:\n{done.stderr}")
        else:
            stderr(f"Rust for wasm32-wasi is not installed; after installing it run {build}")
    return target


# --- key ----------------------------------------------------------------------------------


@click.group("key")
def key_group() -> None:
    """Your publisher signing key (signs the skills you pack)."""


@key_group.command("new")
@click.option("--force", is_flag=True, help="replace an existing key (old signatures stay valid)")
@click.option("--from-node", is_flag=True, help="use the node's key as the publisher key")
@home_option
@pass_cli
def key_new(cli_ctx: CliContext, force: bool, from_node: bool) -> None:
    """Create the publisher key (0600 in the home) and print its public key."""
    from bitterbot.node.home import write_private
    from bitterbot.protocol.identity import Identity, encode_key

    home = cli_ctx.home.ensure()
    path = home.path / PUBLISHER_KEY_FILE
    if path.exists() and not force:
        raise HomeError(f"{path} exists", hint="pass --force to replace it (keep a backup)")
    ident = home.identity() if from_node else Identity.generate()
    write_private(path, ident.seed)
    click.echo(encode_key(ident.public_key))


@key_group.command("show")
@click.option("--node-key", is_flag=True, help="show the node key instead")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@home_option
@pass_cli
def key_show(cli_ctx: CliContext, node_key: bool, as_json: bool) -> None:
    """Print the publisher public key (what skill users see as the publisher)."""
    from bitterbot.protocol.identity import encode_key

    key = encode_key(_publisher_identity(cli_ctx, node_key).public_key)
    if as_json:
        print_json({"public_key": key, "source": "node" if node_key else PUBLISHER_KEY_FILE})
    else:
        click.echo(key)


COMMANDS: list[click.Command] = [skill_group, key_group]
