"""The skill manager: install, consent, grants, versions, import, run (built-ins included)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitterbot.agent.sandbox import FolderGrant, Sandbox
from bitterbot.agent.skills import (
    BUILTIN_DIR,
    ConsentRequest,
    MemoryRecords,
    SkillManager,
    accept_declared,
    render_prompt,
)
from bitterbot.node.config import default_settings
from bitterbot.protocol.errors import BitterbotError, NotFoundError, SandboxViolation, SkillError
from bitterbot.protocol.identity import Identity
from bitterbot.protocol.skillpkg import build_package, sign_package

NOW = 1_800_000_000_000


def package(
    identity: Identity,
    version: str = "1.0.0",
    *,
    name: str = "demo",
    prompt: str = "Answer briefly: {{input}}",
    perms: str = "",
    extra: dict[str, bytes] | None = None,
    entry: str | None = None,
) -> bytes:
    toml = f'version = "{version}"\nprice = 3\nexamples = ["do the demo"]\n'
    if entry:
        toml += f'entry = "{entry}"\n'
    files = {
        "SKILL.md": f"---\nname: {name}\ndescription: Demo skill.\n---\n{prompt}\n".encode(),
        "bitterbot.toml": (toml + "[permissions]\n" + perms).encode(),
        **(extra or {}),
    }
    return sign_package(build_package(files), identity, NOW).to_bytes()


def never(_request: ConsentRequest) -> bool:
    raise AssertionError("consent was asked although nothing changed")


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[SkillManager]:
    # the demo skill has a price: this runtime holds a license for everything
    m = SkillManager(tmp_path / "skills", MemoryRecords(), license_check=lambda record: None)
    yield m
    m.close()


async def test_builtins_install_and_the_calculator_runs(manager: SkillManager) -> None:
    installed = {r["name"] for r in manager.install_builtins()}
    assert installed == {"calculator", "file-search", "summarize"}
    assert manager.install_builtins() == []  # already up to date: nothing rewritten
    out = await manager.run("calculator", "convert 3 kg to lb")
    assert out.kind == "wasm" and out.text.strip() == "3 kg = 6.6138678655 lb"
    calc = manager.get("calculator")
    assert calc["source"] == "builtin" and calc["granted"]["files"] == "none"
    assert len(calc["examples"]) >= 5
    intents = {i.name: i for i in manager.intents()}
    assert set(intents) == {"calculator", "file-search", "summarize"}
    assert "convert 5 km to miles" in intents["calculator"].utterances()


async def test_file_search_needs_a_granted_folder(manager: SkillManager, tmp_path: Path) -> None:
    manager.install_builtins()
    with pytest.raises(SkillError, match="no folder granted"):
        await manager.run("file-search", "invoice")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "march.txt").write_text("Invoice 17 from ACME, due 2026-04-01")
    manager.grant_folder("file-search", docs)
    out = await manager.run("file-search", "find the ACME invoice")
    assert f"{docs.resolve()}/march.txt:1: Invoice 17 from ACME" in out.text
    with pytest.raises(SandboxViolation, match="read-only"):
        manager.grant_folder("file-search", docs, write=True)
    with pytest.raises(SandboxViolation):
        manager.grant_folder("calculator", docs)
    with pytest.raises(SandboxViolation):
        await manager.run("calculator", "1+1", folders=[FolderGrant(docs)])


async def test_prompt_skill_renders_its_template_through_generate(manager: SkillManager) -> None:
    manager.install_builtins()
    seen: list[tuple[str, int]] = []

    async def generate(prompt: str, max_tokens: int) -> str:
        seen.append((prompt, max_tokens))
        return "- point one"

    out = await manager.run(
        "summarize", "The meeting moved to Friday.", generate=generate, max_tokens=64
    )
    assert out.kind == "prompt" and out.text == "- point one"
    prompt, max_tokens = seen[0]
    assert max_tokens == 64
    assert "Text:\nThe meeting moved to Friday.\n" in prompt and "{{input}}" not in prompt
    assert not prompt.startswith("---")  # front matter is not sent to the model
    with pytest.raises(SkillError) as err:
        await manager.run("summarize", "x")
    assert err.value.code == "model_unavailable"


def test_render_prompt_appends_the_request_when_no_placeholder() -> None:
    assert render_prompt("Be terse.", "hi") == "Be terse.\n\nUser request:\nhi\n"


def test_install_shows_permissions_and_prompt_and_grants_exactly_that(
    manager: SkillManager,
) -> None:
    shown: list[ConsentRequest] = []
    perms = 'llm_tokens = 50\nnet = ["api.example.com"]\n'
    data = package(Identity.generate(), prompt="Be nice\u2066 secretly\u2069", perms=perms)
    record = manager.install(data, lambda r: shown.append(r) or True)
    text = shown[0].text()
    assert "Install skill demo 1.0.0" in text
    assert "generate text with your local model (up to 50 tokens a run)" in text
    assert "fetch web pages from api.example.com" in text
    assert "<U+2066 LEFT-TO-RIGHT ISOLATE>" in text and "<U+2069 POP DIRECTIONAL ISOLATE>" in text
    assert record["granted"] == record["permissions"]
    assert record["granted"] == {
        "llm_tokens": 50,
        "docs": False,
        "files": "none",
        "net": ["api.example.com"],
    }
    assert record["price"] == 3 and record["examples"] == ["do the demo"]


def test_update_with_same_prompt_and_permissions_keeps_the_grant(manager: SkillManager) -> None:
    me = Identity.generate()
    first = manager.install(package(me, "1.0.0"), accept_declared)
    second = manager.install(package(me, "1.0.1"), never)
    assert second["version"] == "1.0.1" and second["id"] != first["id"]
    assert not Path(first["dir"]).exists() and Path(second["dir"]).is_dir()
    assert manager.install(package(me, "1.0.1"), never)["id"] == second["id"]  # reinstall


def test_refused_consent_installs_nothing(manager: SkillManager) -> None:
    with pytest.raises(SkillError) as err:
        manager.install(package(Identity.generate()), lambda _r: False)
    assert err.value.code == "consent_refused"
    assert manager.installed() == [] and not any(manager.root.glob("*/SKILL.md"))


def test_same_version_with_other_content_is_refused(manager: SkillManager) -> None:
    me = Identity.generate()
    manager.install(package(me, "1.0.0"), accept_declared)
    with pytest.raises(Exception, match="different content") as err:
        manager.install(package(me, "1.0.0", prompt="changed"), accept_declared)
    assert err.value.code == "version_reused"


def test_name_taken_by_another_publisher(manager: SkillManager) -> None:
    manager.install(package(Identity.generate()), accept_declared)
    with pytest.raises(SkillError) as err:
        manager.install(package(Identity.generate()), accept_declared)
    assert err.value.code == "name_taken"


def test_import_plain_agent_skill_drops_scripts(manager: SkillManager, tmp_path: Path) -> None:
    folder = tmp_path / "pdf-helper"
    (folder / "scripts").mkdir(parents=True)
    (folder / "references").mkdir()
    (folder / "SKILL.md").write_text(
        "---\nname: pdf-helper\ndescription: Helps with PDFs.\nlicense: MIT\n"
        "metadata:\n  author: someone\n---\n# PDF\nRun scripts/extract.py first.\n"
    )
    marker = tmp_path / "ran"
    (folder / "scripts" / "extract.py").write_text(f"open({str(marker)!r}, 'w')\n")
    (folder / "references" / "notes.md").write_text("notes")
    (folder / "bitterbot.toml").write_text(
        'version = "9.0.0"\n[permissions]\nnet = ["evil.test"]\n'
    )
    record = manager.import_folder(folder, accept_declared)
    assert record["kind"] == "prompt" and record["source"] == "import"
    assert record["granted"] == {"llm_tokens": 0, "docs": False, "files": "none", "net": []}
    installed = Path(record["dir"])
    assert (installed / "references" / "notes.md").exists()
    assert not (installed / "scripts").exists() and not (installed / "bitterbot.toml").exists()
    assert not marker.exists()


async def test_wasm_skill_gets_llm_with_a_token_budget(manager: SkillManager) -> None:
    calls: list[int] = []

    async def generate(prompt: str, max_tokens: int) -> str:
        calls.append(max_tokens)
        return f"[{prompt}]"

    # asks for 8 tokens three times with a budget of 10: 8, then 2, then -1 (spent)
    module = b"""(module
      (import "bitterbot" "llm_generate" (func $g (param i32 i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "abc")
      (func $ask (result i32) (call $g (i32.const 0) (i32.const 3) (i32.const 8) (i32.const 100) (i32.const 50)))
      (func (export "_start") (local $n i32)
        (drop (call $ask)) (drop (call $ask))
        (local.set $n (call $ask))
        (i32.store8 (i32.const 105) (i32.add (i32.const 48) (i32.sub (i32.const 0) (local.get $n))))
        (i32.store (i32.const 300) (i32.const 100)) (i32.store (i32.const 304) (i32.const 6))
        (drop (call $w (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 320)))))"""
    data = package(
        Identity.generate(),
        perms="llm_tokens = 10\n",
        extra={"skill.wasm": module},
        entry="skill.wasm",
    )
    manager.install(data, accept_declared)
    out = await manager.run("demo", "", generate=generate)
    assert calls == [8, 2]
    assert out.text == "[abc]1" and out.tokens_used == 10  # "1": the third call got -1


async def test_locally_tampered_module_is_not_run(manager: SkillManager) -> None:
    manager.install_builtins()
    wasm = Path(manager.get("calculator")["dir"]) / "calculator.wasm"
    wasm.write_bytes(wasm.read_bytes() + b"\x00")
    with pytest.raises(SkillError) as err:
        await manager.run("calculator", "1+1")
    assert err.value.code == "tampered_install"


def test_unknown_skill_is_not_found(manager: SkillManager) -> None:
    with pytest.raises(NotFoundError):
        manager.get("nope")


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/lib/rustlib/wasm32-wasi").is_dir() or not Path("/usr/bin/rustc").exists(),
    reason="needs Debian's rustc with libstd-rust-dev-wasm32 (see agent/builtin/build.sh)",
)
def test_rebuilding_the_builtins_gives_the_committed_working_modules(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BUILTIN_DIR / "build.sh"), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    sandbox = Sandbox()
    try:
        for skill in ("calculator", "file-search"):
            built = (tmp_path / f"{skill}.wasm").read_bytes()
            assert built == (BUILTIN_DIR / skill / f"{skill}.wasm").read_bytes()
        calc = sandbox.run((tmp_path / "calculator.wasm").read_bytes(), input="6*7")
        assert calc.stdout == b"6*7 = 42\n"
    finally:
        sandbox.close()


@pytest.mark.model
@pytest.mark.slow
async def test_summarize_runs_on_the_embedded_local_model(
    manager: SkillManager, tmp_path: Path
) -> None:
    from bitterbot.agent.runtime import AgentRuntime
    from bitterbot.agent.skills import runtime_generate
    from bitterbot.node.config import load_settings

    manager.install_builtins()
    runtime = AgentRuntime(load_settings(tmp_path / "home", env={}), home=tmp_path / "home")
    try:
        out = await manager.run(
            "summarize",
            "Alice moved the project meeting from Monday to Friday at 10:00 because Bob is travelling.",
            generate=runtime_generate(runtime),
            max_tokens=60,
        )
    finally:
        await runtime.aclose()
    assert out.kind == "prompt" and len(out.text.strip()) > 10
    assert any(word in out.text for word in ("Friday", "meeting", "Alice", "Bob"))


async def test_prompt_skill_with_a_bundled_model_uses_it(
    manager: SkillManager, tmp_path: Path
) -> None:
    from bitterbot.agent.fake_backend import FakeBackend
    from bitterbot.agent.runtime import AgentRuntime
    from bitterbot.agent.skills import runtime_generate

    gguf = b"GGUF" + bytes(60)
    data = sign_package(
        build_package(
            {
                "SKILL.md": b"---\nname: bundled\ndescription: Has its own model.\n---\nQ: {{input}}\n",
                "bitterbot.toml": b'version = "1.0.0"\nmodel = "tiny.gguf"\n',
                "tiny.gguf": gguf,
            }
        ),
        Identity.generate(),
        NOW,
    ).to_bytes()
    manager.install(data, accept_declared)
    path = manager.model_path("bundled")
    assert path is not None and path.read_bytes() == gguf
    default, own = FakeBackend("default", replies=["wrong"]), FakeBackend("own", replies=["right"])
    runtime = AgentRuntime(
        default_settings({"agent.model": "default"}), backends={"default": default, str(path): own}
    )
    out = await manager.run("bundled", "hi", generate=runtime_generate(runtime, str(path)))
    assert out.text == "right" and not default.calls and len(own.calls) == 1


async def test_a_paid_skill_runs_only_when_the_license_check_passes(tmp_path: Path) -> None:
    from bitterbot.protocol.errors import PaymentError

    def no_license(record: dict) -> None:
        raise PaymentError(f"no license for {record['name']}", code="license_missing")

    for check, expected in ((None, "cannot check licenses"), (no_license, "no license")):
        m = SkillManager(tmp_path / f"skills-{expected[:2]}", MemoryRecords(), license_check=check)
        try:
            m.install(package(Identity.generate()), accept_declared)
            with pytest.raises(BitterbotError, match=expected):
                await m.run("demo", "hi")
        finally:
            m.close()
