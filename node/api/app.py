"""Local HTTP API (Starlette on hypercorn's trio worker).

Security: binds 127.0.0.1 by default; every route needs ``Authorization: Bearer <token>``
(the token lives in ``api.token`` in the home, mode 0600) and a loopback ``Host`` header
(DNS-rebinding defence): 401 without the token, 403 for a foreign Host. Errors have one
JSON shape: ``{"error": {"code", "message", "hint"?}}``.

Routes come from per-subsystem modules, each exposing ``routes(ctx) -> list[BaseRoute]``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from bitterbot.node.context import NodeContext
from bitterbot.node.loopback import host_is_loopback
from bitterbot.node.rep.service import InstallRefused
from bitterbot.protocol import errors

logger = logging.getLogger(__name__)


#: The first matching class decides (subclasses before their parents).
_STATUS: dict[type[errors.BitterbotError], int] = {
    errors.NotRunningError: 503,
    InstallRefused: 403,  # refused by this node's reputation policy
    errors.NotFoundError: 404,
    errors.ValidationError: 400,
    errors.WireError: 400,
    errors.ConfigError: 400,
    errors.SandboxViolation: 403,
    errors.SkillError: 422,  # a package or skill input that is well-formed but unusable
    errors.PaymentError: 402,
    errors.StaleError: 409,
    errors.NetworkError: 502,  # a peer or the network failed, not this server
}

#: Errors that mean "this part of the node is not running" answer 503, whatever their class.
UNAVAILABLE_CODES = {
    "agent_not_running",
    "payments_not_running",
    "not_running",
    "market_not_running",
}


def error_response(exc: errors.BitterbotError) -> JSONResponse:
    status = 503 if exc.code in UNAVAILABLE_CODES else 500
    for cls, code in _STATUS.items():
        if status == 503:
            break
        if isinstance(exc, cls):
            status = code
            break
    return JSONResponse({"error": exc.to_dict()}, status_code=status)


def _json_error(status: int, code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class AuthMiddleware:
    """Refuse foreign Host headers (403) and missing or wrong tokens (401), before routing."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not host_is_loopback(host):
            await _send(
                send,
                403,
                _json_error(403, "forbidden_host", "requests must use a loopback Host header"),
            )
            return
        auth = headers.get(b"authorization", b"")
        if not hmac.compare_digest(auth, self.expected):
            await _send(
                send,
                401,
                _json_error(
                    401,
                    "unauthorized",
                    "missing or wrong bearer token (see api.token in the node home)",
                ),
            )
            return
        await self.app(scope, receive, send)


async def _send(send: Callable[[Any], Awaitable[None]], status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_app(ctx: NodeContext, token: str) -> Any:
    from bitterbot.node.api import routes as api_routes

    routes: list[BaseRoute] = []
    for make in api_routes.ROUTE_FACTORIES:
        routes.extend(make(ctx))

    async def on_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.BitterbotError)
        return error_response(exc)

    async def on_group(request: Request, exc: Exception) -> Response:
        # trio nurseries wrap what a route raises inside them in an exception group
        assert isinstance(exc, BaseExceptionGroup)
        leaves = errors.leaf_errors(exc)
        if len(leaves) == 1 and isinstance(leaves[0], errors.BitterbotError):
            return error_response(leaves[0])
        return await on_crash(request, exc)

    async def on_crash(_request: Request, exc: Exception) -> Response:
        logger.error("API request failed", exc_info=exc)
        body = {
            "code": "internal",
            "message": f"internal error ({type(exc).__name__}) in the node",
            "hint": "the node's log has the details; please report it",
        }
        return JSONResponse({"error": body}, status_code=500)

    handlers: Any = {
        errors.BitterbotError: on_error,
        ExceptionGroup: on_group,
        Exception: on_crash,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.ctx = ctx
    return AuthMiddleware(app, token)


async def serve_api(
    app: Any,
    listen: str,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
) -> None:
    """Serve ``app`` on ``listen`` (HOST:PORT; port 0 picks one) until ``shutdown`` is set.

    ``task_status.started`` receives the bound ``host:port``.
    """
    import os
    import socket

    from hypercorn.config import Config
    from hypercorn.trio import serve

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    config = Config()
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise errors.NetworkError(
            f"cannot listen on {listen} for the API: {exc.strerror}",
            hint="pick another address with --api HOST:PORT",
        ) from exc
    try:
        bound_host, bound_port = sock.getsockname()[:2]
        # hypercorn takes ownership of (and closes) the descriptor it is given: hand it a dup
        config.bind = [f"fd://{os.dup(sock.fileno())}"]
        event = shutdown if shutdown is not None else trio.Event()
        task_status.started(
            f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
        )
        await serve(app, config, shutdown_trigger=event.wait)
    finally:
        sock.close()
