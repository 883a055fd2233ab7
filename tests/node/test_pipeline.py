"""The agent pipeline: real router over the built-in skills, real sandbox, document Q&A,
and the local model (the deterministic fake, since this tests the code above it)."""

from __future__ import annotations

from pathlib import Path

from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.agent.runtime import AgentRuntime
from bitterbot.node.config import load_settings
from bitterbot.node.context import NodeContext
from bitterbot.node.home import Home
from bitterbot.node.pipeline import AgentPipeline
from bitterbot.node.store import Store


async def test_requests_reach_a_skill_the_documents_or_the_local_model(tmp_path: Path) -> None:
    home = Home(tmp_path).ensure()
    store = Store(home.db_path)
    fake = FakeBackend(replies=["Why did the chicken cross the road?"] * 3)
    settings = load_settings(home.path, {"agent.model": "fake:main"}, env={})
    runtime = AgentRuntime(settings, backends={"fake:main": fake}, system_prompt="")
    ctx = NodeContext(settings, home, store, home.identity(), agent=runtime)
    pipeline = AgentPipeline(ctx)
    try:
        math = await pipeline.ask("what is 17 * 23")
        assert math["route"] == "calculator" and math["answer"].strip().endswith("391")
        assert math["backend"] == "skill" and math["cloud_bytes"] == 0

        docs = await pipeline.ask("what does my lease say about pets")
        assert docs["route"] == "docs"
        assert "Not found in your documents" in docs["answer"]

        joke = await pipeline.ask("tell me a joke")
        assert joke["route"] == "local-llm" and joke["answer"].startswith("Why did the chicken")
        assert joke["tokens_out"] > 0 and joke["reason"]
        assert fake.call_count == 1  # only the general request reached the model

        # when the installed skills change, the router retrains before the next request
        before = pipeline._router_key
        pipeline.skills().remove("calculator")
        after_removal = await pipeline.ask("what is 17 * 23")
        assert pipeline._router_key != before and after_removal["route"] != "calculator"
    finally:
        if ctx.skills is not None:
            ctx.skills.close()
        await runtime.aclose()
        store.close()


async def test_a_node_without_a_model_still_answers_with_skills(tmp_path: Path) -> None:
    import pytest

    from bitterbot.protocol.errors import BitterbotError

    home = Home(tmp_path).ensure()
    store = Store(home.db_path)
    missing = str(tmp_path / "no-such-model.gguf")  # a seed node ships without one
    settings = load_settings(home.path, {"agent.model": missing}, env={})
    runtime = AgentRuntime(settings, system_prompt="")
    ctx = NodeContext(settings, home, store, home.identity(), agent=runtime)
    pipeline = AgentPipeline(ctx)
    try:
        math = await pipeline.ask("what is 2 + 3 * 4")
        assert math["route"] == "calculator" and math["answer"].strip().endswith("14")
        with pytest.raises(BitterbotError, match="not found"):  # only now the model matters
            await pipeline.ask("tell me a joke")
    finally:
        if ctx.skills is not None:
            ctx.skills.close()
        await runtime.aclose()
        store.close()
