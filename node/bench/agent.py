"""``bitterbot bench llm``: tokens/s and first-token time against raw llama.cpp."""

from __future__ import annotations

import statistics
import time
from typing import Any

import click

from bitterbot.node.cli.common import CliContext, bench, home_option, pass_cli, print_json
from bitterbot.protocol.errors import ModelError

# --- bench llm ------------------------------------------------------------------------
BENCH_PROMPT = "Write a long story about a dragon who learns to bake bread."


@bench.command("llm")
@home_option
@click.option("--json", "as_json", is_flag=True, help="print JSON (always JSON)")
@click.option("--model", default="smollm2", show_default=True, help="smollm2 or a .gguf path")
@click.option("--tokens", type=click.IntRange(8, 4096), default=128, show_default=True)
@click.option("--runs", type=click.IntRange(1, 50), default=3, show_default=True)
@pass_cli
def bench_llm(cli_ctx: CliContext, as_json: bool, model: str, tokens: int, runs: int) -> None:
    """Our pipeline vs raw llama-cpp-python: tokens/s and first-token latency, same run.

    Both sides use the same cached ``Llama``, GGUF, prompt, greedy sampling and token budget;
    the KV cache is reset before every run so each one evaluates the whole prompt; runs
    alternate raw/ours so machine-load drift hits both. Reported numbers are medians.
    """
    import trio

    from bitterbot.agent.backends import GenerateOptions
    from bitterbot.agent.llama_backend import LlamaBackend
    from bitterbot.agent.models import resolve_model
    from bitterbot.agent.runtime import AgentRuntime

    settings = cli_ctx.settings()
    spec = resolve_model(model, settings, cli_ctx.home_path)
    if spec.kind != "llama.cpp":
        raise ModelError(
            f"bench llm measures llama.cpp models, not {spec.kind}", hint="pass a GGUF"
        )
    backend = LlamaBackend(
        spec.target,
        n_ctx=int(settings["agent.context"]),
        n_threads=int(settings["agent.threads"]),
        model_name=spec.name,
    )
    runtime = AgentRuntime(settings, backends={spec.name: backend}, system_prompt="")
    messages = [{"role": "user", "content": BENCH_PROMPT}]
    options = GenerateOptions(max_tokens=tokens, temperature=0.0)

    def raw_run(llm: Any) -> tuple[float, float, float, str]:
        llm.reset()
        started = time.perf_counter()
        first = None
        parts = []
        for part in llm.create_chat_completion(
            messages=messages, max_tokens=tokens, temperature=0.0, stream=True
        ):
            text = part["choices"][0]["delta"].get("content")
            if text:
                first = first or time.perf_counter()
                parts.append(text)
        return started, first or started, time.perf_counter(), "".join(parts)

    async def ours_run(llm: Any) -> tuple[float, float, float, str]:
        llm.reset()
        started = time.perf_counter()
        first = None
        parts = []
        prepared = await runtime.prepare(messages, model=spec.name, options=options)
        async for chunk in runtime.stream(prepared):
            if chunk.text:
                first = first or time.perf_counter()
                parts.append(chunk.text)
        return started, first or started, time.perf_counter(), "".join(parts)

    def measure(run: tuple[float, float, float, str], llm: Any) -> dict[str, Any]:
        started, first, ended, text = run
        n = len(llm.tokenize(text.encode(), add_bos=False, special=False))
        decode_s = ended - first
        return {
            "first_token_ms": (first - started) * 1000,
            "tokens": n,
            "tokens_per_s": (n - 1) / decode_s if decode_s > 0 and n > 1 else 0.0,
            "text": text,
        }

    async def main() -> dict[str, Any]:
        loaded = await backend.load()
        llm = loaded.llm
        raw_run(llm)  # warm-up: first decode allocates buffers
        raws, ours = [], []
        for _ in range(runs):
            raws.append(measure(raw_run(llm), llm))
            ours.append(measure(await ours_run(llm), llm))
        return _bench_report(spec.name, backend, tokens, runs, raws, ours)

    print_json(trio.run(main))


def _bench_report(
    model: str,
    backend: Any,
    tokens: int,
    runs: int,
    raws: list[dict[str, Any]],
    ours: list[dict[str, Any]],
) -> dict[str, Any]:
    def med(rows: list[dict[str, Any]], key: str) -> float:
        return round(float(statistics.median(r[key] for r in rows)), 2)

    raw_tps, ours_tps = med(raws, "tokens_per_s"), med(ours, "tokens_per_s")
    raw_ft, ours_ft = med(raws, "first_token_ms"), med(ours, "first_token_ms")
    ratio = round(ours_tps / raw_tps, 4) if raw_tps else 0.0
    return {
        "model": model,
        "gguf": str(backend.path),
        "threads": backend.n_threads,
        "n_ctx": backend.n_ctx,
        "prompt": BENCH_PROMPT,
        "max_tokens": tokens,
        "runs": runs,
        "tokens_generated": int(med(ours, "tokens")),
        "same_output": all(r["text"] == o["text"] for r, o in zip(raws, ours, strict=True)),
        "raw": {"tokens_per_s": raw_tps, "first_token_ms": raw_ft},
        "bitterbot": {"tokens_per_s": ours_tps, "first_token_ms": ours_ft},
        "tokens_per_s_ratio": ratio,
        "first_token_delta_ms": round(ours_ft - raw_ft, 2),
        "targets": {"tokens_per_s_ratio_min": 0.97, "first_token_delta_ms_max": 20.0},
        "targets_met": ratio >= 0.97 and ours_ft - raw_ft <= 20.0,
    }
