"""Streams between peers, and how libp2p's errors become ours.

:class:`P2PStream` wraps a py-libp2p stream: ``read``/``write`` raise
:class:`~bitterbot.node.p2p.framing.StreamClosed` instead of libp2p's own error zoo, and
``close``/``reset`` never raise (the peer may be gone already).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from bitterbot.node.p2p.errors import ignore_libp2p_errors, libp2p_errors
from bitterbot.node.p2p.framing import StreamClosed
from bitterbot.protocol.errors import BitterbotError, NotFoundError, first_error

logger = logging.getLogger(__name__)


class P2PStream:
    """A libp2p stream with our error types: read/write/close/reset and the remote peer."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.peer_id: str = raw.muxed_conn.peer_id.to_base58()
        self.protocol: str = str(raw.get_protocol() or "")

    async def read(self, n: int | None = None) -> bytes:
        with libp2p_errors("the stream failed", error=StreamClosed):
            return bytes(await self.raw.read(n))

    async def write(self, data: bytes) -> None:
        with libp2p_errors("the stream failed", error=StreamClosed):
            await self.raw.write(data)

    async def close(self) -> None:
        await quietly(self.raw.close)

    async def close_write(self) -> None:
        closer = getattr(self.raw, "close_write", None)
        if closer is not None:
            await quietly(closer)

    async def reset(self) -> None:
        await quietly(self.raw.reset)

    async def __aenter__(self) -> P2PStream:
        return self

    async def __aexit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.reset()


async def quietly(fn: Callable[[], Awaitable[Any]]) -> None:
    """Close/reset a stream whose peer may be gone already; failures there are expected."""
    with ignore_libp2p_errors("stream close failed"), trio.move_on_after(2):
        await fn()


def to_peer_id(peer_id: str) -> Any:
    from libp2p.peer.id import ID

    try:
        return ID.from_base58(peer_id)
    except Exception as exc:  # base58 ValueError and friends
        raise NotFoundError(f"not a peer ID: {peer_id!r}") from exc


def find_bitterbot_error(exc: BaseException) -> BitterbotError | None:
    found = first_error(exc, BitterbotError)
    return found if isinstance(found, BitterbotError) else None
