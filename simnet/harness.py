"""The simnet coordinator: worker processes, node placement, joins, faults.

A :class:`SimNetwork` owns W worker processes (:mod:`bitterbot.simnet.worker`), each
hosting about ``nodes_per_worker`` nodes in one trio loop (one Python process saturates a
core at about 30 libp2p nodes). Node ``i`` lives in worker ``i % W``, listens on its own
loopback address (:func:`node_ip`, so IP-based connection gating can cut it off), and has
its own home under the run folder, kept across kills so a restarted node comes back with
the same identity and state. Node identities derive from the scenario seed, so peer IDs
and every random choice repeat exactly for the same seed.

Seeds (nodes ``0 .. seeds-1``) start first; the others join in small batches, since a seed
resets bursts of concurrent DHT streams (see /work/shared/notes/py-libp2p.md).
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bitterbot.simnet.control import FrameReader, encode_frame
from bitterbot.simnet.errors import WorkerError

SHUTDOWN_TIMEOUT_S = 10.0


def node_ip(index: int) -> str:
    """A distinct loopback address per node (Linux routes all of 127.0.0.0/8 to lo)."""
    return f"127.77.{index // 200}.{index % 200 + 10}"


def node_seed(run_seed: int, index: int) -> bytes:
    """The 32-byte identity seed of node ``index`` in a run with ``run_seed``."""
    return hashlib.sha256(f"bitterbot-simnet/{run_seed}/{index}".encode()).digest()


class WorkerProcess:
    """One worker child: send requests, match replies by id, surface crashes."""

    def __init__(self, number: int, log_path: Path) -> None:
        self.number = number
        self.log_path = log_path
        self.proc: trio.Process | None = None
        self._pending: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._next_id = 0
        self._send_lock = trio.Lock()
        self._dead: str | None = None

    async def start(self, nursery: trio.Nursery, env: dict[str, str]) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "bitterbot.simnet.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        finally:
            log.close()
        nursery.start_soon(self._read_replies)

    async def _read_replies(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        reader = FrameReader(self.proc.stdout)
        try:
            while True:
                message = await reader.read()
                if message is None:
                    break
                channel = self._pending.pop(int(message.get("id", -1)), None)
                if channel is not None:
                    channel.send_nowait(message)
        except (WorkerError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._dead = str(exc)
        self._dead = self._dead or "worker process exited"
        for request_id, channel in list(self._pending.items()):
            self._pending.pop(request_id, None)
            channel.send_nowait({"ok": False, "error": self._crash_error()})

    def _crash_error(self) -> dict[str, str]:
        tail = ""
        try:
            tail = self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            tail = "(no log)"
        return {
            "code": "simnet_worker_error",
            "message": f"worker {self.number} died ({self._dead}); log tail:\n{tail}",
        }

    async def call(self, op: str, timeout_s: float = 120.0, **args: Any) -> Any:
        if self._dead is not None or self.proc is None or self.proc.stdin is None:
            raise WorkerError(self._crash_error()["message"])
        self._next_id += 1
        request_id = self._next_id
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._pending[request_id] = send
        frame = encode_frame({"id": request_id, "op": op, "args": args})
        try:
            async with self._send_lock:
                await self.proc.stdin.send_all(frame)
            with trio.fail_after(timeout_s):
                reply = await receive.receive()
        except trio.TooSlowError:
            raise WorkerError(
                f"worker {self.number} did not answer {op!r} within {timeout_s:.0f} s",
                hint=f"see the worker log {self.log_path}",
            ) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WorkerError(self._crash_error()["message"]) from exc
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise WorkerError(
                f"{op} failed in worker {self.number}: {error.get('message', 'unknown error')}",
                code=str(error.get("code") or WorkerError.code),
            )
        return reply.get("result")

    async def shutdown(self) -> None:
        if self.proc is None:
            return
        with trio.move_on_after(SHUTDOWN_TIMEOUT_S):
            try:
                await self.call("shutdown", timeout_s=SHUTDOWN_TIMEOUT_S)
            except WorkerError:
                pass  # already dead: reaped below
            await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class NodeRecord:
    index: int
    worker: int
    home: Path
    ip: str
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    alive: bool = False
    starts: int = 0
    port: int = 0


class SimNetwork:
    """N real nodes in W worker processes: ``async with SimNetwork(...).running() as net``."""

    def __init__(
        self,
        run_dir: Path,
        nodes: int,
        *,
        seed: int = 1,
        seeds: int = 3,
        nodes_per_worker: int = 12,
        join_batch: int = 5,
        node_options: dict[str, Any] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("a network needs at least one node")
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.n_seeds = max(1, min(seeds, nodes))
        self.join_batch = max(1, join_batch)
        self.node_options = dict(node_options or {})
        #: per-node additions to node_options (adversaries: e.g. {"market_altering": True})
        self.node_options_for: dict[int, dict[str, Any]] = {}
        n_workers = max(1, math.ceil(nodes / max(1, nodes_per_worker)))
        self.workers = [
            WorkerProcess(w, self.run_dir / f"worker-{w}.log") for w in range(n_workers)
        ]
        self.nodes = [
            NodeRecord(i, i % n_workers, self.run_dir / "homes" / f"node-{i:03d}", node_ip(i))
            for i in range(nodes)
        ]
        self.t0 = 0.0  # trio clock at start; trio's clock is not time.monotonic()
        self.log: list[dict[str, Any]] = []  # fault and lifecycle events, for the report

    @classmethod
    def from_section(
        cls,
        net: dict[str, Any],
        run_dir: Path,
        seed: int,
        node_options: dict[str, Any] | None = None,
    ) -> SimNetwork:
        """A network from a scenario's ``[network]`` section."""
        return cls(
            run_dir,
            int(net["nodes"]),
            seed=seed,
            seeds=int(net["seeds"]),
            nodes_per_worker=int(net["nodes_per_worker"]),
            join_batch=int(net["join_batch"]),
            node_options=node_options,
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SimNetwork]:
        """Start the worker processes; on exit shut them down (kill after a timeout)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        async with trio.open_nursery() as nursery:
            try:
                for worker in self.workers:
                    await worker.start(nursery, env)
                for worker in self.workers:
                    await worker.call("hello", timeout_s=60)
                self.t0 = trio.current_time()
                yield self
            finally:
                with trio.CancelScope(shield=True):
                    async with trio.open_nursery() as closing:
                        for worker in self.workers:
                            closing.start_soon(worker.shutdown)
                nursery.cancel_scope.cancel()

    # --- time and events ----------------------------------------------------
    def now(self) -> float:
        return trio.current_time() - self.t0

    def note(self, event: str, **fields: Any) -> None:
        self.log.append({"at_s": round(self.now(), 3), "event": event, **fields})

    # --- nodes --------------------------------------------------------------
    @property
    def seed_indices(self) -> list[int]:
        return list(range(self.n_seeds))

    def alive(self) -> list[int]:
        return [n.index for n in self.nodes if n.alive]

    def seed_addrs(self, exclude: int = -1) -> list[str]:
        """First listen address of each live seed, except node ``exclude``."""
        return [
            self.nodes[i].addrs[0]
            for i in self.seed_indices
            if i != exclude and self.nodes[i].alive and self.nodes[i].addrs
        ]

    def worker_of(self, index: int) -> WorkerProcess:
        return self.workers[self.nodes[index].worker]

    async def start_node(self, index: int) -> NodeRecord:
        record = self.nodes[index]
        seeds = self.seed_addrs(exclude=index)
        info = await self.worker_of(index).call(
            "start",
            index=index,
            home=str(record.home),
            ip=record.ip,
            identity_seed=node_seed(self.seed, index),
            seeds=seeds,
            port=record.port,
            options={**self.node_options, **self.node_options_for.get(index, {})},
        )
        record.peer_id = str(info["peer_id"])
        record.addrs = [str(a) for a in info["addrs"]]
        record.port = int(info["port"])  # a restart listens on the same port, like a real node
        record.alive = True
        record.starts += 1
        self.note("start", node=index, restart=record.starts > 1)
        return record

    async def start_all(self, indices: list[int] | None = None) -> float:
        """Start seeds, then the others in batches (all, or ``indices``); returns seconds."""
        started = time.monotonic()
        wanted = [n.index for n in self.nodes] if indices is None else list(indices)
        for index in self.seed_indices:
            if index in wanted and not self.nodes[index].alive:
                await self.start_node(index)
        others = [i for i in wanted if i >= self.n_seeds and not self.nodes[i].alive]
        for at in range(0, len(others), self.join_batch):
            async with trio.open_nursery() as nursery:
                for index in others[at : at + self.join_batch]:
                    nursery.start_soon(self.start_node, index)
        return time.monotonic() - started

    async def kill(self, index: int) -> None:
        record = self.nodes[index]
        record.alive = False  # before the call: work in flight on it now counts as aborted
        self.note("kill", node=index)
        await self.worker_of(index).call("kill", index=index)

    async def call(self, index: int, action: str, timeout_s: float = 60.0, **kwargs: Any) -> Any:
        """Run ``SimNode.action_<action>(**kwargs)`` on node ``index``."""
        return await self.worker_of(index).call(
            "call", timeout_s=timeout_s, index=index, action=action, kwargs=kwargs
        )

    async def status(self, index: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.worker_of(index).call("status", index=index)
        return result

    async def set_shim(self, delay_ms: float, loss: float) -> None:
        for worker in self.workers:
            await worker.call("shim", delay_ms=delay_ms, loss=loss, seed=self.seed + worker.number)
        self.note("shim", delay_ms=delay_ms, loss=loss)

    async def resources(self) -> list[dict[str, Any]]:
        return [await worker.call("resources") for worker in self.workers]
