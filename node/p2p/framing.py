"""Length-prefixed frames over a byte stream (a libp2p stream or anything with read/write).

A frame is an unsigned LEB128 varint length (at most 5 bytes, so under 4 GiB) followed by
that many bytes. The reader checks the announced length against ``max_size`` *before*
reading the body, so a peer can never make us buffer more than we agreed to. Every read
and write takes a timeout; a stalled peer costs at most that long.

Errors (all :class:`~bitterbot.protocol.errors.BitterbotError`)::

    FrameTooLarge (TooLargeError)   announced or given length over max_size
    FrameTimeout  (NetworkError)    the peer did not deliver (or accept) a frame in time
    StreamClosed  (NetworkError)    the stream ended or was reset mid-frame
    DecodeError                     a malformed length prefix
"""

from __future__ import annotations

from typing import Any, Protocol

import trio

from bitterbot.node.p2p.errors import libp2p_errors
from bitterbot.protocol import codec
from bitterbot.protocol.codec import encode_uvarint as encode_varint
from bitterbot.protocol.errors import DecodeError, NetworkError, TooLargeError

DEFAULT_MAX_FRAME = 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0
MAX_VARINT_BYTES = 5


RETRY_HINT = "retry, or try another peer"


class ByteStream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


class FrameTooLarge(TooLargeError):
    code = "frame_too_large"


class FrameTimeout(NetworkError):
    code = "timeout"


class StreamClosed(NetworkError):
    code = "stream_closed"


def frame(data: bytes) -> bytes:
    """The bytes of one frame holding ``data``."""
    return encode_varint(len(data)) + data


async def _read_some(stream: ByteStream, n: int) -> bytes:
    with libp2p_errors("the stream failed", error=StreamClosed, hint=RETRY_HINT):
        chunk = await stream.read(n)
    if not chunk:
        raise StreamClosed("the peer closed the stream", hint=RETRY_HINT)
    return chunk


async def read_exactly(stream: ByteStream, n: int) -> bytes:
    """Read exactly ``n`` bytes (streams may return fewer per read)."""
    buf = bytearray()
    while len(buf) < n:
        buf += await _read_some(stream, n - len(buf))
    return bytes(buf)


async def _read_length(stream: ByteStream) -> int:
    value = 0
    for i in range(MAX_VARINT_BYTES):
        byte = (await read_exactly(stream, 1))[0]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i > 0 and byte == 0:
                raise DecodeError("non-minimal frame length prefix")
            return value
    raise DecodeError("frame length prefix is too long")


async def read_frame(
    stream: ByteStream, *, max_size: int = DEFAULT_MAX_FRAME, timeout: float = DEFAULT_TIMEOUT_S
) -> bytes:
    """Read one frame; its length is checked against ``max_size`` before the body is read."""
    with trio.move_on_after(timeout) as scope:
        length = await _read_length(stream)
        if length > max_size:
            raise FrameTooLarge(
                f"peer announced a {length}-byte frame, the limit is {max_size}",
                hint="the peer is misbehaving or runs an incompatible version",
            )
        return await read_exactly(stream, length) if length else b""
    assert scope.cancelled_caught
    raise FrameTimeout(f"no complete frame within {timeout:g} s", hint="the peer is too slow")


async def write_frame(
    stream: ByteStream,
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_FRAME,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Write one frame; refuses data over ``max_size`` (the peer would refuse it too)."""
    if len(data) > max_size:
        raise FrameTooLarge(f"frame of {len(data)} bytes is over the limit of {max_size}")
    with trio.move_on_after(timeout) as scope:
        with libp2p_errors("the stream failed", error=StreamClosed, hint=RETRY_HINT):
            await stream.write(frame(data))
        return
    assert scope.cancelled_caught
    raise FrameTimeout(f"could not send a frame within {timeout:g} s", hint="the peer is too slow")


async def read_message(
    stream: ByteStream,
    *,
    max_size: int = codec.DEFAULT_MAX_SIZE,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Any:
    """Read one frame and decode it as canonical msgpack (typed errors on bad bytes)."""
    return codec.decode(await read_frame(stream, max_size=max_size, timeout=timeout), max_size)


async def write_message(
    stream: ByteStream,
    obj: Any,
    *,
    max_size: int = codec.DEFAULT_MAX_SIZE,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Encode ``obj`` as canonical msgpack and write it as one frame."""
    await write_frame(stream, codec.encode(obj), max_size=max_size, timeout=timeout)
