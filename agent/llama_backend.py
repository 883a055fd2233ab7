"""llama.cpp backend, in-process through llama-cpp-python.

- Models load once per process: a cache keyed by (path, n_ctx, n_threads) shares one
  ``Llama`` between every backend object that asks for the same thing.
- A ``Llama`` is not thread-safe, so each cached model carries a lock held by the worker
  thread for the whole generation; a per-backend ``trio.CapacityLimiter`` queues requests
  in trio (cancellable) instead of in blocked threads.
- Streaming: the worker thread pushes each piece into an unbounded trio memory channel with
  ``TrioToken.run_sync_soon`` (no round trip per token, so the pipeline keeps the raw
  tokens/s). Cancellation (client gone, Ctrl-C) sets a flag the sampler checks after every
  token through llama-cpp-python's ``stopping_criteria``; the stream waits (shielded) for
  the thread to finish, so no thread outlives the request.
- The chat template is the GGUF's own (``tokenizer.chat_template``), rendered by
  llama-cpp-python's Jinja2 formatter; prompts are tokenized once here so the context check
  and the generation see the same tokens.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import threading
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import outcome
import trio

from bitterbot.agent.backends import (
    Chunk,
    Completion,
    ContextOverflowError,
    GenerateOptions,
    Message,
    ModelNotFoundError,
    ModelUnavailableError,
    register_backend,
)

GGUF_MAGIC = b"GGUF"
# Room beyond the weights for the KV cache, scratch buffers and the runtime itself.
MEMORY_MARGIN_BYTES = 128 * 1024 * 1024
MEAN_POOLING = 1  # llama_cpp.LLAMA_POOLING_TYPE_MEAN, without importing llama_cpp here
MAX_EMBED_TEXTS = 256


@dataclass
class LoadedModel:
    llm: Any  # llama_cpp.Llama
    lock: threading.Lock  # one generation at a time per Llama
    formatter: Any  # llama_cpp.llama_chat_format.Jinja2ChatFormatter | None
    load_seconds: float


_CACHE: dict[tuple[str, int, int, bool], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


@atexit.register
def _close_cached_models() -> None:
    """Free cached models before interpreter teardown: ``Llama.__del__`` run that late
    finds llama.cpp's bindings already gone and prints a TypeError traceback."""
    with _CACHE_LOCK:
        for loaded in _CACHE.values():
            if not isinstance(loaded, LoadedModel):
                continue
            with contextlib.suppress(Exception):  # best effort at exit; nothing to report to
                loaded.llm.close()
        _CACHE.clear()


def available_memory_bytes() -> int:
    """Memory the kernel says a new allocation can get without swapping."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # not Linux
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_model_file(path: Path, *, available: int | None = None) -> int:
    """Refuse a missing, non-GGUF or too-large file before llama.cpp touches it; its size."""
    if not path.is_file():
        raise ModelNotFoundError(
            f"model file {path} does not exist",
            hint="check the path in agent.model or --model (see `bitterbot models list`)",
        )
    try:
        with path.open("rb") as f:
            magic = f.read(4)
        size = path.stat().st_size
    except OSError as exc:
        raise ModelUnavailableError(
            f"cannot read model file {path}: {exc.strerror}", hint="check its permissions"
        ) from exc
    if magic != GGUF_MAGIC:
        raise ModelUnavailableError(
            f"{path} is not a GGUF model file",
            hint="download the model again, or choose a .gguf file",
            code="model_corrupt",
        )
    free = available_memory_bytes() if available is None else available
    if size + MEMORY_MARGIN_BYTES > free:
        raise ModelUnavailableError(
            f"model {path.name} needs about {(size + MEMORY_MARGIN_BYTES) >> 20} MB of memory, "
            f"only {free >> 20} MB is available",
            hint="close other programs, or choose a smaller model or quantization "
            "(the embedded 'smollm2' needs about 230 MB)",
            code="model_too_large",
        )
    return size


def load_model(path: Path, n_ctx: int, n_threads: int, *, embedding: bool = False) -> LoadedModel:
    """The cached model for these parameters, loading it on first use (blocking)."""
    key = (str(path.absolute()), n_ctx, n_threads, embedding)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        check_model_file(path)
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        started = time.perf_counter()
        try:
            extra: dict[str, Any] = (
                {"embedding": True, "pooling_type": MEAN_POOLING} if embedding else {}
            )
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False, **extra
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailableError(
                f"llama.cpp could not load {path}: {exc}",
                hint="the file is corrupt or of an unsupported architecture: download it again "
                "or choose another model",
                code="model_corrupt",
            ) from exc
        formatter = None
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            vocab = llm._model
            eos = vocab.token_get_text(llm.token_eos()) if llm.token_eos() != -1 else ""
            bos = vocab.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else ""
            formatter = Jinja2ChatFormatter(
                template=template, eos_token=eos, bos_token=bos, stop_token_ids=[llm.token_eos()]
            )
        loaded = LoadedModel(llm, threading.Lock(), formatter, time.perf_counter() - started)
        _CACHE[key] = loaded
        return loaded


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


HANDOVER_S = 0.01


class LlamaBackend:
    name = "llama.cpp"

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = 2048,
        n_threads: int = 2,
        model_name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.model = model_name or self.path.stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._loaded: LoadedModel | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._last_prompt: tuple[tuple[tuple[str, str], ...], list[int], list[str]] | None = None

    @property
    def context_length(self) -> int:
        return self.n_ctx

    async def load(self) -> LoadedModel:
        """Load (or fetch from the cache) in a worker thread; idempotent."""
        if self._loaded is None:
            self._loaded = await trio.to_thread.run_sync(
                load_model, self.path, self.n_ctx, self.n_threads, limiter=self._limiter
            )
        return self._loaded

    def _loaded_now(self) -> LoadedModel:
        if self._loaded is None:  # sync callers before load(): pay the load here once
            self._loaded = load_model(self.path, self.n_ctx, self.n_threads)
        return self._loaded

    def tokenize_chat(self, messages: Sequence[Message]) -> tuple[list[int], list[str]]:
        """Prompt tokens for ``messages`` through the GGUF's chat template, and its stops.

        The last result is kept: the runtime counts tokens to fit the context and then
        streams the same messages, which should not render and tokenize twice."""
        key = tuple((m["role"], m["content"]) for m in messages)
        if self._last_prompt is not None and self._last_prompt[0] == key:
            return list(self._last_prompt[1]), list(self._last_prompt[2])
        loaded = self._loaded_now()
        if loaded.formatter is None:
            raise ModelUnavailableError(
                f"{self.path.name} has no chat template in its metadata",
                hint="use an instruct/chat GGUF (one with tokenizer.chat_template)",
            )
        result = loaded.formatter(messages=list(messages))
        tokens: list[int] = loaded.llm.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        stops = (
            []
            if result.stop is None
            else [result.stop]
            if isinstance(result.stop, str)
            else list(result.stop)
        )
        self._last_prompt = (key, tokens, stops)
        return list(tokens), list(stops)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.tokenize_chat(messages)[0])

    async def generate(self, messages: Sequence[Message], options: GenerateOptions) -> Completion:
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        final = Chunk(text="")
        async for chunk in self.stream(messages, options):
            if chunk.text and first is None:
                first = (time.perf_counter() - started) * 1000
            parts.append(chunk.text)
            final = chunk
        return Completion(
            text="".join(parts),
            model=self.model,
            backend=self.name,
            tokens_in=final.tokens_in or 0,
            tokens_out=final.tokens_out or 0,
            finish_reason=final.finish_reason or "stop",
            first_token_ms=first,
        )

    async def stream(
        self, messages: Sequence[Message], options: GenerateOptions
    ) -> AsyncGenerator[Chunk, None]:
        loaded = await self.load()
        tokens, template_stops = self.tokenize_chat(messages)
        if len(tokens) >= self.n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(tokens)} tokens; the context of {self.model} holds {self.n_ctx}",
                hint="shorten the question, or raise agent.context (up to the model's trained length)",
            )
        max_tokens = min(options.max_tokens, self.n_ctx - len(tokens))
        kwargs = self._sampling(loaded, options, template_stops, max_tokens)
        borrower = object()  # not the task: a generator may be finalized by another task
        await self._limiter.acquire_on_behalf_of(borrower)
        try:
            send, receive = trio.open_memory_channel[Any](math.inf)
            stop = threading.Event()
            done = trio.Event()
            trio_token = trio.lowlevel.current_trio_token()

            # Hand text to trio at most every HANDOVER_S (the first piece at once): one
            # wake-up of the event loop per token costs the decoder measurable speed.
            pending: list[str] = []
            pending_lock = threading.Lock()
            last_handover = [0.0]

            def flush() -> None:  # in the trio thread
                with pending_lock:
                    piece = "".join(pending)
                    pending.clear()
                if piece:
                    send.send_nowait(Chunk(text=piece))

            def offer(piece: str, force: bool = False) -> None:  # in the worker thread
                with pending_lock:
                    pending.append(piece)
                now = time.monotonic()
                if force or now - last_handover[0] >= HANDOVER_S:
                    last_handover[0] = now
                    trio_token.run_sync_soon(flush)

            def produce() -> Chunk:
                text: list[str] = []
                reason = "length"
                with loaded.lock:
                    if stop.is_set():  # given up while another request held the model
                        return Chunk(text="", finish_reason="cancelled", tokens_in=len(tokens))
                    # Leaving the loop closes llama-cpp-python's generator, which stops
                    # decoding: as prompt as a StoppingCriteria, without its per-token cost.
                    for part in loaded.llm.create_completion(tokens, stream=True, **kwargs):
                        if stop.is_set():
                            break
                        choice = part["choices"][0]
                        if choice["text"]:
                            text.append(choice["text"])
                            offer(choice["text"])
                        if choice.get("finish_reason"):
                            reason = choice["finish_reason"]
                    out = "".join(text)
                    n_out = (
                        len(loaded.llm.tokenize(out.encode("utf-8"), add_bos=False, special=False))
                        if out
                        else 0
                    )
                if stop.is_set():
                    reason = "cancelled"
                return Chunk(text="", finish_reason=reason, tokens_in=len(tokens), tokens_out=n_out)

            def hand_over(result: outcome.Outcome[Chunk]) -> None:  # in the trio thread
                if isinstance(result, outcome.Error):  # the consumer re-raises it
                    send.send_nowait(_Failed(result.error))
                else:
                    send.send_nowait(result.unwrap())
                send.close()
                done.set()

            def deliver(result: outcome.Outcome[Chunk]) -> None:  # worker thread, at the end
                trio_token.run_sync_soon(flush)  # what is still pending, before the end
                trio_token.run_sync_soon(hand_over, result)

            trio.lowlevel.start_thread_soon(produce, deliver, name=f"llama.cpp {self.model}")
            try:
                async for item in receive:
                    if isinstance(item, _Failed):
                        raise ModelUnavailableError(
                            f"llama.cpp failed while generating: {item.error}",
                            hint="retry; if it persists, reload the node or choose another model",
                        ) from item.error
                    yield item
            finally:
                stop.set()
                with trio.CancelScope(shield=True):
                    await done.wait()
        finally:
            self._limiter.release_on_behalf_of(borrower)

    def _sampling(
        self,
        loaded: LoadedModel,
        options: GenerateOptions,
        template_stops: list[str],
        max_tokens: int,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "stop": list(options.stop) + template_stops,
        }
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if options.json_schema is not None:
            from llama_cpp.llama_grammar import LlamaGrammar

            try:
                kwargs["grammar"] = LlamaGrammar.from_json_schema(
                    json.dumps(options.json_schema), verbose=False
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelUnavailableError(
                    f"cannot turn the JSON schema into a grammar: {exc}",
                    hint="simplify the schema",
                ) from exc
        return kwargs

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Mean-pooled, L2-normalised vectors from a second, embedding-mode context of the
        same GGUF (cached like the chat one; the weights are shared through mmap)."""
        if len(texts) > MAX_EMBED_TEXTS:
            raise ContextOverflowError(
                f"{len(texts)} texts in one embed call (at most {MAX_EMBED_TEXTS})",
                hint="send them in batches",
            )
        loaded = await trio.to_thread.run_sync(
            partial(load_model, self.path, self.n_ctx, self.n_threads, embedding=True),
            limiter=self._limiter,
        )
        for text in texts:
            n = len(loaded.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))
            if n > self.n_ctx:
                raise ContextOverflowError(
                    f"a text to embed is {n} tokens; the context holds {self.n_ctx}",
                    hint="split the text into smaller chunks",
                )

        def run() -> list[list[float]]:
            with loaded.lock:
                vectors = loaded.llm.embed(list(texts), normalize=True)
            return [[float(x) for x in v] for v in vectors]

        return await trio.to_thread.run_sync(run, limiter=self._limiter)

    async def aclose(self) -> None:
        # The model stays in the process-wide cache for the next backend that wants it.
        self._loaded = None


def _factory(name: str, settings: Mapping[str, Any]) -> LlamaBackend:
    path = Path(name)
    return LlamaBackend(
        path,
        n_ctx=int(settings["agent.context"]),
        n_threads=int(settings["agent.threads"]),
        model_name="smollm2" if path.name.startswith("SmolLM2-135M") else path.stem,
    )


register_backend("llama.cpp", _factory)
