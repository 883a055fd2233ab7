"""The coordinator/worker control channel: frames, limits, bad input."""

from __future__ import annotations

import struct

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from bitterbot.simnet.control import MAX_FRAME, FrameReader, encode_frame
from bitterbot.simnet.errors import WorkerError


class ChunkedStream(trio.abc.ReceiveStream):
    """Hands out ``data`` ``chunk`` bytes at a time, then end of stream."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk = data, chunk

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        out, self.data = self.data[: self.chunk], self.data[self.chunk :]
        return out

    async def aclose(self) -> None:
        pass


async def _read_all(data: bytes, chunk: int = 7) -> list:
    reader = FrameReader(ChunkedStream(data, chunk))
    out = []
    while (message := await reader.read()) is not None:
        out.append(message)
    return out


async def test_frames_round_trip_across_arbitrary_chunking():
    messages = [
        {"id": 1, "op": "start", "args": {"seed": b"\x00" * 32, "seeds": ["/ip4/1.2.3.4"]}},
        {"id": 2, "ok": True, "result": {"ms": 12.5, "providers": []}},
    ]
    data = b"".join(encode_frame(m) for m in messages)
    assert await _read_all(data, chunk=1) == messages
    assert await _read_all(data, chunk=4096) == messages


async def test_announced_oversize_frame_is_refused_before_reading_it():
    header = struct.pack(">I", MAX_FRAME + 1)
    with pytest.raises(WorkerError, match="limit"):
        await _read_all(header)  # no body follows: the refusal comes from the header alone


async def test_truncated_frame_and_non_map_are_errors():
    frame = encode_frame({"id": 1})
    with pytest.raises(WorkerError, match="middle of a frame"):
        await _read_all(frame[:-1])
    with pytest.raises(WorkerError, match="frame header"):
        await _read_all(frame[:2])
    import msgpack

    body = msgpack.packb([1, 2])
    with pytest.raises(WorkerError, match="not a map"):
        await _read_all(struct.pack(">I", len(body)) + body)


def test_encoding_an_oversize_message_fails():
    with pytest.raises(WorkerError):
        encode_frame({"blob": b"x" * (MAX_FRAME + 1)})


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_worker_error(data):
    async def main() -> None:
        try:
            await _read_all(struct.pack(">I", len(data)) + data)
        except WorkerError:
            pass

    trio.run(main)
