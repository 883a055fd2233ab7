"""The wasmtime sandbox every WASM skill runs in.

A skill is a wasm32-wasi command module: its input is ``argv[1]``, the granted folders
follow as ``argv[2:]`` (each mounted at its own host path), its answer is what it writes to
stdout. Each run gets a fresh store with:

- **fuel** (instruction budget) and an **epoch deadline** (wall clock). The deadline also
  covers host calls: a host call checks the time left before it starts, is given only
  that much time, and the run traps when it returns late;
- a **memory cap** (``memory.grow`` fails beyond it) and capped **stdout/stderr** (a write
  past the cap fails and the run is reported as a violation);
- **no environment variables**, no stdin, and **no preopened directories** except the
  granted folders, read-only unless write was granted;
- **capabilities as host functions** in the import module ``bitterbot``, linked only when
  granted. A module that imports one it was not granted fails before it runs.

Host ABI (all i32; strings are UTF-8 ``(ptr, len)`` in the module's exported ``memory``;
results are written to ``(out_ptr, out_cap)``; the return value is the number of bytes
written, truncated to ``out_cap``, or a negative code)::

    bitterbot.llm_generate(prompt_ptr, prompt_len, max_tokens, out_ptr, out_cap) -> i32
    bitterbot.doc_search(query_ptr, query_len, k, out_ptr, out_cap) -> i32   (JSON)
    bitterbot.http_get(url_ptr, url_len, out_ptr, out_cap) -> i32

    -1 budget exhausted   -2 the call failed (network error, model error)

A policy violation inside a host call (a host not allow-listed, a private address) ends the
run with :class:`~bitterbot.protocol.errors.SandboxViolation`.

Why a thread: wasmtime's epoch deadline needs an outside clock that keeps ticking while
the wasm code runs; :class:`_EpochTicker` is that clock (one per engine, running only
while a run is in progress). The blocking run itself is called from trio through
``trio.to_thread.run_sync`` by :mod:`bitterbot.agent.skills`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from bitterbot.protocol.errors import SandboxViolation, SkillError

HOST_MODULE = "bitterbot"
WASI_MODULE = "wasi_snapshot_preview1"
TICK_S = 0.002
MAX_CACHED_MODULES = 64
ERR_BUDGET = -1
ERR_FAILED = -2


class DeadlineExceeded(SandboxViolation):
    code = "deadline_exceeded"


class FuelExhausted(SandboxViolation):
    code = "fuel_exhausted"


class MemoryLimit(SandboxViolation):
    code = "memory_limit"


class OutputLimit(SandboxViolation):
    code = "output_limit"


class ImportNotGranted(SandboxViolation):
    code = "import_not_granted"


@dataclass(frozen=True)
class SandboxLimits:
    fuel: int = 10_000_000_000
    deadline_ms: int = 10_000
    memory_bytes: int = 64 * 1024 * 1024
    stdout_bytes: int = 1024 * 1024
    stderr_bytes: int = 64 * 1024
    input_bytes: int = 64 * 1024
    host_result_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class FolderGrant:
    path: Path
    write: bool = False


@dataclass
class RunResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    fuel_used: int
    elapsed_ms: float
    instantiate_ms: float


HostFunc = Callable[..., int]


@dataclass
class HostCalls:
    """Python implementations of granted capabilities, called with decoded arguments.

    Each receives ``timeout_s`` (the run's time left) as a keyword argument and returns
    bytes (the result) or raises: :class:`SandboxViolation` ends the run, ``BudgetExhausted``
    returns -1 to the guest, other :class:`SkillError` return -2.
    """

    llm_generate: Callable[..., bytes] | None = None  # (prompt: str, max_tokens: int)
    doc_search: Callable[..., bytes] | None = None  # (query: str, k: int)
    http_get: Callable[..., bytes] | None = None  # (url: str)

    def granted(self) -> frozenset[str]:
        return frozenset(
            n for n in ("llm_generate", "doc_search", "http_get") if getattr(self, n) is not None
        )


class BudgetExhausted(SkillError):
    code = "budget_exhausted"


@dataclass
class _RunState:
    deadline: float
    calls: HostCalls
    limits: SandboxLimits
    violation: BaseException | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    output_over: str | None = None

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()


_current = threading.local()


class _EpochTicker:
    """Increments the engine's epoch every ``TICK_S`` while at least one run is active."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._active = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> None:
        with self._lock:
            self._active += 1
            if self._thread is None or not self._thread.is_alive():
                self._wake.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="bitterbot-epoch", daemon=True
                )
                self._thread.start()

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._wake.set()
                self._thread = None

    def _loop(self) -> None:
        # Count ticks from the wall clock, not from wake-ups, so a late wake-up catches up
        # and a deadline of N ticks means N * TICK_S seconds however the OS schedules us.
        wake, start, done = self._wake, time.monotonic(), 0
        while not wake.wait(TICK_S):
            target = int((time.monotonic() - start) / TICK_S)
            while done < target:
                self._engine.increment_epoch()
                done += 1


def _make_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    return wasmtime.Engine(config)


class Sandbox:
    """Compiles and runs skill modules. One per process; thread-safe for concurrent runs."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.engine = _make_engine()
        self._ticker = _EpochTicker(self.engine)
        self._lock = threading.Lock()
        self._modules: dict[str, wasmtime.Module] = {}
        self._pres: dict[tuple[str, frozenset[str]], wasmtime.InstancePre] = {}

    def close(self) -> None:
        """Free compiled modules and let wasmtime's I/O threads drop their callbacks.

        wasmtime releases a store's stdout/stderr callbacks from its own I/O threads; if
        the interpreter is already shutting down then, that thread prints a Rust panic (the
        exit code stays 0). Closing first, as the CLI does, keeps the exit quiet.
        """
        import gc

        with self._lock:
            self._modules.clear()
            self._pres.clear()
        gc.collect()
        time.sleep(0.05)

    # --- compile ------------------------------------------------------------------
    def compile(self, wasm: bytes) -> tuple[str, wasmtime.Module]:
        """Compile (or fetch from the cache) a module from wasm or WAT bytes."""
        key = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            module = self._modules.get(key)
        if module is None:
            try:
                module = wasmtime.Module(self.engine, wasm)
            except wasmtime.WasmtimeError as exc:
                raise SkillError(
                    f"the skill's module does not compile: {_first_line(exc)}",
                    hint="rebuild it for wasm32-wasi",
                    code="bad_module",
                ) from exc
            with self._lock:
                if len(self._modules) >= MAX_CACHED_MODULES:  # drop the oldest compiled module
                    oldest = next(iter(self._modules))
                    del self._modules[oldest]
                    self._pres = {k: v for k, v in self._pres.items() if k[0] != oldest}
                self._modules[key] = module
        return key, module

    def _instance_pre(
        self, key: str, module: wasmtime.Module, granted: frozenset[str]
    ) -> wasmtime.InstancePre:
        for imp in module.imports:
            if imp.module == HOST_MODULE:
                if imp.name not in granted:
                    raise ImportNotGranted(
                        f"the skill imports {HOST_MODULE}.{imp.name}, which it was not granted",
                        hint="the skill must declare the permission and you must accept it",
                    )
            elif imp.module != WASI_MODULE:
                raise ImportNotGranted(
                    f"the skill imports {imp.module}.{imp.name}, which no skill may use"
                )
        cache_key = (key, granted)
        with self._lock:
            pre = self._pres.get(cache_key)
        if pre is not None:
            return pre
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        for name in sorted(granted):
            params = 5 if name in ("llm_generate", "doc_search") else 4
            ty = wasmtime.FuncType([wasmtime.ValType.i32()] * params, [wasmtime.ValType.i32()])
            linker.define_func(HOST_MODULE, name, ty, _host_trampoline(name), access_caller=True)
        try:
            pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise ImportNotGranted(
                f"the skill's imports cannot be satisfied: {_first_line(exc)}"
            ) from exc
        with self._lock:
            self._pres[cache_key] = pre
        return pre

    # --- run ----------------------------------------------------------------------
    def run(
        self,
        wasm: bytes,
        *,
        name: str = "skill",
        input: str = "",
        folders: list[FolderGrant] | tuple[FolderGrant, ...] = (),
        calls: HostCalls | None = None,
        limits: SandboxLimits | None = None,
    ) -> RunResult:
        """Run a command module once. Blocking: call it from a worker thread."""
        limits = limits or self.limits
        calls = calls or HostCalls()
        if len(input.encode("utf-8")) > limits.input_bytes:
            raise SkillError(f"input is over {limits.input_bytes} bytes", code="input_too_large")
        if "\x00" in input:
            raise SkillError("input contains a NUL character", code="bad_input")
        key, module = self.compile(wasm)
        t0 = time.monotonic()
        pre = self._instance_pre(key, module, calls.granted())
        state = _RunState(deadline=t0 + limits.deadline_ms / 1000, calls=calls, limits=limits)
        store = wasmtime.Store(self.engine)
        wasi = wasmtime.WasiConfig()
        args = [name, input]
        for grant in folders:
            host = str(Path(grant.path).resolve())
            try:
                wasi.preopen_dir(host, host, fs_mutable=grant.write)
            except wasmtime.WasmtimeError as exc:
                raise SkillError(
                    f"cannot open the granted folder {host}",
                    hint="check that it exists and is readable, or grant another folder",
                    code="folder_unavailable",
                ) from exc
            args.append(host)
        wasi.argv = args
        wasi.env = []
        wasi.stdout_custom = _capped(state, state.stdout, limits.stdout_bytes, "stdout")
        wasi.stderr_custom = _capped(state, state.stderr, limits.stderr_bytes, "stderr")
        store.set_wasi(wasi)
        store.set_limits(memory_size=limits.memory_bytes, instances=4, tables=4, memories=2)
        store.set_fuel(limits.fuel)
        exit_code = 0
        instance: wasmtime.Instance | None = None
        t_inst = t0
        _current.state = state
        try:
            with self._ticker:
                store.set_epoch_deadline(max(1, int(limits.deadline_ms / 1000 / TICK_S) + 1))
                try:
                    instance = pre.instantiate(store)
                    t_inst = time.monotonic()
                    start = instance.exports(store).get("_start")
                    if not isinstance(start, wasmtime.Func):
                        raise SkillError(
                            "the module has no _start function",
                            hint="build a wasm32-wasi command (fn main)",
                            code="bad_module",
                        )
                    start(store)
                except wasmtime.ExitTrap as exc:
                    exit_code = exc.code
                except (wasmtime.WasmtimeError, wasmtime.Trap, SkillError) as exc:
                    raise self._explain(exc, state, store, instance) from exc
        finally:
            _current.state = None
        elapsed = (time.monotonic() - t0) * 1000
        if state.violation is not None:
            raise state.violation
        if state.output_over is not None:
            raise OutputLimit(f"the skill wrote more than the {state.output_over} limit")
        fuel_used = limits.fuel - store.get_fuel()
        result = RunResult(
            bytes(state.stdout),
            bytes(state.stderr),
            exit_code,
            fuel_used,
            elapsed,
            (t_inst - t0) * 1000,
        )
        del store
        return result

    def _explain(
        self, exc: BaseException, state: _RunState, store: wasmtime.Store, instance: Any
    ) -> BaseException:
        """Turn a trap into the error a user can act on."""
        if state.violation is not None:
            return state.violation
        if isinstance(exc, SkillError):
            return exc
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        if code is None and isinstance(exc, wasmtime.WasmtimeError):
            code = _trap_code_of(exc)
        ms = state.limits.deadline_ms
        if code == wasmtime.TrapCode.INTERRUPT or state.remaining_s() < 0:
            return DeadlineExceeded(
                f"the skill ran past its deadline of {ms} ms and was stopped",
                hint="it may loop forever; report it to its publisher",
            )
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return FuelExhausted(f"the skill used up its fuel ({state.limits.fuel} instructions)")
        if state.output_over is not None:
            return OutputLimit(f"the skill wrote more than the {state.output_over} limit")
        if instance is not None and _memory_near_cap(instance, store, state.limits.memory_bytes):
            return MemoryLimit(
                f"the skill hit its memory limit of {state.limits.memory_bytes // (1 << 20)} MiB"
            )
        detail = _first_line(exc)
        if "memory" in detail and ("limit" in detail or "grow" in detail or "alloc" in detail):
            return MemoryLimit(f"the skill hit its memory limit: {detail}")
        return SkillError(f"the skill crashed: {detail}", code="skill_crashed")


def _trap_code_of(exc: wasmtime.WasmtimeError) -> wasmtime.TrapCode | None:
    text = str(exc)
    if "interrupt" in text:
        return wasmtime.TrapCode.INTERRUPT
    if "fuel" in text:
        return wasmtime.TrapCode.OUT_OF_FUEL
    return None


def _memory_near_cap(instance: Any, store: wasmtime.Store, cap: int) -> bool:
    """A crash with at least half the cap in use: an allocation was refused.

    wasmtime's Python API has no callback for a refused ``memory.grow``; allocators abort
    (``unreachable``) when it returns -1, and their last request is at most the size they
    already hold (doubling), so half the cap is the honest threshold.
    """
    mem = instance.exports(store).get("memory")
    if not isinstance(mem, wasmtime.Memory):
        return False
    return bool(mem.data_len(store) * 2 >= cap)


def _first_line(exc: BaseException) -> str:
    """The cause line of a wasmtime error (``wasm trap: ...``), else its first line."""
    text = str(exc).strip()
    if "Caused by:" in text:
        cause = [ln.strip() for ln in text.split("Caused by:", 1)[1].splitlines() if ln.strip()]
        if cause:
            return cause[-1]
    for line in text.splitlines():
        if "wasm trap:" in line or "error:" in line.lower():
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _capped(state: _RunState, buf: bytearray, cap: int, what: str) -> Callable[[bytes], int | None]:
    def write(data: bytes) -> int | None:
        if len(buf) + len(data) > cap:
            buf.extend(data[: max(0, cap - len(buf))])
            state.output_over = f"{what} {cap} bytes"
            return -27  # -EFBIG: the guest's write fails
        buf.extend(data)
        return None

    return write


# --- host functions --------------------------------------------------------------------


def _read_str(caller: wasmtime.Caller, ptr: int, length: int, limit: int) -> str:
    mem = caller.get("memory")
    if not isinstance(mem, wasmtime.Memory):
        raise SandboxViolation("the skill exports no memory for host calls")
    size = mem.data_len(caller)
    if ptr < 0 or length < 0 or length > limit or ptr + length > size:
        raise SandboxViolation("a host call passed a bad memory range")
    try:
        return bytes(mem.read(caller, ptr, ptr + length)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SandboxViolation("a host call passed text that is not UTF-8") from exc


def _write_out(caller: wasmtime.Caller, out_ptr: int, out_cap: int, data: bytes) -> int:
    mem = caller.get("memory")
    assert isinstance(mem, wasmtime.Memory)
    size = mem.data_len(caller)
    if out_ptr < 0 or out_cap < 0 or out_ptr + out_cap > size:
        raise SandboxViolation("a host call passed a bad output range")
    chunk = data[:out_cap]
    if chunk:
        mem.write(caller, chunk, out_ptr)
    return len(chunk)


def _host_trampoline(name: str) -> HostFunc:
    def call(caller: wasmtime.Caller, *args: int) -> int:
        state: _RunState | None = getattr(_current, "state", None)
        if state is None:  # pragma: no cover - only reachable through run()
            raise SandboxViolation("host call outside a run")
        try:
            left = state.remaining_s()
            if left <= 0:
                raise DeadlineExceeded(
                    f"the skill ran past its deadline of {state.limits.deadline_ms} ms "
                    "(time spent in host calls counts)"
                )
            limit = state.limits.input_bytes
            func = getattr(state.calls, name)
            if name == "http_get":
                url = _read_str(caller, args[0], args[1], 8192)
                out_ptr, out_cap = args[2], args[3]
                call_args: tuple[Any, ...] = (url,)
            else:
                text = _read_str(caller, args[0], args[1], limit)
                call_args = (text, args[2])
                out_ptr, out_cap = args[3], args[4]
            try:
                data = func(*call_args, timeout_s=left)
            except BudgetExhausted:
                return ERR_BUDGET
            except SandboxViolation:
                raise
            except SkillError as exc:
                state.stderr.extend(f"[host] {name} failed: {exc}\n".encode()[:512])
                return ERR_FAILED
            if state.remaining_s() <= 0:
                raise DeadlineExceeded(
                    f"the skill ran past its deadline of {state.limits.deadline_ms} ms "
                    f"(during the host call {name})"
                )
            return _write_out(caller, out_ptr, out_cap, data[: state.limits.host_result_bytes])
        except SandboxViolation as exc:
            state.violation = exc
            raise

    return call
