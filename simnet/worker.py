"""A simnet worker: one process hosting several real nodes in one trio loop.

Started by the coordinator as ``python -m bitterbot.simnet.worker``; it reads control
frames (:mod:`bitterbot.simnet.control`) on stdin and answers on the stdout it was given.
Anything else that writes to stdout (libraries printing) is pointed at stderr first, which
the coordinator sends to a log file, so library noise never corrupts the channel.

Each request runs in its own task, so the coordinator can keep many lookups in flight.
Each node runs inside its own cancel scope: ``kill`` cancels it without a goodbye (as a
crash would), its home stays on disk, and ``start`` with the same home brings it back
with the same identity and stored state.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bitterbot.protocol.errors import BitterbotError
from bitterbot.simnet.control import FrameReader, encode_frame
from bitterbot.simnet.crash import ConnectionTracker, current_node
from bitterbot.simnet.errors import WorkerError
from bitterbot.simnet.faults import LatencyShim

Handler = Callable[["Worker", dict[str, Any]], Awaitable[Any]]
OPS: dict[str, Handler] = {}
logger = logging.getLogger("bitterbot.simnet.worker")


def op(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        OPS[name] = fn
        return fn

    return register


class Worker:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.nodes: dict[int, Any] = {}  # index -> SimNode
        self.scopes: dict[int, trio.CancelScope] = {}
        self.done: dict[int, trio.Event] = {}
        self.shim = LatencyShim()
        self.tracker = ConnectionTracker()
        self.tracker.install()

    def node(self, index: int) -> Any:
        node = self.nodes.get(index)
        if node is None or index not in self.scopes:
            raise WorkerError(f"node {index} is not running in worker {os.getpid()}")
        return node

    async def start_node(self, args: dict[str, Any]) -> dict[str, Any]:
        from bitterbot.simnet.simnode import SimNode

        index = int(args["index"])
        if index in self.scopes:
            raise WorkerError(f"node {index} is already running")
        node = SimNode.from_args(args)
        scope = trio.CancelScope()
        done = trio.Event()
        started = False

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal started

            class Status:
                def started(self, value: Any = None) -> None:
                    nonlocal started
                    started = True
                    task_status.started(value)

            current_node.set(index)  # every task the node spawns inherits its owner
            try:
                with scope:
                    await node.run(task_status=Status())
            except Exception:
                if not started:
                    raise
                # A node dying is a fault of that node, not of the worker: log, keep going.
                logger.exception("node %d stopped with an error", index)
            finally:
                if self.scopes.get(index) is scope:
                    del self.scopes[index]
                done.set()

        self.nodes[index] = node
        self.scopes[index] = scope
        self.done[index] = done
        try:
            info: dict[str, Any] = await self.nursery.start(run)
        except BaseException:
            if self.scopes.get(index) is scope:
                del self.scopes[index]
            raise
        return info

    async def kill_node(self, index: int, timeout_s: float = 10.0) -> bool:
        """Cancel the node's task (no goodbye to peers) and wait until it has unwound."""
        scope = self.scopes.pop(index, None)
        if scope is None:
            return False
        self.tracker.sever(index)  # peers see the connections end, as after kill -9
        scope.cancel()
        with trio.move_on_after(timeout_s):
            await self.done[index].wait()
        return True


@op("hello")
async def _hello(worker: Worker, args: dict[str, Any]) -> Any:
    return {"pid": os.getpid()}


@op("start")
async def _start(worker: Worker, args: dict[str, Any]) -> Any:
    return await worker.start_node(args)


@op("kill")
async def _kill(worker: Worker, args: dict[str, Any]) -> Any:
    killed = await worker.kill_node(int(args["index"]))
    return {"killed": killed}


@op("status")
async def _status(worker: Worker, args: dict[str, Any]) -> Any:
    return worker.node(int(args["index"])).status()


@op("call")
async def _call(worker: Worker, args: dict[str, Any]) -> Any:
    """Run a named action of one node (``SimNode.action_<name>``)."""
    node = worker.node(int(args["index"]))
    name = str(args["action"])
    action = getattr(node, f"action_{name}", None)
    if action is None:
        raise WorkerError(f"simnet nodes have no action {name!r}")
    return await action(**dict(args.get("kwargs") or {}))


@op("shim")
async def _shim(worker: Worker, args: dict[str, Any]) -> Any:
    worker.shim.configure(float(args["delay_ms"]), float(args["loss"]), int(args["seed"]))
    return {"delay_ms": worker.shim.delay_ms, "loss": worker.shim.loss}


@op("resources")
async def _resources(worker: Worker, args: dict[str, Any]) -> Any:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "pid": os.getpid(),
        "nodes_running": len(worker.scopes),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "shim_writes_delayed": worker.shim.writes_delayed,
        "shim_writes_lost": worker.shim.writes_lost,
    }


async def _handle(
    worker: Worker, message: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    request_id = message.get("id")
    handler = OPS.get(str(message.get("op")))
    try:
        if handler is None:
            raise WorkerError(f"unknown simnet operation {message.get('op')!r}")
        result = await handler(worker, dict(message.get("args") or {}))
        reply: dict[str, Any] = {"id": request_id, "ok": True, "result": result}
    except BitterbotError as exc:
        reply = {"id": request_id, "ok": False, "error": exc.to_dict()}
    except Exception as exc:
        # One failed operation must not take the worker's other nodes down with it: log the
        # trace to the worker log and answer with the error.
        logger.exception("operation %s failed", message.get("op"))
        reply = {
            "id": request_id,
            "ok": False,
            "error": {"code": "simnet_worker_error", "message": f"{type(exc).__name__}: {exc}"},
        }
    await send(reply)


async def serve(receive: trio.abc.ReceiveStream, send_stream: trio.abc.SendStream) -> None:
    reader = FrameReader(receive)
    lock = trio.Lock()

    async def send(message: dict[str, Any]) -> None:
        try:
            frame = encode_frame(message)
        except (TypeError, ValueError, OverflowError, WorkerError) as exc:
            error = {"code": "simnet_worker_error", "message": f"reply not encodable: {exc}"}
            frame = encode_frame({"id": message.get("id"), "ok": False, "error": error})
        async with lock:
            await send_stream.send_all(frame)

    async with trio.open_nursery() as nursery:
        worker = Worker(nursery)
        while True:
            message = await reader.read()
            if message is None or message.get("op") == "shutdown":
                async with trio.open_nursery() as stopping:
                    for index in list(worker.scopes):
                        stopping.start_soon(worker.kill_node, index)
                if message is not None:
                    await send({"id": message.get("id"), "ok": True, "result": {}})
                nursery.cancel_scope.cancel()
                break
            nursery.start_soon(_handle, worker, message, send)
    worker.shim.uninstall()
    worker.tracker.uninstall()


def main() -> None:
    # Keep the real stdout for frames; everything printed by libraries goes to stderr.
    control_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    level = os.environ.get("BITTERBOT_SIMNET_LOG", "WARNING").upper()
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    receive = trio.lowlevel.FdStream(os.dup(0))
    send = trio.lowlevel.FdStream(control_fd)
    trio.run(serve, receive, send)


if __name__ == "__main__":
    main()
