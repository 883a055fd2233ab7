"""The model backend interface and its registry.

A backend is a small class with three operations: ``generate`` (one whole answer),
``stream`` (the answer as text pieces), ``embed`` (vectors). Built-in backends
(llama.cpp, ollama, OpenAI-compatible cloud, the deterministic fake) register through the
same :func:`register_backend` an outside plugin would use.

Messages are OpenAI-style ``{"role": "system"|"user"|"assistant", "content": str}`` dicts.
Backends are async; blocking inference runs in a worker thread behind a limiter.

A factory is called as ``factory(name, settings)``: ``name`` is the model name after the
``kind:`` prefix (``ollama:llama3`` -> ``"llama3"``; for llama.cpp, the GGUF path) and
``settings`` the node's resolved settings mapping (``agent.threads``, ``ollama.url``...).
Built-ins register when :func:`load_builtin_backends` runs (model resolution calls it).

Optional hook: ``async def load(self)`` (load weights, check the server). The runtime calls
it once when it opens a backend, so load errors surface there with their fix.

Errors (all :class:`ModelError`)::

    ModelError
    ├── ModelNotFoundError     no such model / file (also a NotFoundError: HTTP 404)
    ├── ContextOverflowError   the prompt does not fit the context (also ValidationError: 400)
    └── ModelUnavailableError  corrupt file, not enough memory, server unreachable
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bitterbot.protocol.errors import ModelError, NotFoundError, ValidationError

Message = dict[str, str]


class ModelNotFoundError(ModelError, NotFoundError):
    code = "model_not_found"


class ContextOverflowError(ModelError, ValidationError):
    code = "context_overflow"


class ModelUnavailableError(ModelError):
    code = "model_unavailable"


@dataclass
class GenerateOptions:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    json_schema: dict[str, Any] | None = None  # constrain output where the backend can


@dataclass
class Completion:
    text: str
    model: str
    backend: str
    tokens_in: int
    tokens_out: int
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"
    first_token_ms: float | None = None
    bytes_sent: int = 0  # bytes that left the device for this completion (cloud only)


@dataclass
class Chunk:
    """One streamed piece; the last chunk has ``finish_reason`` set and token counts."""

    text: str
    finish_reason: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None


@runtime_checkable
class Backend(Protocol):
    name: str  # backend kind: "llama.cpp", "ollama", "cloud", "fake"
    model: str  # model identifier shown to users

    @property
    def context_length(self) -> int: ...

    def count_tokens(self, messages: Sequence[Message]) -> int: ...

    async def generate(
        self, messages: Sequence[Message], options: GenerateOptions
    ) -> Completion: ...

    def stream(
        self, messages: Sequence[Message], options: GenerateOptions
    ) -> AsyncGenerator[Chunk, None]: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def aclose(self) -> None: ...


BackendFactory = Callable[..., Backend]
_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(kind: str, factory: BackendFactory) -> None:
    """Make ``kind`` available to model resolution. Outside plugins call this too."""
    _REGISTRY[kind] = factory


def backend_factory(kind: str) -> BackendFactory:
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ModelError(f"no model backend {kind!r} (known: {known})") from None


def registered_backends() -> list[str]:
    return sorted(_REGISTRY)


BUILTIN_MODULES = ("llama_backend", "ollama_backend", "fake_backend", "cloud_backend")


def load_builtin_backends() -> None:
    """Import the built-in backend modules so they register (cheap: no model libraries yet).

    A module that is absent from this build (``cloud_backend`` before the router lands) is
    skipped; a module that is present but fails to import raises, so breakage stays visible.
    """
    import importlib
    import importlib.util

    for module in BUILTIN_MODULES:
        name = f"bitterbot.agent.{module}"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
