"""The local API of a running node, over a real socket (and once in-process)."""

from __future__ import annotations

import httpx
import pytest

from bitterbot.node.api.app import build_app
from bitterbot.node.config import load_settings
from bitterbot.node.home import Home
from bitterbot.node.service import NodeService


@pytest.fixture
async def running_node(tmp_path, nursery):
    settings = load_settings(
        tmp_path / "home",
        {
            "node.listen": ["/ip4/127.0.0.1/tcp/0"],
            "api.listen": "127.0.0.1:0",
            "metrics.listen": "127.0.0.1:0",
        },
        env={},
    )
    service = NodeService(settings)
    info = await nursery.start(service.run)
    yield service, info, Home(tmp_path / "home").api_token(create=False)
    service.stop()
    await service.stopped.wait()


async def test_api_refuses_missing_or_wrong_tokens(running_node):
    _service, info, token = running_node
    url = f"http://{info['api']}/v1/node/status"
    async with httpx.AsyncClient() as client:
        missing = await client.get(url)
        wrong = await client.get(url, headers={"Authorization": "Bearer " + "x" * len(token)})
        ok = await client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert wrong.status_code == 401
    assert ok.status_code == 200


async def test_api_refuses_foreign_host_headers_even_with_the_token(running_node):
    _service, info, token = running_node
    url = f"http://{info['api']}/v1/node/status"
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as client:
        rebinding = await client.get(url, headers={**auth, "Host": "attacker.example:8765"})
        localhost = await client.get(url, headers={**auth, "Host": "localhost:8765"})
    assert rebinding.status_code == 403
    assert rebinding.json()["error"]["code"] == "forbidden_host"
    assert localhost.status_code == 200


async def test_status_reports_the_host_over_a_real_socket(running_node):
    service, info, token = running_node
    async with httpx.AsyncClient() as client:
        resp = await client.get(
            f"http://{info['api']}/v1/node/status", headers={"Authorization": f"Bearer {token}"}
        )
    status = resp.json()
    assert status["peer_id"] == info["peer_id"]
    assert status["network"] == "standalone"
    assert status["listen_addrs"] and all(
        a.endswith("/p2p/" + info["peer_id"]) for a in status["listen_addrs"]
    )
    assert status["connected_peers"] == []
    assert status["routing_table_size"] == 0
    assert status["uptime_s"] >= 0


async def test_connect_route_dials_a_peer_and_validates_its_input(
    running_node, p2p_factory, dial_addr, wait_until
):
    service, info, token = running_node
    other = await p2p_factory("other")
    transport = httpx.ASGITransport(app=build_app(service.ctx, token))
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        bad = await client.post(
            "/v1/node/connect", json={"addr": "/ip4/1.2.3.4/tcp/1"}, headers=auth
        )
        assert bad.status_code == 400
        assert "/p2p/" in bad.json()["error"]["message"]
        garbage = await client.post("/v1/node/connect", content=b"{nope", headers=auth)
        assert garbage.status_code == 400
        ok = await client.post("/v1/node/connect", json={"addr": dial_addr(other)}, headers=auth)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"peer_id": other.peer_id}
        status = (await client.get("/v1/node/status", headers=auth)).json()
    assert other.peer_id in status["connected_peers"]
    assert status["network"] == "joined"
