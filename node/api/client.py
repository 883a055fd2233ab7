"""Calling the running node's local API from the CLI (address and token come from the home)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitterbot.node.home import Home
from bitterbot.protocol.errors import BitterbotError, HomeError, NetworkError


class NodeUnreachable(NetworkError):
    """The home names a running node, but its API does not accept connections."""

    code = "node_unreachable"


def running_api(home_path: Path) -> tuple[str, str] | None:
    """``(address, token)`` of the node running on ``home_path``, or None."""
    home = Home(home_path)
    if not home.path.exists():
        return None
    running = home.read_running()
    if running is None or "api" not in running:
        return None
    return str(running["api"]), home.api_token(create=False)


def call_node(
    home_path: Path, method: str, route: str, body: Any = None, *, timeout: float = 30.0
) -> Any:
    """Call ``route`` on the node running on ``home_path``; API errors become BitterbotError."""
    import httpx

    api = running_api(home_path)
    if api is None:
        raise HomeError(
            f"no node is running on {Path(home_path)}",
            hint="start one with: bitterbot node start (or pass the right --home)",
            code="not_running",
        )
    address, token = api
    headers = {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"}
    try:
        resp = httpx.request(
            method,
            f"http://{address}{route}",
            json=body,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise NodeUnreachable(
            f"the node's API at {address} does not answer",
            hint="the node may be starting or gone; check its output",
        ) from exc
    except httpx.HTTPError as exc:
        raise NetworkError(
            f"the node's API at {address} does not answer: {exc}",
            hint="the node may be starting or hung; check its output",
        ) from exc
    try:
        out = resp.json()
    except ValueError as exc:
        raise NetworkError(f"the node's API answered {resp.status_code} without JSON") from exc
    if resp.status_code != 200:
        err = out.get("error", {}) if isinstance(out, dict) else {}
        raise BitterbotError(
            str(err.get("message", f"the node answered {resp.status_code}")),
            hint=err.get("hint"),
            code=str(err.get("code", "api_error")),
        )
    return out
