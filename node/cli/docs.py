"""CLI: `bitterbot docs` (private document Q&A); its benchmarks are in node/bench/docs.py.

Documents are read where they are; only their text, vectors and index live in the home's
LMDB. Heavy modules (numpy, onnxruntime, llama.cpp) load inside the commands.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json
from bitterbot.node.docs_store import make_index
from bitterbot.protocol.errors import ValidationError


def open_index(cli_ctx: CliContext) -> Any:
    """The home's document index; the encoder loads only when a command needs vectors.

    Inside a command the store closes with the command; other callers close ``.store``.
    """
    from bitterbot.node.store import Store

    home = cli_ctx.home.ensure()
    settings = cli_ctx.settings()
    store = Store(home.db_path)
    click_ctx = click.get_current_context(silent=True)
    if click_ctx is not None:
        click_ctx.call_on_close(store.close)
    return make_index(
        store,
        home.path / "cache",
        vectors=str(settings["docs.vectors"]),
        max_file_bytes=int(settings["docs.max_file_bytes"]),
    )


def contextual_encoder(cli_ctx: CliContext) -> Any:
    from bitterbot.agent.encoder import get_encoder

    return get_encoder(cli_ctx.home.path / "cache")


@click.group("docs")
def docs_group() -> None:
    """Your documents, answered offline: add files, ask questions, get citations."""


@docs_group.command("add")
@home_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--resume", is_flag=True, help="finish an ingestion that was interrupted")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@pass_cli
def docs_add(cli_ctx: CliContext, paths: tuple[Path, ...], resume: bool, as_json: bool) -> None:
    """Add files and folders (txt, md, html, pdf, docx). Unchanged files are skipped."""
    from bitterbot.agent.docs_index import ingest, summarize

    index = open_index(cli_ctx)
    pending = index.pending_job()
    targets: list[Path | str] = list(paths)
    if resume:
        if pending is None:
            raise ValidationError("no interrupted ingestion to resume", hint="docs add PATH...")
        targets = [*pending, *targets]
    elif pending is not None and not as_json:
        click.echo(
            f"note: an earlier ingestion of {len(pending)} path(s) was interrupted; "
            "`bitterbot docs add --resume` finishes it",
            err=True,
        )
    if not targets:
        raise ValidationError("no files or folders given", hint="bitterbot docs add PATH...")
    if cli_ctx.settings()["docs.vectors"] == "static" and not as_json:
        from bitterbot.agent.docs_vectors import static_table_ready

        if not static_table_ready(cli_ctx.home.path / "cache"):
            click.echo(
                "building the passage-vector table once (about a minute on two cores)...",
                err=True,
            )
    started = time.perf_counter()
    results = _ingest_with_progress(ingest, index, targets)
    report = summarize(results)
    report["seconds"] = round(time.perf_counter() - started, 3)
    if as_json:
        print_json(report)
        return
    click.echo(
        f"added {report['added']}, updated {report['updated']}, unchanged {report['unchanged']}, "
        f"skipped {report['skipped']} ({report['chunks']} new passages, {report['seconds']} s)"
    )
    for row in report["files"]:
        if row["status"] == "skipped":
            click.echo(f"  skipped {row['path']}: {row['message']} [{row['reason']}]")


def _ingest_with_progress(ingest: Any, index: Any, targets: list[Path | str]) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]adding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task("loading the encoder", total=None)

        def progress(result: Any, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=Path(result.path).name)

        return ingest(index, targets, progress=progress)


@docs_group.command("list")
@home_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def docs_list(cli_ctx: CliContext, as_json: bool) -> None:
    """The documents in the index."""
    index = open_index(cli_ctx)
    rows = index.list_files()
    if as_json:
        print_json(rows)
        return
    pending = index.pending_job()
    if pending is not None:
        click.echo(
            f"note: an ingestion of {len(pending)} path(s) was interrupted; "
            "`bitterbot docs add --resume` finishes it",
            err=True,
        )
    if not rows:
        click.echo("no documents yet: bitterbot docs add PATH...")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("path", "kind", "passages", "bytes")
    for row in rows:
        table.add_row(row["path"], row["kind"], str(row["chunks"]), str(row["size"]))
    Console().print(table)


@docs_group.command("remove")
@home_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all", "remove_all", is_flag=True, help="remove every document")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def docs_remove(
    cli_ctx: CliContext, paths: tuple[Path, ...], remove_all: bool, as_json: bool
) -> None:
    """Remove documents (a folder removes everything under it): passages, vectors, terms."""
    if not paths and not remove_all:
        raise ValidationError("nothing to remove", hint="give paths, or --all")
    index = open_index(cli_ctx)
    removed = index.remove_all() if remove_all else [r for p in paths for r in index.remove(p)]
    if as_json:
        print_json({"removed": removed})
        return
    for path in removed:
        click.echo(f"removed {path}")


@docs_group.command("search")
@home_option
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, help="passages to return")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def docs_search(cli_ctx: CliContext, query: str, k: int, as_json: bool) -> None:
    """The passages that best match QUERY (no model involved)."""
    index = open_index(cli_ctx)
    hits = index.search(query, max(1, min(k, 50)))
    if as_json:
        print_json([h.to_dict() for h in hits])
        return
    for n, hit in enumerate(hits, start=1):
        click.echo(f"[{n}] {hit.citation}  (cosine {hit.cosine:.2f})\n    {hit.text[:300]}")


@docs_group.command("ask")
@home_option
@click.argument("question")
@click.option("--model", default=None, help="model to answer with [default: agent.model]")
@click.option("--no-model", is_flag=True, help="quote the best passage instead of generating")
@click.option("--local", is_flag=True, help="run in this process even when a node is running")
@click.option("--json", "as_json", is_flag=True, help="print answer, citations and passages")
@pass_cli
def docs_ask(
    cli_ctx: CliContext,
    question: str,
    model: str | None,
    no_model: bool,
    local: bool,
    as_json: bool,
) -> None:
    """Answer QUESTION from your documents, citing file and page or lines.

    Goes through the running node's API when one is up (its model is already loaded)."""
    result = None if local else ask_running_node(cli_ctx, question, model, no_model)
    if result is None:
        result = ask_in_process(cli_ctx, question, model, no_model)
    if as_json:
        print_json(result)
        return
    click.echo(result["answer"])
    for cite in result["citations"]:
        click.echo(f"  [{cite['n']}] {cite['citation']}")
    if result.get("note"):
        click.echo(f"note: {result['note']}", err=True)


def ask_in_process(
    cli_ctx: CliContext, question: str, model: str | None, no_model: bool
) -> dict[str, Any]:
    import trio

    from bitterbot.agent.docs_qa import answer_question

    index = open_index(cli_ctx)
    settings = cli_ctx.settings()
    passages = int(settings["docs.passages"])
    reranker = contextual_encoder(cli_ctx)

    async def run() -> dict[str, Any]:
        backend = None
        if not no_model:
            from bitterbot.agent.models import open_backend

            backend = open_backend(model or settings["agent.model"], settings, cli_ctx.home.path)
        try:
            result = await answer_question(
                index, backend, question, reranker=reranker, max_passages=passages
            )
        finally:
            if backend is not None:
                await backend.aclose()
        return result.to_dict()

    return trio.run(run)


def ask_running_node(
    cli_ctx: CliContext, question: str, model: str | None, no_model: bool
) -> dict[str, Any] | None:
    """``POST /v1/docs/ask`` on the running node; None when no node answers."""
    from bitterbot.node.api.client import NodeUnreachable, call_node, running_api

    if running_api(cli_ctx.home_path) is None:
        return None
    body: dict[str, Any] = {"question": question, "extractive": no_model}
    if model:
        body["model"] = model
    try:
        data: dict[str, Any] = call_node(
            cli_ctx.home_path, "POST", "/v1/docs/ask", body, timeout=600.0
        )
    except NodeUnreachable as exc:
        click.echo(f"({exc.message}; running here)", err=True)
        return None
    return data


COMMANDS: list[click.Command] = [docs_group]
