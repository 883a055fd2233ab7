"""``bitterbot bench node``: start-to-ready time, idle RSS and stop time of a real node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from bitterbot.node.cli.common import bench
from bitterbot.protocol.errors import NetworkError


# --- benchmark ---------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@bench.command("node")
@click.option("--json", "as_json", is_flag=True, help="print JSON (the default output anyway)")
@click.option(
    "--idle", "idle_s", default=5.0, show_default=True, help="seconds idle before measuring RSS"
)
@click.option(
    "--with-model",
    is_flag=True,
    help="let the agent preload its default model (the RSS target is without a model)",
)
def bench_node(as_json: bool, idle_s: float, with_model: bool) -> None:
    """Start a real `bitterbot node start` child: start-to-ready time, idle RSS, stop time."""
    import httpx

    from bitterbot.node.home import Home

    with tempfile.TemporaryDirectory(prefix="bitterbot-bench-") as tmp:
        home = Home(Path(tmp) / "home")
        cmd = [
            sys.executable,
            "-c",
            "from bitterbot.node.cli.main import main; main()",
            "--home",
            str(home.path),
            "node",
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("BITTERBOT_")}
        env["BITTERBOT_AGENT_PRELOAD"] = "true" if with_model else "false"
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            ready_s = None
            while time.perf_counter() - t0 < 60 and child.poll() is None:
                running = home.read_running() if home.path.exists() else None
                if running:
                    token = home.api_token(create=False)
                    resp = httpx.get(
                        f"http://{running['api']}/v1/node/status",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=5,
                    )
                    if resp.status_code == 200:
                        ready_s = time.perf_counter() - t0
                        break
                time.sleep(0.02)
            if ready_s is None:
                assert child.stderr is not None  # started with stderr=PIPE
                err = (
                    child.stderr.read().decode(errors="replace") if child.poll() is not None else ""
                )
                raise NetworkError(f"the node did not become ready within 60 s {err.strip()}")
            ready_rss = _rss_mb(child.pid)
            cpu0, wall0 = _cpu_s(child.pid), time.perf_counter()
            time.sleep(idle_s)
            idle_cpu = (_cpu_s(child.pid) - cpu0) / (time.perf_counter() - wall0) * 100
            idle_rss = _rss_mb(child.pid)
            t1 = time.perf_counter()
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=15)
            stop_s = time.perf_counter() - t1
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    result = {
        "start_to_ready_s": round(ready_s, 3),
        "rss_at_ready_mb": round(ready_rss, 1),
        "idle_rss_mb": round(idle_rss, 1),
        "idle_s": idle_s,
        "idle_cpu_percent": round(idle_cpu, 2),
        "stop_s": round(stop_s, 3),
        "exit_code": code,
        "model_preloaded": with_model,
        "target_idle_rss_mb": 150,
        "rss_ok": idle_rss <= 150,
    }
    click.echo(json.dumps(result, indent=2))
