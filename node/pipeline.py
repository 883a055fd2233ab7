"""The node's agent pipeline: router over the installed skills, skill runner, orchestrator.

This is where the parts meet: the router (``agent/router.py``) trains on every installed
skill's description and examples plus the built-in document Q&A skill; a routed request
runs in the sandbox (``agent/skills.py``) with the local model and document search as the
capabilities the user granted; everything else goes through the orchestrator's escalation
policy and privacy gate (``agent/orchestrator.py``), with every outgoing byte in the
privacy log. The router retrains (seconds, cached on disk) only when the installed skills
change.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import trio

from bitterbot.agent.backends import Backend
from bitterbot.node.context import NodeContext
from bitterbot.protocol.errors import BitterbotError, NotRunningError

logger = logging.getLogger(__name__)

ROUTER_HEAD_FILE = "router-head.npz"


class AgentPipeline:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.cache = ctx.home.path / "cache"
        self._router: Any = None
        self._router_key: str | None = None
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(1)

    # --- parts --------------------------------------------------------------------------
    def skills(self) -> Any:
        from bitterbot.node.skills_store import skills_of

        return skills_of(self.ctx)

    def docs(self) -> Any:
        from bitterbot.node.docs_store import docs_index

        return docs_index(self.ctx)

    def intents(self) -> list[Any]:
        from bitterbot.agent import docs_qa
        from bitterbot.agent.router import SkillIntent

        intents = [i for i in self.skills().intents() if i.name != docs_qa.SKILL_NAME]
        docs_intent = SkillIntent(
            docs_qa.SKILL_NAME, docs_qa.SKILL_DESCRIPTION, list(docs_qa.SKILL_EXAMPLES)
        )
        return [*intents, docs_intent]

    async def router(self) -> Any:
        """The router, retrained when the installed skills changed since the last request."""
        from bitterbot.agent.encoder import get_encoder
        from bitterbot.agent.router import Router

        intents = self.intents()
        key = _fingerprint(intents)
        async with self._lock:
            if self._router is None:
                encoder = await trio.to_thread.run_sync(
                    get_encoder, self.cache, limiter=self._limiter
                )
                self._router = Router(encoder)
            if key != self._router_key:
                head = self.cache / ROUTER_HEAD_FILE
                await trio.to_thread.run_sync(
                    lambda: self._router.set_skills(intents, head_cache=head),
                    limiter=self._limiter,
                )
                self._router_key = key
        return self._router

    async def run_skill(self, name: str, text: str) -> str:
        """Run a routed skill with the capabilities it was granted."""
        from bitterbot.agent import docs_qa
        from bitterbot.agent.skills import runtime_generate

        runtime = self.ctx.agent
        if name == docs_qa.SKILL_NAME:
            from bitterbot.agent.encoder import get_encoder

            backend = await runtime.backend() if runtime is not None else None
            reranker = await trio.to_thread.run_sync(get_encoder, self.cache, limiter=self._limiter)
            return await docs_qa.skill_runner(self.docs(), backend, reranker)(name, text)
        index = self.docs()

        def search(query: str, k: int) -> list[dict[str, Any]]:
            return [hit.to_dict() for hit in index.search(query, k)]

        out = await self.skills().run(
            name,
            text,
            generate=runtime_generate(runtime) if runtime is not None else None,
            search=search,
        )
        return str(out.text)

    # --- asking -------------------------------------------------------------------------
    async def ask(
        self,
        question: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        confirm: Any = None,
    ) -> dict[str, Any]:
        """One request through router, skills, local model, escalation and privacy gate."""
        from bitterbot.agent.orchestrator import Orchestrator
        from bitterbot.node.privacy_log import PrivacyLog

        started = time.perf_counter()
        runtime = self.ctx.agent
        if runtime is None:
            raise NotRunningError(
                "the agent runtime is not running on this node",
                hint="restart the node; see its log for why the agent did not start",
                code="agent_not_running",
            )
        backend = _Recording(lambda: runtime.backend(model))
        log = PrivacyLog(self.ctx.store)
        orch = Orchestrator.from_settings(
            self.ctx.settings,
            local=cast(Backend, backend),  # generate() only: all the orchestrator calls
            router=await self.router(),
            skill_runner=self.run_skill,
            audit=log,
            ledger=log,
            on_decision=log.record_decision,
            confirm=confirm,  # policy "ask": None (an API caller) means "do not send"
        )
        orch.system_prompt = runtime.system_prompt or None
        orch.options = runtime.options(max_tokens=max_tokens)
        result = await orch.ask(question)
        routed = result.as_dict()
        local = backend.last if result.route == "local-llm" else None
        # issue 3's keys first, in its order; then the router's (reason, redaction, cost)
        return {
            "answer": routed["answer"],
            "route": routed["route"],
            "backend": {"local-llm": backend.name, "cloud": "cloud"}.get(result.route, "skill"),
            "model": routed.get("model") or (backend.model if local else ""),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "tokens_in": local.tokens_in if local else 0,
            "tokens_out": local.tokens_out if local else 0,
            "cloud_bytes": routed["cloud_bytes"],
            "finish_reason": local.finish_reason if local else "stop",
            "reason": routed["reason"],
            "redacted_entities": routed["redacted_entities"],
            "cost_microusd": routed["cost_microusd"],
            "steps": routed["steps"],
        }


class _Recording:
    """The local model, opened on first use (a skill or the documents may answer without
    it, so a node without a model, a seed say, still routes), remembering its last
    completion (for the token counts ``ask`` shows)."""

    def __init__(self, open_backend: Callable[[], Awaitable[Any]]) -> None:
        self._open = open_backend
        self._backend: Any = None
        self.last: Any = None

    @property
    def name(self) -> str:
        return str(self._backend.name) if self._backend is not None else ""

    @property
    def model(self) -> str:
        return str(self._backend.model) if self._backend is not None else ""

    async def generate(self, messages: Any, options: Any) -> Any:
        if self._backend is None:
            self._backend = await self._open()
        self.last = await self._backend.generate(messages, options)
        return self.last


def _fingerprint(intents: list[Any]) -> str:
    digest = hashlib.sha256()
    for intent in sorted(intents, key=lambda i: i.name):
        for text in (intent.name, intent.description, *intent.examples):
            digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def pipeline_of(ctx: NodeContext) -> AgentPipeline:
    pipe = ctx.extras.get("pipeline")
    if pipe is None:
        pipe = ctx.extras["pipeline"] = AgentPipeline(ctx)
    return pipe


async def start_skills(ctx: NodeContext, nursery: trio.Nursery) -> None:
    """Node starter: the skill manager (and its built-ins) as ``ctx.skills``; the router is
    trained in the background so the first question does not wait for it."""
    pipeline = pipeline_of(ctx)
    pipeline.skills()

    async def warm() -> None:
        try:
            await pipeline.router()
        except BitterbotError as exc:
            logger.warning("router not ready: %s", exc)

    if ctx.settings["agent.preload"]:
        nursery.start_soon(warm)
