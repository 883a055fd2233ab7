"""AgentRuntime above the backend interface, driven by the deterministic fake backend."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio

from bitterbot.agent.backends import ContextOverflowError, ModelUnavailableError
from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.agent.runtime import AgentRuntime
from bitterbot.node.config import default_settings

SETTINGS = default_settings(
    {"agent.model": "fake:main", "agent.context": 2048, "agent.max_tokens": 16}
)


def runtime_with(fake: FakeBackend, system_prompt: str = "Be brief.") -> AgentRuntime:
    return AgentRuntime(SETTINGS, backends={"fake:main": fake}, system_prompt=system_prompt)


def history(turns: int) -> list[dict[str, str]]:
    out = []
    for i in range(turns):
        out.append({"role": "user", "content": f"question {i} " + "word " * 8})
        out.append({"role": "assistant", "content": f"answer {i} " + "word " * 8})
    out.append({"role": "user", "content": "the newest question"})
    return out


async def test_ask_reports_route_backend_model_and_token_counts() -> None:
    fake = FakeBackend(replies=["  Paris is the capital.  "])
    result = await runtime_with(fake).ask("capital of France?")
    assert result.as_dict() == {
        "answer": "Paris is the capital.",
        "route": "local-llm",
        "backend": "fake",
        "model": "fake",
        "latency_ms": result.as_dict()["latency_ms"],
        "tokens_in": (2 + 2) + (3 + 2),  # system 2 words, question 3, plus 2 template each
        "tokens_out": 4,
        "cloud_bytes": 0,
        "finish_reason": "stop",
    }
    assert fake.calls[0].messages[0] == {"role": "system", "content": "Be brief."}
    assert fake.calls[0].options is not None and fake.calls[0].options.max_tokens == 16


async def test_history_that_fits_is_sent_whole() -> None:
    fake = FakeBackend(context_length=2048)
    prepared = await runtime_with(fake).prepare(history(3))
    assert prepared.trimmed == [] and prepared.notice is None
    assert len(prepared.messages) == 1 + 7


async def test_long_history_is_trimmed_oldest_first_with_a_notice() -> None:
    fake = FakeBackend(context_length=100)  # budget: 100 - min(16, 50) = 84 tokens
    runtime = runtime_with(fake)
    full = history(6)
    prepared = await runtime.prepare(full)
    assert prepared.trimmed == full[: len(prepared.trimmed)]  # a prefix: the oldest
    assert len(prepared.trimmed) % 2 == 0 and len(prepared.trimmed) > 0
    assert prepared.messages[0]["role"] == "system"
    assert prepared.messages[1]["role"] == "user"
    assert prepared.messages[-1]["content"] == "the newest question"
    assert prepared.prompt_tokens == fake.count_tokens(prepared.messages) <= 84
    # the fewest dropped: keeping one more pair would not fit
    bigger = [prepared.messages[0], *full[len(prepared.trimmed) - 2 :]]
    assert fake.count_tokens(bigger) > 84
    assert prepared.trimmed_tokens == fake.count_tokens(
        [prepared.messages[0], *full]
    ) - fake.count_tokens(prepared.messages)
    assert prepared.notice is not None
    assert f"dropped the {len(prepared.trimmed)} oldest message(s)" in prepared.notice
    assert "100-token context" in prepared.notice


async def test_a_single_message_over_the_context_is_refused_not_cut() -> None:
    fake = FakeBackend(context_length=40)
    runtime = runtime_with(fake)
    with pytest.raises(ContextOverflowError) as err:
        await runtime.ask("word " * 60)
    assert "40-token context" in err.value.message and err.value.code == "context_overflow"
    with pytest.raises(ContextOverflowError):
        await runtime.prepare([*history(2)[:-1], {"role": "user", "content": "word " * 60}])
    assert fake.call_count == 0  # nothing reached the model


async def test_system_message_in_the_history_wins() -> None:
    fake = FakeBackend()
    prepared = await runtime_with(fake).prepare(
        [{"role": "system", "content": "Speak French."}, {"role": "user", "content": "hi"}]
    )
    assert [m["content"] for m in prepared.messages] == ["Speak French.", "hi"]


async def test_cancelling_a_request_stops_the_backend() -> None:
    fake = FakeBackend(replies=["w " * 200], token_delay=0.01)
    runtime = runtime_with(fake)
    with trio.move_on_after(0.1) as scope:
        await runtime.ask("long please")
    assert scope.cancelled_caught
    produced = fake.tokens_produced
    assert 0 < produced < 50 and fake.cancelled == 1
    await trio.sleep(0.05)
    assert fake.tokens_produced == produced  # nothing runs on after the cancel


async def test_leaving_a_stream_early_closes_it() -> None:
    fake = FakeBackend(replies=["a b c d e f g h"])
    runtime = runtime_with(fake)
    prepared = await runtime.prepare([{"role": "user", "content": "go"}])
    async with aclosing(runtime.stream(prepared)) as stream:
        async for chunk in stream:
            if chunk.text.strip() == "b":
                break
    assert fake.tokens_produced == 2 and fake.cancelled == 1


async def test_backends_open_once_per_model_by_name() -> None:
    runtime = AgentRuntime(SETTINGS)
    first = await runtime.backend()
    assert await runtime.backend("fake:main") is first
    other = await runtime.backend("fake:other")
    assert other is not first and other.model == "fake:other"
    broken = await runtime.backend("fake:unavailable")
    with pytest.raises(ModelUnavailableError):
        await runtime.ask("x", model="fake:unavailable")
    assert broken in runtime.models_in_use()
    await runtime.aclose()
    assert runtime.models_in_use() == [] and isinstance(first, FakeBackend) and first.closed
