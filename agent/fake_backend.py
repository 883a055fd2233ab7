"""A deterministic backend for testing code above the backend interface.

Tokens are whitespace-separated words, so counts are predictable. Replies come from a script
(a list consumed in order, then the fallback), or a function of the messages; the default
echoes the last user message. Every call is recorded so tests can assert what reached the
model. ``token_delay`` makes streaming slow enough to test cancellation.

    fake = FakeBackend(replies=["first answer", "second answer"], context_length=64)
    fake = FakeBackend(reply=lambda messages: messages[-1]["content"].upper())
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from bitterbot.agent.backends import (
    Chunk,
    Completion,
    GenerateOptions,
    Message,
    ModelUnavailableError,
    register_backend,
)

# Tokens for the chat template around each message ("<role>" and "</s>"), like a real one.
TEMPLATE_TOKENS_PER_MESSAGE = 2


@dataclass
class FakeCall:
    kind: str  # "generate" | "stream" | "embed"
    messages: list[Message]
    options: GenerateOptions | None


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        model: str = "fake",
        *,
        replies: Sequence[str] | None = None,
        reply: Callable[[Sequence[Message]], str] | None = None,
        context_length: int = 2048,
        token_delay: float = 0.0,
        fail_with: Exception | None = None,
        embedding_dim: int = 8,
    ) -> None:
        self.model = model
        self._script = list(replies or [])
        self._reply = reply
        self._context_length = context_length
        self.token_delay = token_delay
        self.fail_with = fail_with
        self.embedding_dim = embedding_dim
        self.calls: list[FakeCall] = []
        self.tokens_produced = 0  # across all calls; stops growing when a stream is cancelled
        self.cancelled = 0  # streams closed before they finished
        self.closed = False

    # --- interface ----------------------------------------------------------
    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m["content"].split()) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages)

    async def generate(self, messages: Sequence[Message], options: GenerateOptions) -> Completion:
        text = ""
        final: Chunk | None = None
        async for chunk in self._stream("generate", messages, options):
            text += chunk.text
            final = chunk
        assert final is not None
        return Completion(
            text=text,
            model=self.model,
            backend=self.name,
            tokens_in=final.tokens_in or 0,
            tokens_out=final.tokens_out or 0,
            finish_reason=final.finish_reason or "stop",
        )

    def stream(
        self, messages: Sequence[Message], options: GenerateOptions
    ) -> AsyncGenerator[Chunk, None]:
        return self._stream("stream", messages, options)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(FakeCall("embed", [{"role": "user", "content": t} for t in texts], None))
        return [_fake_vector(t, self.embedding_dim) for t in texts]

    async def aclose(self) -> None:
        self.closed = True

    # --- helpers ------------------------------------------------------------
    @property
    def call_count(self) -> int:
        return len(self.calls)

    def _next_reply(self, messages: Sequence[Message]) -> str:
        if self._script:
            return self._script.pop(0)
        if self._reply is not None:
            return self._reply(messages)
        users = [m["content"] for m in messages if m["role"] == "user"]
        return f"echo: {users[-1] if users else ''}"

    async def _stream(
        self, kind: str, messages: Sequence[Message], options: GenerateOptions
    ) -> AsyncGenerator[Chunk, None]:
        self.calls.append(FakeCall(kind, [dict(m) for m in messages], options))
        if self.fail_with is not None:
            raise self.fail_with
        tokens_in = self.count_tokens(messages)
        words = self._next_reply(messages).split()
        finish = "stop"
        if len(words) > options.max_tokens:
            words, finish = words[: options.max_tokens], "length"
        sent = 0
        try:
            for i, word in enumerate(words):
                if self.token_delay:
                    await trio.sleep(self.token_delay)
                else:
                    await trio.lowlevel.checkpoint()
                self.tokens_produced += 1
                sent += 1
                yield Chunk(text=word if i == 0 else " " + word)
        finally:
            if sent < len(words):
                self.cancelled += 1
        yield Chunk(text="", finish_reason=finish, tokens_in=tokens_in, tokens_out=sent)


def _fake_vector(text: str, dim: int) -> list[float]:
    import hashlib

    digest = hashlib.sha256(text.encode()).digest()
    return [digest[i % len(digest)] / 255.0 for i in range(dim)]


def _factory(name: str, settings: Mapping[str, Any]) -> FakeBackend:
    """``fake:NAME`` models; ``fake:unavailable`` fails like a server that is down;
    ``fake:slow`` streams a long answer at 50 tokens/s (for Ctrl-C and disconnect tests)."""
    context = int(settings["agent.context"])
    if name == "slow":
        return FakeBackend(
            model="fake:slow",
            context_length=context,
            reply=lambda _m: "word " * 5000,
            token_delay=0.02,
        )
    if name == "unavailable":
        return FakeBackend(
            model="fake:unavailable",
            context_length=context,
            fail_with=ModelUnavailableError("fake model is unavailable", hint="use another model"),
        )
    return FakeBackend(model=f"fake:{name}", context_length=context)


register_backend("fake", _factory)
