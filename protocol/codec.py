"""Canonical msgpack: one byte string per value, so signatures cover exactly one meaning.

The canonical form:
- maps have ``str`` keys, written in ascending order of their UTF-8 bytes;
- integers use msgpack's shortest encoding and fit in signed/unsigned 64 bits;
- ``bytes`` are msgpack bin, ``str`` is msgpack str (valid UTF-8);
- no floats, no ext types, no timestamps: money and signatures never meet rounding;
- nesting at most :data:`MAX_DEPTH` deep.

:func:`decode` checks the size limit *before* parsing, then parses, then re-encodes and
compares: anything that is not canonical is refused, so two peers can never disagree
about what a signed message says. Arbitrary bytes only ever raise our own
:class:`~bitterbot.protocol.errors.WireError` subclasses.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import DecodeError, TooLargeError

MAX_DEPTH = 16
DEFAULT_MAX_SIZE = 64 * 1024

Value = None | bool | int | str | bytes | list["Value"] | dict[str, "Value"]


def _canonical(obj: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise DecodeError(f"value nested deeper than {MAX_DEPTH} levels")
    if obj is None or isinstance(obj, bool | str | bytes):
        return obj
    if isinstance(obj, int):
        if not -(2**63) <= obj < 2**64:
            raise DecodeError("integer outside the 64-bit range")
        return obj
    if isinstance(obj, list | tuple):
        return [_canonical(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str):
                raise DecodeError(f"map key {key!r} is not a string")
        items = sorted(obj.items(), key=lambda kv: kv[0].encode("utf-8"))
        return {k: _canonical(v, depth + 1) for k, v in items}
    if isinstance(obj, float):
        raise DecodeError("floats are not allowed on the wire; use integers in the smallest unit")
    raise DecodeError(f"type {type(obj).__name__} cannot be encoded")


def encode(obj: Any) -> bytes:
    """Encode ``obj`` canonically. Raises :class:`DecodeError` for values outside the form."""
    packed: bytes = msgpack.packb(_canonical(obj, 0), use_bin_type=True)
    return packed


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Decode canonical msgpack ``data`` of at most ``max_size`` bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise TooLargeError(f"message of {len(data)} bytes is over the limit of {max_size} bytes")
    raw = bytes(data)
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise DecodeError(f"not valid msgpack: {exc}") from exc
    except RecursionError as exc:  # pragma: no cover - msgpack's own stack limit comes first
        raise DecodeError("value nested too deeply") from exc
    if encode(obj) != raw:
        raise DecodeError("msgpack is valid but not in canonical form")
    return obj


def encode_uvarint(n: int) -> bytes:
    """Unsigned LEB128 (as in multiformats and libp2p length prefixes)."""
    if n < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def expect_map(obj: Any, what: str, required: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """Check that ``obj`` is a map with the ``required`` keys of the given types.

    Unknown extra keys are allowed (forward compatibility) but never trusted by callers.
    ``bool`` is not accepted where ``int`` is asked for.
    """
    if not isinstance(obj, dict):
        raise DecodeError(f"{what}: expected a map, got {type(obj).__name__}")
    for key, typ in required.items():
        if key not in obj:
            raise DecodeError(f"{what}: missing field {key!r}")
        value = obj[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if isinstance(value, bool) and bool not in types:
            raise DecodeError(f"{what}: field {key!r} has type bool")
        if not isinstance(value, types):
            raise DecodeError(f"{what}: field {key!r} has type {type(value).__name__}")
    return obj
