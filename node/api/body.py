"""Request bodies: read as a stream up to a size limit, then parsed; one place for all routes.

A declared ``Content-Length`` over the limit is refused before anything is read, and a
streamed (chunked) body is refused as soon as it passes the limit, so a client cannot make
the node buffer more than ``limit`` bytes.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from bitterbot.protocol.errors import TooLargeError, ValidationError


def _too_large(limit: int) -> TooLargeError:
    return TooLargeError(f"request body over {limit} bytes", hint="send less")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (``TooLargeError`` past it)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _too_large(limit)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``), at most ``limit`` bytes."""
    raw = await read_body(request, limit)
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("the request body is not JSON", hint="send a JSON object") from exc
    if not isinstance(data, dict):
        raise ValidationError("the request body must be a JSON object")
    return data
