"""CLI: `bitterbot ask`, `bitterbot chat`, `bitterbot models list`, `bitterbot bench llm`.

``ask`` goes through the running node's API when one is up (address in ``node.json``, token
in ``api.token``), else runs the agent runtime in this process. Its core is
:func:`ask_question`, which the router/orchestrator can take over.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import click

from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json, stderr
from bitterbot.protocol.errors import BitterbotError

ASK_TIMEOUT_S = 600.0


# --- ask ------------------------------------------------------------------------------
def _runtime(cli_ctx: CliContext, model: str | None) -> Any:
    from bitterbot.agent.runtime import AgentRuntime

    settings = cli_ctx.settings(**({"agent.model": model} if model else {}))
    return AgentRuntime(settings, home=cli_ctx.home_path)


def ask_in_process(
    cli_ctx: CliContext, question: str, model: str | None, max_tokens: int | None
) -> dict[str, Any]:
    import trio

    from bitterbot.node.context import NodeContext
    from bitterbot.node.pipeline import AgentPipeline
    from bitterbot.node.store import Store

    home = cli_ctx.home.ensure()
    store = Store(home.db_path)

    async def run() -> dict[str, Any]:
        runtime = _runtime(cli_ctx, model)
        ctx = NodeContext(runtime.settings, home, store, home.identity())
        ctx.agent = runtime
        try:
            from bitterbot.node.cli.router import confirm_on_terminal

            return await AgentPipeline(ctx).ask(
                question, max_tokens=max_tokens, confirm=confirm_on_terminal
            )
        finally:
            await runtime.aclose()
            if ctx.skills is not None:
                ctx.skills.close()

    try:
        return trio.run(run)
    finally:
        store.close()


def ask_question(
    cli_ctx: CliContext,
    question: str,
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    local: bool = False,
) -> dict[str, Any]:
    """The ``bitterbot ask`` core: through the running node if any, else in this process."""
    from bitterbot.node.api.client import NodeUnreachable, call_node, running_api

    if cli_ctx.settings()["cloud.policy"] == "ask" and sys.stdin.isatty():
        local = True  # only this process can show what would be sent and ask you
    if not local and running_api(cli_ctx.home_path) is not None:
        body: dict[str, Any] = {"question": question}
        if model:
            body["model"] = model
        if max_tokens:
            body["max_tokens"] = max_tokens
        try:
            answer: dict[str, Any] = call_node(
                cli_ctx.home_path, "POST", "/v1/agent/ask", body, timeout=ASK_TIMEOUT_S
            )
            return answer
        except NodeUnreachable as exc:
            stderr(f"({exc.message}; running locally)")
        except BitterbotError as exc:
            if exc.code != "agent_not_running":
                raise
            stderr("(the running node has no agent; running locally)")
    return ask_in_process(cli_ctx, question, model, max_tokens)


@click.command("ask")
@home_option
@click.argument("question", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--model", default=None, help="smollm2, a .gguf path, or ollama:NAME")
@click.option("--max-tokens", type=click.IntRange(1, 16384), default=None, help="answer length")
@click.option("--local", is_flag=True, help="run in this process even when a node is running")
@pass_cli
def ask_command(
    cli_ctx: CliContext,
    question: tuple[str, ...],
    as_json: bool,
    model: str | None,
    max_tokens: int | None,
    local: bool,
) -> None:
    """Ask the agent one question."""
    result = ask_question(
        cli_ctx, " ".join(question), model=model, max_tokens=max_tokens, local=local
    )
    if as_json:
        print_json(result)
    else:
        click.echo(result["answer"])
    if result.get("finish_reason") == "length":
        stderr(f"(answer cut at {result['tokens_out']} tokens: raise --max-tokens for more)")


# --- chat -----------------------------------------------------------------------------
HELP_LINE = "/reset clears the history, /exit quits"


@click.command("chat")
@home_option
@click.option("--model", default=None, help="smollm2, a .gguf path, or ollama:NAME")
@click.option("--session", default="default", show_default=True, help="history to continue")
@click.option("--max-tokens", type=click.IntRange(1, 16384), default=None, help="answer length")
@click.option("--local", is_flag=True, help="load the model in this process even with a node")
@pass_cli
def chat_command(
    cli_ctx: CliContext, model: str | None, session: str, max_tokens: int | None, local: bool
) -> None:
    """Talk with the agent; answers stream, history is kept in the node's database.

    With a node running, its already loaded model answers (no second copy in memory)."""
    import trio

    from bitterbot.node.api.client import running_api
    from bitterbot.node.chat_history import ChatHistory
    from bitterbot.node.cli.chat_remote import NodeChat
    from bitterbot.node.store import Store

    api = None if local else running_api(cli_ctx.home_path)
    runtime = NodeChat(*api, model=model) if api else _runtime(cli_ctx, model)
    store = Store(cli_ctx.home.ensure().db_path)
    try:
        trio.run(_chat_loop, runtime, ChatHistory(store), session, max_tokens)
    finally:
        store.close()


async def _chat_loop(runtime: Any, history: Any, session: str, max_tokens: int | None) -> None:
    import trio

    interactive = sys.stdin.isatty()
    backend = await runtime.backend()
    known = len(history.messages(session))
    stderr(f"chatting with {backend.model} ({backend.name}); {HELP_LINE}")
    if known:
        stderr(f"(continuing session {session!r}: {known} earlier messages)")
    answering: trio.CancelScope | None = None

    async def on_interrupt() -> None:  # Ctrl-C stops the answer; at the prompt it quits
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                if answering is None:
                    stderr("")
                    nursery.cancel_scope.cancel()
                    return
                answering.cancel()

    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            nursery.start_soon(on_interrupt)
        while True:
            if interactive:
                click.echo("you> ", nl=False, err=True)
            line = await trio.to_thread.run_sync(_read_line, abandon_on_cancel=True)  # type: ignore[call-arg]  # mypy and TypeVarTuple
            if not line:
                break  # end of input
            text = line.strip()
            if not text:
                continue
            if text in {"/exit", "/quit"}:
                break
            if text == "/reset":
                stderr(f"(history cleared: {history.reset(session)} messages)")
                continue
            if text.startswith("/"):
                stderr(f"(unknown command {text.split()[0]}; {HELP_LINE})")
                continue
            answering = trio.CancelScope()
            try:
                with answering:
                    answer = await _answer(runtime, history, session, text, max_tokens)
                if answering.cancelled_caught:
                    click.echo("")
                    stderr("(stopped; not kept in the history)")
                elif answer is not None:
                    now = time.time()
                    history.append(session, "user", text, ts=now)
                    history.append(session, "assistant", answer, ts=now)
            finally:
                answering = None
        nursery.cancel_scope.cancel()


def _read_line() -> str:
    return sys.stdin.readline()


async def _answer(
    runtime: Any, history: Any, session: str, text: str, max_tokens: int | None
) -> str | None:
    from contextlib import aclosing

    from bitterbot.agent.backends import ContextOverflowError

    messages = [*history.messages(session), {"role": "user", "content": text}]
    try:
        prepared = await runtime.prepare(messages, options=runtime.options(max_tokens=max_tokens))
    except ContextOverflowError as exc:
        stderr(f"error: {exc.message}\n  what to do: {exc.hint}")
        return None
    if prepared.notice:
        stderr(f"({prepared.notice})")
    parts: list[str] = []
    cut = False
    try:
        async with aclosing(runtime.stream(prepared)) as stream:
            async for chunk in stream:
                if getattr(chunk, "extra", None) and chunk.extra.get("notice"):
                    stderr(f"({chunk.extra['notice']})")  # trimmed by the running node
                if chunk.text:
                    parts.append(chunk.text)
                    click.echo(chunk.text, nl=False)
                    sys.stdout.flush()
                cut = cut or chunk.finish_reason == "length"
    except BitterbotError as exc:  # the chat goes on; this turn is not kept
        click.echo("")
        stderr(f"error: {exc.message}" + (f"\n  what to do: {exc.hint}" if exc.hint else ""))
        return None
    click.echo("")
    if cut:
        stderr("(answer cut at the token limit: raise --max-tokens for more)")
    return "".join(parts).strip()


# --- models list ----------------------------------------------------------------------
@click.group("models")
def models_group() -> None:
    """Models the agent can use."""


@models_group.command("list")
@home_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_cli
def models_list(cli_ctx: CliContext, as_json: bool) -> None:
    """List the models available here and where each comes from."""
    from bitterbot.agent.models import list_models

    rows, notes = list_models(cli_ctx.settings(), cli_ctx.home_path)
    if as_json:
        print_json({"models": rows, "notes": notes})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("", "model", "backend", "size", "from")
    for row in rows:
        size = f"{row['size_bytes'] / 1e6:.0f} MB" if row["size_bytes"] else "?"
        table.add_row(
            "*" if row["default"] else "", row["name"], row["backend"], size, row["source"]
        )
    Console().print(table)
    for note in notes:
        stderr(f"note: {note}")


COMMANDS: list[click.Command] = [ask_command, chat_command, models_group]
