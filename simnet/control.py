"""The control channel between the simnet coordinator and its worker processes.

Frames are a 4-byte big-endian length followed by a msgpack map, at most
:data:`MAX_FRAME` bytes; the length is checked before the body is read. The channel is
local (a pipe to a child we started), so plain msgpack is enough: floats are allowed here
because they never leave the machine or get signed.

Requests are ``{"id": int, "op": str, "args": map}``; replies are ``{"id": int, "ok":
true, "result": any}`` or ``{"id": int, "ok": false, "error": {"code", "message"}}``.
Several requests can be in flight at once; replies come back in completion order.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import trio

from bitterbot.simnet.errors import WorkerError

MAX_FRAME = 4 * 1024 * 1024
_LEN = struct.Struct(">I")


def encode_frame(message: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise WorkerError(f"control frame of {len(body)} bytes is over the {MAX_FRAME} limit")
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Reads whole frames from a trio receive stream (pipe or socket)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def read(self) -> dict[str, Any] | None:
        """The next frame, or None at a clean end of stream."""
        if not await self._fill(_LEN.size):
            if self._buf:
                raise WorkerError("control channel closed in the middle of a frame header")
            return None
        (length,) = _LEN.unpack_from(self._buf)
        if length > MAX_FRAME:
            raise WorkerError(f"control frame of {length} bytes announced; limit is {MAX_FRAME}")
        if not await self._fill(_LEN.size + length):
            raise WorkerError("control channel closed in the middle of a frame")
        body = bytes(self._buf[_LEN.size : _LEN.size + length])
        del self._buf[: _LEN.size + length]
        try:
            message = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise WorkerError(f"undecodable control frame: {exc}") from exc
        if not isinstance(message, dict):
            raise WorkerError("control frame is not a map")
        return message
