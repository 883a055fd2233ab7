"""The documents API: in-process (httpx ASGI transport) and once over a real socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from bitterbot.agent.docs_index import ingest
from bitterbot.agent.docs_vectors import get_static_encoder
from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.agent.runtime import AgentRuntime
from bitterbot.node.api.app import build_app, serve_api
from bitterbot.node.config import load_settings
from bitterbot.node.context import NodeContext
from bitterbot.node.docs_store import docs_index
from bitterbot.node.home import Home
from bitterbot.node.store import Store

MANUAL = """Greenhouse controller manual

The controller opens the roof vents when the air passes 28 degrees Celsius.
Watering runs at six in the morning for twelve minutes. The humidity sensor sits
under the middle bench and is read every five minutes. Readings are kept for a week.
Shade screens close when the light passes the limit set on the second menu page.

To reset the controller, hold the red button for ten seconds until the display blinks.
"""


@pytest.fixture(scope="module", autouse=True)
def static_vectors(request: pytest.FixtureRequest, tmp_path_factory: Any) -> None:
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("bitterbot-docs-vectors") if cache is not None else None
    get_static_encoder(Path(folder) if folder else tmp_path_factory.mktemp("docs-cache"))


@pytest.fixture
def ctx(tmp_path: Path) -> NodeContext:
    home = Home(tmp_path / "home").ensure()
    settings = load_settings(home.path, env={})
    fake = FakeBackend(replies=["Hold the red button for ten seconds [1]."])
    runtime = AgentRuntime(
        {"agent.model": "fake:main"}, backends={"fake:main": fake}, system_prompt=""
    )
    context = NodeContext(settings, home, Store(home.db_path), home.identity(), agent=runtime)
    (tmp_path / "manual.txt").write_text(MANUAL)
    ingest(docs_index(context), [tmp_path / "manual.txt"])
    return context


@pytest.fixture
async def client(ctx: NodeContext) -> AsyncIterator[httpx.AsyncClient]:
    token = ctx.home.api_token()
    app = build_app(ctx, token)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        yield c


async def test_list_search_and_ask(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/docs")).json()["documents"]
    assert [Path(d["path"]).name for d in listing] == ["manual.txt"]

    found = await client.post("/v1/docs/search", json={"query": "roof vents temperature", "k": 2})
    assert found.status_code == 200
    passages = found.json()["passages"]
    assert "28 degrees" in passages[0]["text"] and passages[0]["citation"].endswith("lines 1-6")

    quoted = await client.post(
        "/v1/docs/ask", json={"question": "How do I reset the controller?", "extractive": True}
    )
    body = quoted.json()
    assert body["found"] and body["mode"] == "extractive" and "red button" in body["answer"]
    assert body["citations"][0]["position"] == {"line_start": 8, "line_end": 8}

    answered = (
        await client.post("/v1/docs/ask", json={"question": "How do I reset the controller?"})
    ).json()
    assert answered["mode"] == "model" and answered["model"] == "fake"
    assert answered["answer"].startswith("Hold the red button")

    outside = (
        await client.post("/v1/docs/ask", json={"question": "Who painted the Mona Lisa?"})
    ).json()
    assert outside["answer"] == "Not found in your documents." and outside["citations"] == []


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/v1/docs/search", {"query": ""}, "invalid"),
        ("/v1/docs/search", {"query": "x", "k": 0}, "invalid"),
        ("/v1/docs/search", {"query": "x", "k": True}, "invalid"),
        ("/v1/docs/ask", {"question": 5}, "invalid"),
        ("/v1/docs/ask", {"question": "x" * 1001}, "invalid"),
        ("/v1/docs/ask", {"question": "ok?", "extractive": "yes"}, "invalid"),
        ("/v1/docs/ask", {"question": "y" * 70_000}, "too_large"),
    ],
)
async def test_bad_requests_are_refused(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], code: str
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_over_a_real_socket_the_token_is_required(
    ctx: NodeContext, nursery: trio.Nursery
) -> None:
    token = ctx.home.api_token()
    stop = trio.Event()
    bound = await nursery.start(
        lambda task_status: serve_api(
            build_app(ctx, token), "127.0.0.1:0", task_status=task_status, shutdown=stop
        )
    )
    async with httpx.AsyncClient(base_url=f"http://{bound}") as c:
        assert (await c.get("/v1/docs")).status_code == 401
        response = await c.post(
            "/v1/docs/search",
            json={"query": "watering time"},
            headers={"Authorization": f"Bearer {token}"},
        )
    stop.set()
    assert response.status_code == 200
    assert "six in the morning" in response.json()["passages"][0]["text"]


async def test_docs_ask_goes_through_the_running_node(
    ctx: NodeContext, nursery: trio.Nursery
) -> None:
    from click.testing import CliRunner

    from bitterbot.node.cli.main import cli

    token = ctx.home.api_token()
    stop = trio.Event()
    bound = await nursery.start(
        lambda task_status: serve_api(
            build_app(ctx, token), "127.0.0.1:0", task_status=task_status, shutdown=stop
        )
    )
    ctx.home.acquire_lock()
    ctx.home.write_running({"api": bound})
    args = ["--home", str(ctx.home.path), "docs", "ask", "How do I reset the controller?"]
    try:
        result = await trio.to_thread.run_sync(lambda: CliRunner().invoke(cli, [*args, "--json"]))
    finally:
        stop.set()
        ctx.home.release_lock()
    assert result.exit_code == 0, (result.output, result.exception)
    answer = json.loads(result.output)
    # the node's (fake) model answered: this process never opened the store or a model
    assert answer["model"] == "fake" and answer["mode"] == "model"
    assert answer["answer"].startswith("Hold the red button")
