"""API routes: reputation (status, skill assessment, roots, new attestations)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bitterbot.node.api.body import read_json
from bitterbot.node.context import NodeContext
from bitterbot.protocol.errors import ValidationError

MAX_BODY = 8 * 1024


def _hex32(body: dict[str, Any], name: str) -> bytes:
    value = body.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValidationError(f"{name!r} must be 64 hex digits (a SHA-256 or a key)")
    return raw


def _peer(text: Any) -> bytes:
    from bitterbot.node.p2p.peer_id import parse_peer

    if not isinstance(text, str):
        raise ValidationError("'peer' must be a peer ID or key")
    return parse_peer(text)


def _str(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise ValidationError(f"{name!r} must be a string")
    return value


def attest_from_json(rep: Any, body: Any) -> Any:
    """Create one of this node's attestations from a JSON request body."""
    if not isinstance(body, dict):
        raise ValidationError("expected a JSON object")
    kind = body.get("kind")
    if kind == "rating":
        stars = body.get("stars")
        if not isinstance(stars, int) or isinstance(stars, bool):
            raise ValidationError("'stars' must be an integer from 1 to 5")
        publisher = _peer(body["publisher"]) if body.get("publisher") else None
        return rep.rate(_str(body, "skill"), stars, _str(body, "text", ""), publisher)
    if kind == "flag":
        return rep.flag(
            _str(body, "skill"), _hex32(body, "evidence_hash"), _str(body, "reason", "")
        )
    if kind == "audit":
        verdict = body.get("verdict")
        if verdict not in ("pass", "fail"):
            raise ValidationError("'verdict' must be 'pass' or 'fail'")
        findings = body.get("findings", [])
        if not isinstance(findings, list) or not all(isinstance(f, str) for f in findings):
            raise ValidationError("'findings' must be a list of strings")
        return rep.audit(
            _str(body, "skill"), verdict == "pass", _hex32(body, "report_hash"), findings
        )
    if kind == "revoke":
        return rep.revoke(_str(body, "skill"), _str(body, "reason", ""))
    if kind in ("trust", "distrust"):
        key = _peer(body.get("peer"))
        if key == rep.identity.public_key:
            raise ValidationError("a node cannot vouch for or distrust itself")
        return rep.vouch(key, kind == "trust")
    raise ValidationError("'kind' must be rating, flag, audit, revoke, trust or distrust")


def routes(ctx: NodeContext) -> list[BaseRoute]:
    from bitterbot.node.rep.service import reputation_of

    async def status(_request: Request) -> JSONResponse:
        return JSONResponse(reputation_of(ctx).status())

    async def skill(request: Request) -> JSONResponse:
        publisher = request.query_params.get("publisher")
        pub = _peer(publisher) if publisher else None
        name = request.path_params["skill"]
        return JSONResponse(reputation_of(ctx).assess(name, pub).describe())

    async def roots(_request: Request) -> JSONResponse:
        graph = reputation_of(ctx).graph
        return JSONResponse([graph.peer_info(k) for k in sorted(graph.roots())])

    async def attest(request: Request) -> JSONResponse:
        body = await read_json(request, MAX_BODY)
        att = attest_from_json(reputation_of(ctx), body)
        return JSONResponse(att.describe(), status_code=201)

    return [
        Route("/v1/rep/status", status, methods=["GET"]),
        Route("/v1/rep/skills/{skill:path}", skill, methods=["GET"]),
        Route("/v1/rep/roots", roots, methods=["GET"]),
        Route("/v1/rep/attestations", attest, methods=["POST"]),
    ]
