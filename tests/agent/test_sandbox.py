"""The wasmtime sandbox: real wasmtime, the real built-in Rust modules, WAT probes."""

from __future__ import annotations

import statistics
import time

import pytest

from bitterbot.agent.sandbox import (
    FuelExhausted,
    HostCalls,
    ImportNotGranted,
    MemoryLimit,
    Sandbox,
    SandboxLimits,
)
from bitterbot.agent.skills import BUILTIN_DIR
from bitterbot.protocol.errors import SkillError

CALC = (BUILTIN_DIR / "calculator" / "calculator.wasm").read_bytes()

WASI = """
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $arg_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
"""


def wat(body: str, imports: str = WASI, pages: int = 1, data: str = "") -> bytes:
    return (
        f'(module {imports} (memory (export "memory") {pages}) {data}'
        f' (func (export "_start") {body}))'
    ).encode()


@pytest.fixture(scope="module")
def sandbox():
    sb = Sandbox()
    yield sb
    sb.close()


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("2*(3+4)", "2*(3+4) = 14"),
        ("what is 2^10?", "2^10 = 1024"),
        ("convert 5 km to miles", "5 km = 3.1068559612 mi"),
        ("100 f in c", "100 °F = 37.7777777778 °C"),
        ("what is 15% of 80", "15% of 80 = 12"),
    ],
)
def test_calculator_module_answers(sandbox: Sandbox, question: str, answer: str) -> None:
    result = sandbox.run(CALC, input=question)
    assert result.exit_code == 0
    assert result.stdout.decode().strip() == answer
    assert result.fuel_used > 0


def test_calculator_reports_errors_on_stderr_with_exit_code(sandbox: Sandbox) -> None:
    result = sandbox.run(CALC, input="1/0")
    assert result.exit_code == 2
    assert b"division by zero" in result.stderr and result.stdout == b""


def test_no_environment_variables_reach_the_module(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    probe = wat(
        "(drop (call $env_sizes (i32.const 0) (i32.const 4))) (call $exit (i32.load (i32.const 0)))"
    )
    assert sandbox.run(probe).exit_code == 0  # zero variables
    argc = wat(
        "(drop (call $arg_sizes (i32.const 0) (i32.const 4))) (call $exit (i32.load (i32.const 0)))"
    )
    assert sandbox.run(argc, input="x").exit_code == 2  # name and input, nothing else


def test_an_import_that_was_not_granted_fails_before_running(sandbox: Sandbox) -> None:
    imports = (
        WASI + '(import "bitterbot" "http_get" (func $get (param i32 i32 i32 i32) (result i32)))'
    )
    module = wat("(call $exit (i32.const 7))", imports=imports)
    with pytest.raises(ImportNotGranted, match="http_get"):
        sandbox.run(module)
    foreign = wat(
        "(nop)", imports='(import "env" "system" (func $system (param i32) (result i32)))'
    )
    with pytest.raises(ImportNotGranted, match="env.system"):
        sandbox.run(foreign)


def test_granted_host_call_reaches_the_callback_and_returns_its_result(sandbox: Sandbox) -> None:
    seen: list[tuple[str, int]] = []

    def generate(prompt: str, max_tokens: int, *, timeout_s: float) -> bytes:
        seen.append((prompt, max_tokens))
        assert 0 < timeout_s <= 10
        return b"model says hi"

    imports = WASI + (
        '(import "bitterbot" "llm_generate" (func $gen (param i32 i32 i32 i32 i32) (result i32)))'
    )
    body = """
      (local $n i32)
      (local.set $n (call $gen (i32.const 0) (i32.const 5) (i32.const 32) (i32.const 1024) (i32.const 100)))
      (i32.store (i32.const 64) (i32.const 1024))
      (i32.store (i32.const 68) (local.get $n))
      (drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72)))
    """
    module = wat(body, imports=imports, data='(data (i32.const 0) "hello")')
    result = sandbox.run(module, calls=HostCalls(llm_generate=generate))
    assert result.stdout == b"model says hi"
    assert seen == [("hello", 32)]


def test_fuel_runs_out_on_a_busy_loop(sandbox: Sandbox) -> None:
    loop = wat("(loop $l (br $l))")
    with pytest.raises(FuelExhausted):
        sandbox.run(loop, limits=SandboxLimits(fuel=1_000_000))


def test_memory_cap_stops_growth(sandbox: Sandbox) -> None:
    grow = wat(
        "(loop $l (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1)) (then (br $l)))) unreachable"
    )
    with pytest.raises(MemoryLimit, match="4 MiB"):
        sandbox.run(grow, limits=SandboxLimits(memory_bytes=4 << 20))


def test_module_that_needs_more_memory_than_the_cap_does_not_start(sandbox: Sandbox) -> None:
    big = wat("(nop)", pages=200)  # 12.5 MiB initial memory
    with pytest.raises(SkillError):
        sandbox.run(big, limits=SandboxLimits(memory_bytes=4 << 20))


def test_garbage_module_is_a_clear_error(sandbox: Sandbox) -> None:
    with pytest.raises(SkillError, match="does not compile") as err:
        sandbox.run(b"\x00asm\x01\x00\x00\x00garbage")
    assert err.value.code == "bad_module"


def test_cached_module_instantiates_within_target(sandbox: Sandbox) -> None:
    sandbox.run(CALC, input="1+1")  # compile once
    times = [sandbox.run(CALC, input="1+1").instantiate_ms for _ in range(15)]
    assert statistics.median(times) <= 20.0, times


def test_concurrent_runs_do_not_cut_each_others_deadline(sandbox: Sandbox) -> None:
    import threading

    errors: list[BaseException] = []

    def calc_many() -> None:
        try:
            for _ in range(20):
                assert sandbox.run(CALC, input="6*7").stdout.strip() == b"6*7 = 42"
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=calc_many) for _ in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert time.monotonic() - t0 < 30


def test_bad_inputs_and_missing_folders_are_clear_errors(sandbox: Sandbox, tmp_path) -> None:
    from bitterbot.agent.sandbox import FolderGrant

    with pytest.raises(SkillError) as err:
        sandbox.run(CALC, input="1+1\x00rm -rf /")
    assert err.value.code == "bad_input"
    with pytest.raises(SkillError) as err:
        sandbox.run(CALC, input="x" * 70_000)
    assert err.value.code == "input_too_large"
    with pytest.raises(SkillError) as err:
        sandbox.run(CALC, input="1", folders=[FolderGrant(tmp_path / "gone")])
    assert err.value.code == "folder_unavailable"
