"""The agent runtime: ask and chat over a model backend, fitting the context explicitly.

One :class:`AgentRuntime` per process (the node attaches it as ``ctx.agent``; the CLI makes
one when no node runs). It opens backends by model name on first use and keeps them.

Context: a single prompt that does not fit raises :class:`ContextOverflowError`. A chat
history that does not fit is trimmed oldest-first, and :class:`PreparedChat` says what was
dropped so callers show it (CLI notice, ``X-Bitterbot-Trimmed`` header): never silent.
Part of the context is kept free for the answer (``min(max_tokens, context/2)``).

Cancellation is trio's: cancel the scope around ``ask``/``stream`` (client disconnect,
Ctrl-C) and the backend stops generating after the current token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from bitterbot.agent.backends import (
    Backend,
    Chunk,
    Completion,
    ContextOverflowError,
    GenerateOptions,
    Message,
)
from bitterbot.agent.models import open_backend

ROUTE_LOCAL = "local-llm"
DEFAULT_SYSTEM_PROMPT = (
    "You are Bitterbot, a concise and accurate assistant. Answer in one short sentence."
)


@dataclass
class AskResult:
    answer: str
    backend: str
    model: str
    latency_ms: float
    tokens_in: int
    tokens_out: int
    route: str = ROUTE_LOCAL
    cloud_bytes: int = 0
    finish_reason: str = "stop"

    def as_dict(self) -> dict[str, Any]:
        """The shape of ``bitterbot ask --json`` and ``POST /v1/agent/ask``: the issue's eight
        keys, plus ``finish_reason`` so a cut answer is never passed off as whole."""
        return {
            "answer": self.answer,
            "route": self.route,
            "backend": self.backend,
            "model": self.model,
            "latency_ms": round(self.latency_ms, 1),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cloud_bytes": self.cloud_bytes,
            "finish_reason": self.finish_reason,  # "length": cut at max_tokens
        }


@dataclass
class PreparedChat:
    """Messages that fit the context, and what had to be dropped to make them fit."""

    backend: Backend
    messages: list[Message]
    options: GenerateOptions
    prompt_tokens: int
    trimmed: list[Message] = field(default_factory=list)
    trimmed_tokens: int = 0

    @property
    def notice(self) -> str | None:
        if not self.trimmed:
            return None
        return (
            f"dropped the {len(self.trimmed)} oldest message(s) ({self.trimmed_tokens} tokens) "
            f"to fit the {self.backend.context_length}-token context of {self.backend.model}"
        )


class AgentRuntime:
    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        home: Path | None = None,
        backends: Mapping[str, Backend] | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.settings = settings
        self.home = home
        self.default_model = str(settings["agent.model"])
        prompt = system_prompt if system_prompt is not None else settings["agent.system_prompt"]
        self.system_prompt = DEFAULT_SYSTEM_PROMPT if prompt is None else str(prompt)
        self._backends: dict[str, Backend] = dict(backends or {})
        self._open_lock = trio.Lock()

    # --- backends -------------------------------------------------------------
    async def backend(self, model: str | None = None) -> Backend:
        """The backend serving ``model`` (default ``agent.model``), opened and loaded once."""
        name = model or self.default_model
        backend = self._backends.get(name)
        if backend is not None:
            return backend
        async with self._open_lock:
            backend = self._backends.get(name)
            if backend is None:
                backend = open_backend(name, self.settings, self.home)
                load = getattr(backend, "load", None)
                if load is not None:  # optional hook: load weights / check the server
                    await load()
                self._backends[name] = backend
        return backend

    def models_in_use(self) -> list[Backend]:
        return list(self._backends.values())

    def options(self, **overrides: Any) -> GenerateOptions:
        opts = GenerateOptions(max_tokens=int(self.settings["agent.max_tokens"]))
        return replace(opts, **{k: v for k, v in overrides.items() if v is not None})

    # --- context fitting --------------------------------------------------------
    async def prepare(
        self,
        history: Sequence[Message],
        *,
        model: str | None = None,
        options: GenerateOptions | None = None,
        system_prompt: str | None = None,
        trim: bool = True,
    ) -> PreparedChat:
        """Fit ``history`` (ending with the new user message) into the model's context.

        A leading system message in ``history`` wins over the runtime's system prompt.
        With ``trim=False`` (a single question) nothing is dropped: it fits or it raises.
        """
        if not history:
            raise ContextOverflowError("nothing to answer: no messages", hint="send a message")
        backend = await self.backend(model)
        options = options or self.options()
        system = [m for m in history[:1] if m["role"] == "system"]
        turns = list(history[len(system) :])
        if not system:
            prompt = self.system_prompt if system_prompt is None else system_prompt
            system = [{"role": "system", "content": prompt}] if prompt else []
        context = backend.context_length
        reserve = min(options.max_tokens, context // 2)
        budget = context - reserve

        def count(start: int) -> int:
            return backend.count_tokens(system + turns[start:])

        needed = count(0)
        if needed <= budget:
            return PreparedChat(backend, system + turns, options, needed)
        alone = count(len(turns) - 1)
        if alone > budget or not trim:
            raise ContextOverflowError(
                f"the message needs {alone if trim else needed} tokens; {backend.model} has a "
                f"{context}-token context with {reserve} kept for the answer",
                hint="shorten the message, lower max_tokens, or raise agent.context",
            )
        # binary search for the fewest oldest messages to drop (fewer dropped -> more tokens)
        low, high = 1, len(turns) - 1
        while low < high:
            mid = (low + high) // 2
            if count(mid) <= budget:
                high = mid
            else:
                low = mid + 1
        start = low
        while start < len(turns) - 1 and turns[start]["role"] != "user":
            start += 1  # begin at a user turn, as chat templates expect
        kept = count(start)
        return PreparedChat(
            backend,
            system + turns[start:],
            options,
            kept,
            trimmed=turns[:start],
            trimmed_tokens=needed - kept,
        )

    # --- answering ---------------------------------------------------------------
    async def complete(self, prepared: PreparedChat) -> Completion:
        return await prepared.backend.generate(prepared.messages, prepared.options)

    async def stream(self, prepared: PreparedChat) -> AsyncGenerator[Chunk, None]:
        """The answer's chunks; closing the iterator early stops the generation."""
        async with aclosing(prepared.backend.stream(prepared.messages, prepared.options)) as it:
            async for chunk in it:
                yield chunk

    async def ask(
        self, question: str, *, model: str | None = None, options: GenerateOptions | None = None
    ) -> AskResult:
        """One question, no history: the core of ``bitterbot ask`` (routing comes later)."""
        started = time.perf_counter()
        prepared = await self.prepare(
            [{"role": "user", "content": question}], model=model, options=options, trim=False
        )
        done = await self.complete(prepared)
        return AskResult(
            answer=done.text.strip(),
            backend=done.backend,
            model=done.model,
            latency_ms=(time.perf_counter() - started) * 1000,
            tokens_in=done.tokens_in,
            tokens_out=done.tokens_out,
            cloud_bytes=done.bytes_sent,
            finish_reason=done.finish_reason,
        )

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
        self._backends.clear()
