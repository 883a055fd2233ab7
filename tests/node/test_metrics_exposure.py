"""Metrics refuse foreign Host headers on loopback, and serve a deliberately exposed address."""

from __future__ import annotations

from pathlib import Path

import httpx

from bitterbot.node.config import load_settings
from bitterbot.node.context import NodeContext
from bitterbot.node.home import Home
from bitterbot.node.metrics import NodeMetrics
from bitterbot.node.service import _is_loopback_listen
from bitterbot.node.store import Store


async def test_host_check_follows_the_listen_address(tmp_path: Path) -> None:
    home = Home(tmp_path).ensure()
    store = Store(home.db_path)
    try:
        metrics = NodeMetrics(
            NodeContext(load_settings(home.path, env={}), home, store, home.identity())
        )
        for listen, foreign_status in (("127.0.0.1:9464", 403), ("0.0.0.0:9464", 200)):
            app = metrics.app(check_host=_is_loopback_listen(listen))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://seed-1:9464") as c:
                foreign = await c.get("/metrics")
                local = await c.get("/metrics", headers={"Host": "127.0.0.1:9464"})
            assert foreign.status_code == foreign_status, listen
            assert local.status_code == 200 and "bitterbot" in local.text
    finally:
        store.close()
