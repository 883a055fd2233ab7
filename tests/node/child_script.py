"""A Python child process running a test's own script, and its stdout read line by line.

Tests that kill a node mid-operation (SIGKILL) or need a second process with its own home
import these from the sibling module, as they import the mint fixture:

    from child_script import read_line, spawn_script
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import trio

T = TypeVar("T")


async def spawn_script(tmp_path: Path, source: str, *args: str) -> trio.Process:
    """Start ``python <tmp_path>/child.py ARGS`` with ``source`` as the script."""
    script = tmp_path / "child.py"
    script.write_text(source)
    return await trio.lowlevel.open_process(
        [sys.executable, str(script), *args], stdout=-1, stderr=-1
    )


async def read_line(proc: trio.Process, timeout: float = 60) -> str:
    """The child's next line of stdout; its stderr in the failure if it ended instead."""
    buf = b""
    assert proc.stdout is not None
    with trio.fail_after(timeout):
        while not buf.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                err = b"" if proc.stderr is None else await proc.stderr.receive_some(65536)
                raise AssertionError(f"child ended early: {err.decode(errors='replace')}")
            buf += chunk
    return buf.decode().strip()


async def sigkill_after(proc: trio.Process, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` against the child, then SIGKILL it at once: right after the last thing
    it acknowledged. The child is reaped whatever happens."""
    try:
        result = await work()
        proc.send_signal(signal.SIGKILL)
        with trio.fail_after(10):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return result
