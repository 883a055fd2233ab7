"""Market actions of a simnet node (node/market.py on the node's P2PHost), and the adversary
that serves altered bytes.

Packages are real signed skill packages: the built-in WebAssembly calculator under a new
name per publisher, signed by the publishing node's key; with a price, the market sells it
as a real node does (an encrypted ``.bbpaid`` package under its own content ID, licenses
over payment channels). Buyers go the way ``bitterbot skill install NAME --max-price N``
goes: :meth:`Market.fetch` (search, download, buy, unlock, verify), then the skills manager
of :func:`bitterbot.node.skills_store.open_manager` (the same verification, consent and
paid-skill license gate as a node's) installs and runs the skill in the wasmtime sandbox.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import trio

from bitterbot.protocol.errors import BitterbotError, NetworkError, ValidationError

#: channel capacity of simnet nodes (the node default, 10,000, is enough for one purchase)
CHANNEL_CAPACITY = 100_000


def calculator_package(identity: Any, name: str, version: str = "1.0.0", price: int = 0) -> bytes:
    """The built-in calculator skill renamed to ``name`` at ``price``, packed and signed."""
    from bitterbot.agent.skills import read_folder
    from bitterbot.protocol.skillpkg import build_package, sign_package

    folder = Path(str(resources.files("bitterbot.agent") / "builtin" / "calculator"))
    files = {k: v for k, v in read_folder(folder).items() if not k.startswith("src/")}
    files["SKILL.md"] = files["SKILL.md"].replace(b"name: calculator", f"name: {name}".encode())
    manifest = files["bitterbot.toml"].replace(
        b'version = "1.0.0"', f'version = "{version}"'.encode()
    )
    files["bitterbot.toml"] = manifest.replace(b"price = 0\n", f"price = {price}\n".encode())
    return sign_package(build_package(files), identity, int(time.time() * 1000)).to_bytes()


def altering_market_class() -> type:
    """A Market that serves every package, paid (encrypted) ones too, with one byte flipped
    (right size, wrong hash)."""
    from bitterbot.node.market import Market
    from bitterbot.node.p2p.framing import frame
    from bitterbot.protocol import transfer

    class AlteringMarket(Market):
        async def _serve_package(self, stream: Any, package_id: str, offset: int) -> None:
            data = bytearray(self.path_for(package_id).read_bytes())
            data[len(data) // 2] ^= 0x01
            for raw in transfer.iter_response(bytes(data), offset):
                await stream.write(frame(raw))

    return AlteringMarket


def shared_context(node: Any, store: Any, identity: Any) -> Any:
    """The one NodeContext a simnet node's market and payments share, as in a real node
    (node/subsystems.py: each starter attaches itself to it). Payments use the run's
    shared test-money ledger folder (option ``ledger_path``) or its local Cashu mint
    (option ``cashu_mint``, a URL)."""
    from bitterbot.node.config import load_settings
    from bitterbot.node.context import NodeContext

    ctx = getattr(node, "node_ctx", None)
    if ctx is None:
        overrides: dict[str, Any] = {"pay.default_capacity": CHANNEL_CAPACITY}
        if node.options.get("ledger_path"):
            overrides["pay.ledger_path"] = str(node.options["ledger_path"])
        if node.options.get("cashu_mint"):  # payments on the run's local Cashu mint
            overrides["pay.backend"] = "cashu:" + str(node.options["cashu_mint"])
        settings = load_settings(node.home.path, overrides, env={})
        ctx = NodeContext(settings, node.home, store, identity)
        ctx.p2p = node.p2p
        node.node_ctx = ctx
    return ctx


class MarketActions:
    market: Any
    p2p: Any

    def register_market(self, store: Any, identity: Any) -> None:
        """Create the market before the host starts (its handlers and validator register)."""
        from bitterbot.node.market import Market

        ctx = shared_context(self, store, identity)
        cls = altering_market_class() if self.options.get("market_altering") else Market  # type: ignore[attr-defined]
        self.market = cls(ctx, reannounce_s=3600)
        self.market.register()
        ctx.market = self.market

    def _need_market(self) -> Any:
        if getattr(self, "market", None) is None:
            raise ValidationError("this simnet node runs without the market")
        return self.market

    def _skill_manager(self) -> Any:
        """The node's skills manager, license gate included (what ``skill install`` uses)."""
        from bitterbot.node.skills_store import open_manager

        market = self._need_market()
        return open_manager(market.ctx.home.path, market.store, market.ctx.settings)

    async def action_market_publish(
        self, name: str, version: str = "1.0.0", price: int = 0
    ) -> dict[str, Any]:
        """Publish the calculator as ``name``; a price makes it a paid skill sold by this node.

        ``plain_id`` is the signed package's own content ID (for a paid skill the catalog
        names the encrypted package instead: ``package_id``).
        """
        from bitterbot.protocol.skillpkg import verify_package

        market = self._need_market()
        if isinstance(price, bool) or not isinstance(price, int) or price < 0:
            raise ValidationError("price must be a non-negative integer")
        data = await trio.to_thread.run_sync(
            calculator_package, market.ctx.identity, str(name), str(version), price
        )
        started = time.perf_counter()
        published = await market.publish(data)
        return {
            "package_id": published["package_id"],
            "plain_id": verify_package(data, market.limits).id,
            "name": published["name"],
            "price": published["price"],
            "seller": published.get("seller", ""),
            "ms": (time.perf_counter() - started) * 1000,
        }

    async def action_market_search(self, name: str = "", tag: str = "") -> dict[str, Any]:
        market = self._need_market()
        started = time.perf_counter()
        try:
            offers = await market.search(name=name or None, tag=tag or None)
        except BitterbotError as exc:
            return {"offers": [], "error": exc.code, "ms": (time.perf_counter() - started) * 1000}
        return {
            "offers": [
                {
                    "name": o.entry.name,
                    "package_id": o.entry.package_id,
                    "price": o.entry.price,
                    "seller": o.entry.seller,
                    "providers": o.providers,
                }
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

    async def action_market_seed_paid_blob(self, name: str) -> dict[str, Any]:
        """Download a paid skill's encrypted package as :meth:`Market.fetch` does before
        buying (anyone may: it is useless without a license) and provide it, as a buyer's
        node does after buying; no license, no payment."""
        market = self._need_market()
        offer = await market.resolve(str(name))
        package_id = offer.entry.package_id
        path = market.path_for(package_id)
        if not path.is_file():
            providers = [*offer.providers, offer.entry.seller]  # the seller serves it too
            data = await market.download(package_id, providers, offer.entry.size)
            path = market._save_package(package_id, data)
        await market._serve_paid_blob(offer)
        return {"package_id": package_id, "path": str(path)}

    async def _ask_first(self, offer: Any, first_providers: list[str]) -> dict[str, bool]:
        """Ask each of ``first_providers`` alone for ``offer``'s package before the market's
        own download does: per provider, whether its bytes were refused (the download
        failed on its content ID check and penalized it, or it was banned already)."""
        from bitterbot.node.market import BAN_THRESHOLD

        market = self._need_market()
        refused: dict[str, bool] = {}
        for peer in [str(p) for p in first_providers]:
            before = market.penalties().get(peer, 0)
            try:
                await market.download(offer.entry.package_id, [peer], offer.entry.size)
            except NetworkError:
                pass  # every byte it sent was refused; the market penalized it (or skipped it)
            after = market.penalties().get(peer, 0)
            refused[peer] = after > before or before >= BAN_THRESHOLD
        return refused

    async def action_market_install(
        self, name: str, first_providers: list[str], expression: str
    ) -> dict[str, Any]:
        """Install free ``name`` from the network and run it: the altering ``first_providers``
        are asked first, then :meth:`Market.fetch` downloads and verifies as a node does.

        Returns the content ID of the bytes that were actually installed (recomputed here,
        independently of the market's own check) and the skill's output.
        """
        market = self._need_market()
        started = time.perf_counter()
        refused = await self._ask_first(await market.resolve(str(name)), first_providers)
        fetched = await market.fetch(str(name))
        downloaded_ms = (time.perf_counter() - started) * 1000
        data = Path(fetched["path"]).read_bytes()
        installed = await self._install_and_run(data, str(name), str(expression))
        return {
            **installed,
            "refused_first": refused,
            "download_ms": downloaded_ms,
            "total_ms": (time.perf_counter() - started) * 1000,
            "penalties": market.penalties(),
        }

    async def _install_and_run(self, data: bytes, name: str, expression: str) -> dict[str, Any]:
        from bitterbot.agent.skills import accept_declared
        from bitterbot.protocol.skillpkg import content_id, read_package

        market = self._need_market()
        installed_id = content_id(read_package(data, market.limits).archive)
        manager = await trio.to_thread.run_sync(self._skill_manager)
        try:
            await trio.to_thread.run_sync(manager.install, data, accept_declared)
            out = await manager.run(name, expression)
        finally:
            manager.close()
        return {"installed_id": installed_id, "output": out.text.strip()}

    async def action_market_buy_install(
        self, name: str, max_price: int, first_providers: list[str], expression: str
    ) -> dict[str, Any]:
        """``skill install NAME --max-price N`` for a paid skill, then run it.

        The altering ``first_providers`` are asked for the encrypted package first (their
        bytes must be refused); :meth:`Market.fetch` then checks the price, downloads,
        buys over a payment channel to the catalog's seller, unlocks and verifies.
        A refusal (price over ``max_price``, ...) is returned as ``{"ok": False, "code"}``.
        ``paid`` is what this node's channels to the seller paid during the call.
        """
        market = self._need_market()
        started = time.perf_counter()
        offer = await market.resolve(str(name))
        seller, price = offer.entry.seller, offer.entry.price
        paid_before = await self.action_paid_to(seller)  # type: ignore[attr-defined]
        out: dict[str, Any] = {"ok": False, "price": price, "seller": seller}
        try:
            if price <= int(max_price) and not market.path_for(offer.entry.package_id).is_file():
                out["refused_first"] = await self._ask_first(offer, first_providers)
            fetched = await market.fetch(str(name), max_price=int(max_price))
            out["bought"] = fetched["paid"]
            out["path"] = fetched["path"]
            data = Path(fetched["path"]).read_bytes()
            out.update(await self._install_and_run(data, str(name), str(expression)))
            out["ok"] = True
        except BitterbotError as exc:
            out.update(code=exc.code, error=f"{exc.message} ({exc.hint})")
        out["paid"] = await self.action_paid_to(seller) - paid_before  # type: ignore[attr-defined]
        out["total_ms"] = (time.perf_counter() - started) * 1000
        return out

    async def action_market_buy_again(self, name: str, max_price: int) -> dict[str, Any]:
        """Buy ``name`` again (a retried install): must deliver the license without paying."""
        market = self._need_market()
        offer = await market.resolve(str(name))
        paid_before = await self.action_paid_to(offer.entry.seller)  # type: ignore[attr-defined]
        fetched = await market.fetch(str(name), max_price=int(max_price))
        paid = await self.action_paid_to(offer.entry.seller) - paid_before  # type: ignore[attr-defined]
        return {"id": fetched["id"], "paid": paid, "licensed": fetched["paid"] is not None}

    async def action_market_run_unlicensed(
        self, name: str, leaked_path: str, expression: str
    ) -> list[dict[str, Any]]:
        """Try to use paid ``name`` without a license, two ways: decrypt the encrypted package
        this node holds, and run a decrypted copy leaked by a buyer (``leaked_path``, read
        from disk: simnet nodes share a machine). Each must be refused (``license_missing``)."""
        from bitterbot.agent.skills import accept_declared

        market = self._need_market()
        offer = await market.resolve(str(name))
        blob = market.path_for(offer.entry.package_id).read_bytes()
        attempts: list[dict[str, Any]] = []
        try:
            self.pay.unlock_package(name, offer.entry.version, blob, offer.publisher)  # type: ignore[attr-defined]
            attempts.append({"attempt": "unlock", "refused": False, "code": ""})
        except BitterbotError as exc:
            attempts.append({"attempt": "unlock", "refused": True, "code": exc.code})
        leaked = Path(str(leaked_path)).read_bytes()
        manager = await trio.to_thread.run_sync(self._skill_manager)
        try:
            await trio.to_thread.run_sync(manager.install, leaked, accept_declared)
            out = await manager.run(str(name), str(expression))
            attempts.append({"attempt": "run", "refused": False, "output": out.text.strip()})
        except BitterbotError as exc:
            attempts.append({"attempt": "run", "refused": True, "code": exc.code})
        finally:
            manager.close()
        return attempts
