"""A local Cashu mint for tests, simnet and benchmarks: a real nutshell process on loopback.

Nutshell (``cashu==0.19.2``) pins libraries that conflict with libp2p, so it lives in its
own virtualenv (``make mint-env`` builds ``.venv-mint``; ``BITTERBOT_MINT_BIN`` names
another ``mint`` executable). The mint uses the FakeWallet Lightning backend (invoices are
paid at once: TEST MONEY, on loopback only), SQLite in a fresh folder, no input fees and no
rate limit. Newer nutshell releases (0.20+) derive keyset IDs that cdk-python 0.14 does not
accept: keep the pin.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

from bitterbot.protocol.errors import ConfigError

#: the nutshell ``mint`` executable (default: the repository's .venv-mint)
MINT_BIN_ENV = "BITTERBOT_MINT_BIN"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / ".venv-mint" / "bin" / "mint"
START_TIMEOUT_S = 60.0


def mint_bin() -> Path:
    path = Path(os.environ.get(MINT_BIN_ENV) or DEFAULT_BIN)
    if not path.exists():
        raise ConfigError(
            f"no nutshell mint at {path}",
            hint="build it: make mint-env (or set BITTERBOT_MINT_BIN to a nutshell `mint`)",
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalMint:
    """``with LocalMint(folder) as mint: mint.url`` — started, reachable, stopped after."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MINT_BACKEND_BOLT11_SAT": "FakeWallet",
            "MINT_LISTEN_HOST": "127.0.0.1",
            "MINT_LISTEN_PORT": str(self.port),
            "MINT_PRIVATE_KEY": "bitterbot-local-test-mint-" + self.folder.name,
            "MINT_DATABASE": str(self.folder / "db"),
            "MINT_INPUT_FEE_PPK": "0",
            "MINT_RATE_LIMIT": "FALSE",
            "FAKEWALLET_DELAY_INCOMING_PAYMENT": "0",
            "DEBUG": "FALSE",
        }

    def start(self) -> LocalMint:
        (self.folder / "db").mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "mint.log", "ab")  # noqa: SIM115 (owned by the process)
        self.proc = subprocess.Popen(
            [str(mint_bin())], cwd=self.folder, env=self.env(), stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(
                    f"the mint exited with {self.proc.returncode}",
                    hint=f"see {self.folder / 'mint.log'}",
                )
            try:
                if httpx.get(self.url + "/v1/keysets", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ConfigError(f"the mint did not answer within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalMint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
