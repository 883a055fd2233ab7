"""Crash-like kills of one node among several in a worker process.

Cancelling a node's task is not enough to look like a crash to its peers: py-libp2p can
leave that node's TCP connections open, and a peer then waits on a connection nobody
reads (measured here: peers still listed the node as connected seconds after the cancel,
while a SIGKILLed worker's peers noticed at once). A killed process, in contrast, has its
sockets closed by the kernel at once. :class:`ConnectionTracker` records every libp2p TCP
stream with the node that opened or accepted it (a context variable set in the node's task
and inherited by every task it spawns) and :meth:`~ConnectionTracker.sever` shuts them all
down, so peers see the connections end as they would after ``kill -9``.
"""

from __future__ import annotations

import contextvars
import socket
import weakref
from typing import Any

#: index of the simnet node whose task is running (inherited by the tasks it spawns)
current_node: contextvars.ContextVar[int] = contextvars.ContextVar("simnet_node", default=-1)


class ConnectionTracker:
    def __init__(self) -> None:
        self._streams: dict[int, weakref.WeakSet[Any]] = {}
        self._original: Any = None

    def install(self) -> None:
        if self._original is not None:
            return
        from libp2p.io.trio import TrioTCPStream

        original = TrioTCPStream.__init__
        tracker = self

        def tracked_init(stream: Any, *args: Any, **kwargs: Any) -> None:
            original(stream, *args, **kwargs)
            owner = current_node.get()
            if owner >= 0:
                tracker._streams.setdefault(owner, weakref.WeakSet()).add(stream)

        TrioTCPStream.__init__ = tracked_init  # type: ignore[method-assign,assignment]
        self._original = original

    def uninstall(self) -> None:
        if self._original is not None:
            from libp2p.io.trio import TrioTCPStream

            TrioTCPStream.__init__ = self._original  # type: ignore[method-assign]
            self._original = None

    def open_count(self, node: int) -> int:
        return sum(1 for s in self._streams.get(node, ()) if s.stream.socket.fileno() >= 0)

    def sever(self, node: int) -> int:
        """Shut down every TCP connection of ``node`` (peers read end-of-stream at once)."""
        severed = 0
        for stream in list(self._streams.pop(node, ())):
            sock = stream.stream.socket
            if sock.fileno() < 0:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
                severed += 1
            except OSError:
                continue  # already disconnected by the peer
        return severed
