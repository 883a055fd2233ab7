"""API routes: payments (status, open, close, refund, purchase, pay-per-call; TEST MONEY faucet).

Amounts in JSON are integers in the smallest unit; anything else is refused.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.api.body import read_json
from bitterbot.node.context import NodeContext
from bitterbot.protocol.errors import NotRunningError, ValidationError

MAX_BODY = 64 * 1024


class PaymentsNotRunning(NotRunningError):
    code = "payments_not_running"


def _payments(ctx: NodeContext) -> Any:
    if ctx.payments is None:
        raise PaymentsNotRunning(
            "payments are not running in this node", hint="start the node: bitterbot node start"
        )
    return ctx.payments


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValidationError(f"{name!r} must be a non-empty string")
    return value


def _amount(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError(f"{name!r} must be a positive integer (smallest unit, no floats)")
    return value


async def _peer(ctx: NodeContext, body: dict[str, Any]) -> str:
    """A peer ID, or a multiaddr ending in /p2p/<id> that is dialled first."""
    text = _str(body, "peer")
    if text.startswith("/"):
        if ctx.p2p is None:
            raise PaymentsNotRunning("the node's network is not running")
        peer: str = await ctx.p2p.connect(text)
        return peer
    return text


def purchase_json(p: Any) -> dict[str, Any]:
    return {
        "purchase": p.purchase_id.hex(),
        "skill": p.skill,
        "version": p.version,
        "price": p.price,
        "license": {
            "publisher": p.license.publisher.hex(),
            "versions": {"min": p.license.version_min, "below": p.license.version_below},
            "amount": p.license.amount,
            "voucher": p.license.voucher.hex(),
        },
    }


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def status(_request: Request) -> JSONResponse:
        out = await _payments(ctx).status()
        return JSONResponse({**out, "money": "TEST MONEY" if out["test_money"] else "real"})

    async def open_(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        pay = _payments(ctx)
        cid = await pay.open_channel(await _peer(ctx, body), _amount(body, "amount"))
        return JSONResponse({"channel": cid.hex()})

    async def close(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        unilateral = body.get("unilateral", False) is True
        return JSONResponse(
            await _payments(ctx).close_channel(_str(body, "target"), unilateral=unilateral)
        )

    async def refund(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        return JSONResponse({"refunded": await _payments(ctx).refund(_str(body, "target"))})

    async def faucet(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        pay = _payments(ctx)
        if not pay.backend.test_money:
            raise ValidationError("the faucet exists only on the test-money ledger")
        balance = await pay.backend.faucet(pay.me, _amount(body, "amount"))
        return JSONResponse({"balance": balance, "money": "TEST MONEY"})

    async def purchase(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        pay = _payments(ctx)
        got = await pay.purchase(
            await _peer(ctx, body),
            _str(body, "skill"),
            _str(body, "version"),
            max_price=_amount(body, "max_price"),
        )
        return JSONResponse(purchase_json(got))

    async def call(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        pay = _payments(ctx)
        peer, service = await _peer(ctx, body), _str(body, "service")
        text = body.get("input", "")
        if not isinstance(text, str):
            raise ValidationError("'input' must be a string")
        output = await pay.call_service(
            peer, service, text.encode(), max_price=_amount(body, "max_price")
        )
        return JSONResponse({"output": output.decode("utf-8", errors="replace")})

    async def quote(request: Request) -> JSONResponse:
        peer = request.query_params.get("peer", "")
        service = request.query_params.get("service", "")
        if not peer or not service:
            raise ValidationError("give ?peer=...&service=...")
        return JSONResponse({"price": await _payments(ctx).quote_service(peer, service)})

    return [
        Route("/v1/pay/status", status, methods=["GET"]),
        Route("/v1/pay/open", open_, methods=["POST"]),
        Route("/v1/pay/close", close, methods=["POST"]),
        Route("/v1/pay/refund", refund, methods=["POST"]),
        Route("/v1/pay/faucet", faucet, methods=["POST"]),
        Route("/v1/pay/purchase", purchase, methods=["POST"]),
        Route("/v1/pay/call", call, methods=["POST"]),
        Route("/v1/pay/quote", quote, methods=["GET"]),
    ]
