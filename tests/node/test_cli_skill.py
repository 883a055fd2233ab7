"""`bitterbot skill|key` and `bench sandbox` as a user runs them, and the skills API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bitterbot.node.api.app import build_app
from bitterbot.node.config import load_settings
from bitterbot.node.context import NodeContext
from bitterbot.node.home import Home
from bitterbot.node.skills_store import LmdbSkillRecords
from bitterbot.node.store import Store
from bitterbot.protocol.identity import Identity
from bitterbot.protocol.skillpkg import build_package, sign_package


def bb(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BITTERBOT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", "from bitterbot.node.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_author_packs_signs_and_a_user_installs_and_runs(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    key = ok(bb("key", "new", home=home)).strip()
    assert key.startswith("ed25519:")
    assert json.loads(ok(bb("key", "show", "--json", home=home)))["public_key"] == key
    ok(bb("skill", "new", "greeter", home=home, cwd=work))
    assert f'publisher = "{key}"' in (work / "greeter" / "bitterbot.toml").read_text()

    first = json.loads(ok(bb("skill", "pack", "greeter", "--json", home=home, cwd=work)))
    again = json.loads(ok(bb("skill", "pack", "greeter", "--json", home=home, cwd=work)))
    assert first["id"] == again["id"] and first["id"].startswith("bafkrei") and first["signed"]
    pkg = work / first["path"]

    refused = bb("skill", "install", str(pkg), home=home)  # no terminal, no --yes
    assert refused.returncode == 1
    assert "it may:" in refused.stderr and "needs your approval" in refused.stderr
    installed = json.loads(ok(bb("skill", "install", str(pkg), "--yes", "--json", home=home)))
    assert installed["name"] == "greeter" and installed["publisher"] == key

    names = {row["name"] for row in json.loads(ok(bb("skill", "list", "--json", home=home)))}
    assert names == {"greeter", "calculator", "file-search", "summarize"}
    shown = json.loads(ok(bb("skill", "show", "greeter", "--json", home=home)))
    assert "{{input}}" in shown["prompt"]

    run = json.loads(ok(bb("skill", "run", "calculator", "6 * 7", "--json", home=home)))
    assert run["output"].strip() == "6 * 7 = 42" and run["kind"] == "wasm"

    ok(bb("skill", "remove", "greeter", home=home))
    by_id = json.loads(ok(bb("skill", "install", first["id"], "--yes", "--json", home=home)))
    assert by_id["id"] == first["id"]  # the verified package was kept by ID

    toml = work / "greeter" / "bitterbot.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', 'version = "0.0.1"'))
    old = json.loads(ok(bb("skill", "pack", "greeter", "--json", home=home, cwd=work)))
    down = bb("skill", "install", str(work / old["path"]), "--yes", home=home)
    assert down.returncode == 1 and "downgrade refused" in down.stderr
    assert "--force" in down.stderr


def test_import_of_a_skill_past_the_spec_limits_warns_and_installs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = tmp_path / "long-desc"
    folder.mkdir()
    desc = "Drafts replies to customer e-mails in the company's tone. " * 20
    (folder / "SKILL.md").write_text(f"---\nname: long-desc\ndescription: {desc}\n---\nBe kind.\n")
    shown = bb("skill", "import", str(folder), "--yes", home=home)
    assert shown.returncode == 0, shown.stderr
    assert "warning: description is" in shown.stderr and "imported long-desc" in shown.stdout
    listed = json.loads(ok(bb("skill", "list", "--json", home=home)))
    assert [r["description"] for r in listed if r["name"] == "long-desc"] == [desc.strip()]
    again = json.loads(
        ok(bb("skill", "import", str(folder), "--yes", "--force", "--json", home=home))
    )
    assert again["name"] == "long-desc" and len(again["warnings"]) == 1


def test_import_and_errors_are_printed_once_without_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = tmp_path / "plain"
    (folder / "scripts").mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        "---\nname: plain\ndescription: A public skill.\n---\nBe brief.\n"
    )
    (folder / "scripts" / "run.sh").write_text("touch /tmp/should-not-run\n")
    imported = json.loads(ok(bb("skill", "import", str(folder), "--yes", "--json", home=home)))
    assert imported["kind"] == "prompt" and imported["source"] == "import"
    missing = bb("skill", "run", "nope", "x", home=home)
    assert missing.returncode == 1
    assert "no skill named 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    ok(bb("key", "new", home=home))
    unsigned = json.loads(
        ok(bb("skill", "pack", str(folder), "--unsigned", "--json", home=home, cwd=tmp_path))
    )
    path = str(tmp_path / unsigned["path"])
    not_signed = bb("skill", "install", path, "--yes", "--force", home=home)
    assert not_signed.returncode == 1 and "not signed" in not_signed.stderr
    assert ok(bb("skill", "sign", path, home=home)).strip() == unsigned["id"]
    assert (
        json.loads(ok(bb("skill", "install", path, "--yes", "--force", "--json", home=home)))[
            "source"
        ]
        == "package"
    )
    unsigned_dir = tmp_path / "nokey"
    unsigned_dir.mkdir()
    nokey = bb("skill", "pack", str(folder), home=tmp_path / "fresh", cwd=unsigned_dir)
    assert nokey.returncode == 1 and "bitterbot key new" in nokey.stderr


def test_bench_sandbox_prints_json_and_meets_targets(tmp_path: Path) -> None:
    data = json.loads(ok(bb("bench", "sandbox", "--runs", "10", home=tmp_path)))
    assert data["targets"] == {
        "instantiate_le_20ms": True,
        "runaway_within_deadline_plus_50ms": True,
    }
    assert 0 < data["instantiate_cached_ms_median"] <= 20
    assert 0 <= data["runaway_overshoot_ms_max"] <= 50


@pytest.fixture
async def api(tmp_path: Path):
    settings = load_settings(tmp_path / "home", env={})
    home = Home(tmp_path / "home").ensure()
    store = Store(home.db_path)
    ctx = NodeContext(settings=settings, home=home, store=store, identity=home.identity())
    token = "t" * 40
    transport = httpx.ASGITransport(app=build_app(ctx, token))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client, ctx
    if ctx.skills is not None:
        ctx.skills.close()
    store.env.close()


async def test_api_lists_runs_installs_and_removes_skills(api, tmp_path: Path) -> None:
    client, ctx = api
    listed = await client.get("/v1/skills")
    assert listed.status_code == 200
    assert {r["name"] for r in listed.json()} == {"calculator", "file-search", "summarize"}

    ran = await client.post("/v1/skills/calculator/run", json={"input": "2^8"})
    assert ran.status_code == 200 and ran.json()["output"].strip() == "2^8 = 256"
    bad = await client.post("/v1/skills/calculator/run", content=b"{nope")
    assert bad.status_code == 400

    files = {
        "SKILL.md": b"---\nname: api-demo\ndescription: Demo.\n---\nHi {{input}}\n",
        "bitterbot.toml": b'version = "1.0.0"\n',
    }
    pkg = sign_package(build_package(files), Identity.generate(), 1).to_bytes()
    no_consent = await client.post("/v1/skills/install", content=pkg)
    assert no_consent.status_code == 400 and no_consent.json()["error"]["code"] == "consent_needed"
    created = await client.post("/v1/skills/install?accept=declared", content=pkg)
    assert created.status_code == 201 and created.json()["name"] == "api-demo"
    tampered = bytearray(pkg)
    tampered[tampered.index(b"Hi {{")] ^= 1
    rejected = await client.post("/v1/skills/install?accept=declared", content=bytes(tampered))
    assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "hash_mismatch"

    shown = await client.get("/v1/skills/api-demo")
    assert shown.json()["prompt"].endswith("Hi {{input}}\n")
    assert (await client.delete("/v1/skills/api-demo")).status_code == 200
    assert (await client.get("/v1/skills/api-demo")).status_code == 404
    # the records live in the node's LMDB
    assert {r["name"] for r in LmdbSkillRecords(ctx.store).all()} == {
        "calculator",
        "file-search",
        "summarize",
    }


async def test_api_install_applies_the_reputation_gate_like_the_cli(api, tmp_path: Path) -> None:
    """The bug of issue 15: ``POST /v1/skills/install`` used to skip the reputation gate."""
    from bitterbot.node.rep.service import reputation_of
    from bitterbot.node.skills_store import packages_dir

    client, ctx = api
    files = {
        "SKILL.md": b"---\nname: shady\ndescription: Demo.\n---\nHi {{input}}\n",
        "bitterbot.toml": b'version = "1.0.0"\n',
    }
    pkg = sign_package(build_package(files), Identity.generate(), 1)
    reputation_of(ctx).flag(pkg.id, b"\x00" * 32, "it exfiltrates ~/.ssh")  # our own flag

    refused = await client.post("/v1/skills/install?accept=declared", content=pkg.to_bytes())
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "install_refused"
    assert "shady" not in {r["name"] for r in (await client.get("/v1/skills")).json()}
    assert not (packages_dir(ctx.home.path) / f"{pkg.id}.bbskill").exists()

    forced = await client.post(
        "/v1/skills/install?accept=declared&ignore_reputation=1", content=pkg.to_bytes()
    )
    assert forced.status_code == 201, forced.text
    assert forced.json()["name"] == "shady" and forced.json()["seeding"] is None  # no network
    # kept by ID, as a CLI install keeps it, so `skill install ID` and the market find it
    assert (packages_dir(ctx.home.path) / f"{pkg.id}.bbskill").read_bytes() == pkg.to_bytes()


async def test_api_maps_skill_errors_to_4xx_and_missing_parts_to_503(api) -> None:
    client, _ctx = api
    broken = await client.post("/v1/skills/install?accept=declared", content=b"not a package")
    assert 400 <= broken.status_code < 500, broken.text
    market = await client.get("/v1/market/status")
    assert market.status_code == 503 and market.json()["error"]["code"] == "market_not_running"
