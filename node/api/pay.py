"""API routes: payments (status, open, close, refund, purchase, pay-per-call; TEST MONEY faucet;
the Cashu wallet: balance, mint from a Lightning invoice, receive and send tokens).

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


def money(pay: Any, out: dict[str, Any]) -> JSONResponse:
    """An answer about amounts, saying which money they are in (TEST MONEY or a real rail)."""
    backend = pay.backend
    return JSONResponse(
        {
            **out,
            "backend": backend.name,
            "test_money": backend.test_money,
            "money": "TEST MONEY" if backend.test_money else "real",
        }
    )


def routes(ctx: NodeContext) -> list[BaseRoute]:
    async def status(_request: Request) -> JSONResponse:
        pay = _payments(ctx)
        return money(pay, await pay.status())

    async def open_(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        pay = _payments(ctx)
        cid = await pay.open_channel(await _peer(ctx, body), _amount(body, "amount"))
        return money(pay, {"channel": cid.hex()})

    async def close(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        unilateral = body.get("unilateral", False) is True
        pay = _payments(ctx)
        return money(pay, await pay.close_channel(_str(body, "target"), unilateral=unilateral))

    async def refund(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        pay = _payments(ctx)
        return money(pay, {"refunded": await pay.refund(_str(body, "target"))})

    async def faucet(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        pay = _payments(ctx)
        if not pay.backend.test_money:
            raise ValidationError("the faucet exists only on the test-money ledger")
        balance = await pay.backend.faucet(pay.me, _amount(body, "amount"))
        return money(pay, {"balance": balance})

    async def purchase(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        pay = _payments(ctx)
        got = await pay.purchase(
            await _peer(ctx, body),
            _str(body, "skill"),
            _str(body, "version"),
            max_price=_amount(body, "max_price"),
        )
        return money(pay, purchase_json(got))

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

    def _wallet() -> Any:
        pay = _payments(ctx)
        wallet = getattr(pay.backend, "wallet", None)
        if wallet is None:
            raise ValidationError(
                "this node settles on the test-money ledger: it has no ecash wallet",
                hint="set pay.backend = 'cashu:<mint URL>' to use a Cashu wallet",
            )
        return wallet

    async def wallet_balance(_request: Request) -> JSONResponse:
        wallet = _wallet()
        return JSONResponse({"balance": await wallet.balance(), "mint": wallet.mint_url})

    async def wallet_mint(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        wait = body.get("wait_s", 60)
        if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= 3600:
            raise ValidationError("'wait_s' must be an integer 0..3600")
        return JSONResponse(await _wallet().mint(_amount(body, "amount"), float(wait)))

    async def wallet_receive(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        token = body.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= 32_768:
            raise ValidationError("'token' must be a Cashu token string")
        wallet = _wallet()
        return JSONResponse({"received": await wallet.receive_token(token, [])})

    async def wallet_send(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        wallet = _wallet()
        return JSONResponse({"token": await wallet.send(_amount(body, "amount"))})

    return [
        Route("/v1/pay/wallet", wallet_balance, methods=["GET"]),
        Route("/v1/pay/wallet/mint", wallet_mint, methods=["POST"]),
        Route("/v1/pay/wallet/receive", wallet_receive, methods=["POST"]),
        Route("/v1/pay/wallet/send", wallet_send, methods=["POST"]),
        Route("/v1/pay/status", status, methods=["GET"]),
        Route("/v1/pay/open", open_, methods=["POST"]),
        Route("/v1/pay/close", close, methods=["POST"]),
        Route("/v1/pay/refund", refund, methods=["POST"]),
        Route("/v1/pay/faucet", faucet, methods=["POST"]),
        Route("/v1/pay/purchase", purchase, methods=["POST"]),
        Route("/v1/pay/call", call, methods=["POST"]),
        Route("/v1/pay/quote", quote, methods=["GET"]),
    ]
