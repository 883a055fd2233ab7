"""The node service in-process: lifecycle, lock, node.json, metrics, subsystem hooks."""

from __future__ import annotations

import os

import httpx
import pytest
import trio

from bitterbot.node.config import load_settings
from bitterbot.node.home import Home
from bitterbot.node.service import NodeService
from bitterbot.protocol.errors import HomeError, NetworkError


def settings_for(home, **overrides):
    base = {
        "node.listen": ["/ip4/127.0.0.1/tcp/0"],
        "api.listen": "127.0.0.1:0",
        "metrics.listen": "127.0.0.1:0",
    }
    base.update(overrides)
    return load_settings(home, base, env={})


async def test_service_starts_writes_node_json_and_cleans_up(tmp_path, nursery):
    started = []

    async def starter(ctx, starter_nursery):
        assert ctx.p2p is not None and ctx.p2p.running
        started.append(ctx)
        starter_nursery.start_soon(trio.sleep_forever)  # a subsystem's background task

    service = NodeService(settings_for(tmp_path / "home"), starters=[starter])
    info = await nursery.start(service.run)
    home = Home(tmp_path / "home")
    assert home.read_running() == info
    assert info["peer_id"] == service.ctx.p2p.peer_id
    assert started == [service.ctx]
    assert home.running_pid() is not None

    # metrics endpoint over a real socket
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://{info['metrics']}/metrics")
    assert resp.status_code == 200
    assert f'peer_id="{info["peer_id"]}"' in resp.text
    assert "bitterbot_dht_routing_table_size 0.0" in resp.text
    assert "bitterbot_process_rss_bytes" in resp.text
    async with httpx.AsyncClient() as client:
        foreign = await client.get(
            f"http://{info['metrics']}/metrics", headers={"Host": "evil.example"}
        )
    assert foreign.status_code == 403

    with trio.fail_after(5):
        service.stop()
        await service.stopped.wait()
    assert home.read_running() is None
    assert not (home.path / "node.json").exists()
    assert home.running_pid() is None


async def test_a_second_service_on_the_same_home_is_refused(tmp_path, nursery):
    first = NodeService(settings_for(tmp_path / "home"))
    await nursery.start(first.run)
    second = NodeService(settings_for(tmp_path / "home"))
    with pytest.raises(HomeError, match=r"already running on .* \(pid \d+\)") as info:
        await second.run()
    assert f"(pid {os.getpid()})" in info.value.message
    assert info.value.code == "already_running"
    first.stop()
    await first.stopped.wait()


@pytest.mark.parametrize(
    ("setting", "flag"), [("api.listen", "--api"), ("metrics.listen", "--metrics")]
)
async def test_a_busy_http_port_fails_the_start_and_releases_the_home(tmp_path, setting, flag):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        service = NodeService(settings_for(tmp_path / "home", **{setting: f"127.0.0.1:{port}"}))
        with pytest.raises(BaseException) as info:
            await service.run()
    errors = [info.value]
    while isinstance(errors[0], BaseExceptionGroup):
        errors = list(errors[0].exceptions)
    assert isinstance(errors[0], NetworkError)
    assert f"127.0.0.1:{port}" in errors[0].message
    assert flag in errors[0].hint
    assert Home(tmp_path / "home").running_pid() is None  # lock released
    assert service.stopped.is_set()


async def test_dht_queries_show_up_in_metrics(tmp_path, nursery):
    service = NodeService(settings_for(tmp_path / "home"))
    info = await nursery.start(service.run)
    p2p = service.ctx.p2p
    p2p.register_namespace("bbtest", lambda k, v: None, lambda k, vs: 0)
    await p2p.put_value("/bbtest/x", b"1")
    assert await p2p.get_value("/bbtest/x") == b"1"
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://{info['metrics']}/metrics")).text
    assert 'bitterbot_dht_queries_total{op="put_value",result="ok"} 1.0' in text
    assert 'bitterbot_dht_query_seconds_count{op="get_value"} 1.0' in text
    service.stop()
    await service.stopped.wait()


async def test_p2p_bootstrap_retries_an_unreachable_seed_and_joins_once_it_is_up(
    tmp_path, nursery, p2p_factory, wait_until
):
    import socket

    with socket.socket() as probe:  # a free port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seed_home = Home(tmp_path / "seed").ensure()
    from bitterbot.node.p2p.peer_id import peer_id_of

    seed_id = peer_id_of(seed_home.identity())
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{seed_id}"
    node = NodeService(settings_for(tmp_path / "home", **{"node.seeds": [addr]}))
    await nursery.start(node.run)
    p2p = node.ctx.p2p
    await wait_until(lambda: seed_id in p2p.seed_errors, timeout=10)
    assert p2p.status()["network"] == "joining"
    seed = await p2p_factory("seed", listen=[f"/ip4/127.0.0.1/tcp/{port}"])
    assert seed.peer_id == seed_id
    await wait_until(lambda: seed_id in p2p.connected_peers(), timeout=20)
    assert p2p.status()["network"] == "joined"
    assert seed_id not in p2p.seed_errors
    node.stop()
    await node.stopped.wait()
