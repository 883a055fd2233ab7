"""``bitterbot bench sandbox``: sandbox instantiate time and runaway stop latency."""

from __future__ import annotations

import time
from typing import Any

import click

from bitterbot.node.cli.common import bench, print_json

# --- bench ----------------------------------------------------------------------------------


@bench.command("sandbox")
@click.option("--runs", type=int, default=50, help="runs per measurement")
@click.option("--deadline-ms", type=int, default=200, help="deadline of the runaway skill")
@click.option("--json", "as_json", is_flag=True, help="print JSON (the output is always JSON)")
def bench_sandbox(runs: int, deadline_ms: int, as_json: bool) -> None:
    """Instantiate time, per-call overhead, runaway kill latency (JSON)."""
    print_json(_measure_sandbox(runs=max(5, runs), deadline_ms=deadline_ms))


_EMPTY_WAT = b'(module (memory (export "memory") 1) (func (export "_start")))'
_LOOP_WAT = b'(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
_HOST_LOOP_WAT = b"""(module
  (import "bitterbot" "doc_search" (func $s (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "q")
  (func (export "_start") (local $i i32)
    (loop $l
      (drop (call $s (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 64) (i32.const 64)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))))"""


def _measure_sandbox(runs: int, deadline_ms: int) -> dict[str, Any]:
    import statistics

    from bitterbot.agent.sandbox import DeadlineExceeded, HostCalls, Sandbox, SandboxLimits
    from bitterbot.agent.skills import BUILTIN_DIR

    def med(xs: list[float]) -> float:
        return round(statistics.median(xs), 3)

    def p95(xs: list[float]) -> float:
        return round(sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.95))], 3)

    calc = (BUILTIN_DIR / "calculator" / "calculator.wasm").read_bytes()
    sandbox = Sandbox()
    try:
        t = time.perf_counter()
        sandbox.compile(calc)
        compile_ms = (time.perf_counter() - t) * 1000
        sandbox.run(_EMPTY_WAT)
        empty = [sandbox.run(_EMPTY_WAT) for _ in range(runs)]
        calc_runs = [sandbox.run(calc, input="2*(3+4)") for _ in range(runs)]
        calls = HostCalls(doc_search=lambda q, k, timeout_s: b"[]")
        host = [sandbox.run(_HOST_LOOP_WAT, calls=calls) for _ in range(max(3, runs // 10))]
        kills = []
        for _ in range(5):
            t = time.perf_counter()
            try:
                sandbox.run(_LOOP_WAT, limits=SandboxLimits(deadline_ms=deadline_ms))
            except DeadlineExceeded:
                kills.append((time.perf_counter() - t) * 1000 - deadline_ms)
        base = statistics.median(r.elapsed_ms for r in empty)
    finally:
        sandbox.close()
    inst = [r.instantiate_ms for r in calc_runs]
    return {
        "runs": runs,
        "compile_calculator_ms": round(compile_ms, 3),
        "instantiate_cached_ms_median": med(inst),
        "instantiate_cached_ms_p95": p95(inst),
        "call_overhead_ms_median": med([r.elapsed_ms for r in empty]),
        "calculator_run_ms_median": med([r.elapsed_ms for r in calc_runs]),
        "host_call_us": round((statistics.median(r.elapsed_ms for r in host) - base), 3),
        "runaway_deadline_ms": deadline_ms,
        "runaway_overshoot_ms_median": med(kills) if kills else None,
        "runaway_overshoot_ms_max": round(max(kills), 3) if kills else None,
        "targets": {
            "instantiate_le_20ms": bool(inst) and statistics.median(inst) <= 20,
            "runaway_within_deadline_plus_50ms": len(kills) == 5 and max(kills) <= 50,
        },
    }
