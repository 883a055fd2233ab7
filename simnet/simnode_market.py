"""Market actions of a simnet node (node/market.py on the node's P2PHost), and the adversary
that serves altered bytes.

Packages are real signed skill packages: the built-in WebAssembly calculator under a new
name per publisher, signed by the publishing node's key. Buyers download through the
market's verified transfer, install through the skills manager (the same verification and
consent as a local install) and run the skill in the wasmtime sandbox.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import trio

from bitterbot.protocol.errors import ValidationError


def calculator_package(identity: Any, name: str, version: str = "1.0.0") -> bytes:
    """The built-in calculator skill renamed to ``name``, packed and signed by ``identity``."""
    from bitterbot.agent.skills import read_folder
    from bitterbot.protocol.skillpkg import build_package, sign_package

    folder = Path(str(resources.files("bitterbot.agent") / "builtin" / "calculator"))
    files = {k: v for k, v in read_folder(folder).items() if not k.startswith("src/")}
    files["SKILL.md"] = files["SKILL.md"].replace(b"name: calculator", f"name: {name}".encode())
    files["bitterbot.toml"] = files["bitterbot.toml"].replace(
        b'version = "1.0.0"', f'version = "{version}"'.encode()
    )
    return sign_package(build_package(files), identity, int(time.time() * 1000)).to_bytes()


def altering_market_class() -> type:
    """A Market that serves every package with one byte flipped (right size, wrong hash)."""
    from bitterbot.node.framing import frame
    from bitterbot.node.market import Market
    from bitterbot.protocol import transfer

    class AlteringMarket(Market):
        async def _serve_package(self, stream: Any, package_id: str, offset: int) -> None:
            path = self.dir / f"{package_id}.bbskill"
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x01
            for raw in transfer.iter_response(bytes(data), offset):
                await stream.write(frame(raw))

    return AlteringMarket


class MarketActions:
    market: Any
    p2p: Any

    def register_market(self, store: Any, identity: Any) -> None:
        """Create the market before the host starts (its handlers and validator register)."""
        from bitterbot.node.config import load_settings
        from bitterbot.node.context import NodeContext
        from bitterbot.node.market import Market

        home = self.home  # type: ignore[attr-defined]
        ctx = NodeContext(load_settings(home.path, env={}), home, store, identity)
        ctx.p2p = self.p2p
        cls = altering_market_class() if self.options.get("market_altering") else Market  # type: ignore[attr-defined]
        self.market = cls(ctx, reannounce_s=3600)
        self.market.register()
        ctx.market = self.market
        self.market_ctx = ctx

    def _need_market(self) -> Any:
        if getattr(self, "market", None) is None:
            raise ValidationError("this simnet node runs without the market")
        return self.market

    async def action_market_publish(self, name: str, version: str = "1.0.0") -> dict[str, Any]:
        market = self._need_market()
        data = await trio.to_thread.run_sync(
            calculator_package, market.ctx.identity, str(name), str(version)
        )
        started = time.perf_counter()
        published = await market.publish(data)
        return {
            "package_id": published["package_id"],
            "name": published["name"],
            "ms": (time.perf_counter() - started) * 1000,
        }

    async def action_market_search(self, name: str = "", tag: str = "") -> dict[str, Any]:
        from bitterbot.protocol.errors import BitterbotError

        market = self._need_market()
        started = time.perf_counter()
        try:
            offers = await market.search(name=name or None, tag=tag or None)
        except BitterbotError as exc:
            return {"offers": [], "error": exc.code, "ms": (time.perf_counter() - started) * 1000}
        return {
            "offers": [
                {"name": o.entry.name, "package_id": o.entry.package_id, "providers": o.providers}
                for o in offers
            ],
            "error": "",
            "ms": (time.perf_counter() - started) * 1000,
        }

    async def action_market_seed_copy(self, name: str) -> dict[str, Any]:
        """Fetch ``name`` (verified) and provide it; an altering node then serves bad bytes."""
        market = self._need_market()
        fetched = await market.fetch(str(name))
        seeded = await market.seed(fetched["id"], fetched["record"])
        return {"package_id": fetched["id"], "seeding": bool(seeded.get("seeding"))}

    async def action_market_install(
        self, name: str, first_providers: list[str], expression: str
    ) -> dict[str, Any]:
        """Find ``name``, download it trying ``first_providers`` first, verify, install, run.

        Returns the content ID of the bytes that were actually installed (recomputed here,
        independently of the market's own check) and the skill's output.
        """
        from bitterbot.agent.skills import SkillManager, accept_declared
        from bitterbot.node.skills_store import LmdbSkillRecords
        from bitterbot.protocol.skillpkg import content_id, read_package

        market = self._need_market()
        started = time.perf_counter()
        offer = await market.resolve(str(name))
        package_id = offer.entry.package_id
        providers = [str(p) for p in first_providers] + [
            p for p in offer.providers if p not in first_providers
        ]
        data = await market.download(package_id, providers, offer.entry.size)
        downloaded_ms = (time.perf_counter() - started) * 1000
        installed_id = content_id(read_package(data, market.limits).archive)
        manager = SkillManager(
            self.home.path / "skills",  # type: ignore[attr-defined]
            LmdbSkillRecords(market.store),
        )
        try:
            await trio.to_thread.run_sync(manager.install, data, accept_declared)
            out = await manager.run(str(name), str(expression))
        finally:
            manager.close()
        return {
            "installed_id": installed_id,
            "output": out.text.strip(),
            "download_ms": downloaded_ms,
            "total_ms": (time.perf_counter() - started) * 1000,
            "penalties": market.penalties(),
        }
