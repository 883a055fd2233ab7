"""Cloud fallback end to end, against an OpenAI-compatible server this test runs on loopback.

The server records every request body it receives. The tests assert what reached it: no
planted personal data, placeholders that come back restored, an audit log (real LMDB)
that matches the received bytes, and nothing at all under policy ``never``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bitterbot.agent.backends import GenerateOptions
from bitterbot.agent.cloud_backend import CloudBackend, CloudError
from bitterbot.agent.escalation import ASK, AUTO, NEVER, Escalation
from bitterbot.agent.fake_backend import FakeBackend
from bitterbot.agent.orchestrator import CloudPreview, Orchestrator
from bitterbot.node.config import default_settings
from bitterbot.node.privacy_log import PrivacyLog
from bitterbot.node.store import Store
from bitterbot.protocol.errors import ModelError

SECRETS = {
    "email": "maria.gonzalez@example.org",
    "phone": "+1 415 555 0134",
    "card": "4539 1488 0343 6467",
    "iban": "DE89 3704 0044 0532 0130 00",
    "name": "Maria Gonzalez",
}
HARD_TASK = (
    f"Write a detailed cover letter for Maria Gonzalez ({SECRETS['email']}, "
    f"phone {SECRETS['phone']}). Her refund goes to {SECRETS['iban']}; never mention "
    f"the card {SECRETS['card']}."
)


@dataclass
class Recorder:
    bodies: list[bytes] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.bodies.append(body)
            rec.auth.append(self.headers.get("Authorization", ""))
            request = json.loads(body)
            user = request["messages"][-1]["content"]
            # answer by quoting the placeholders the request carried, like a real model would
            placeholders = re.findall(r"\[[A-Z]+_\d+\]", user)
            reply = {
                "model": request["model"],
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": "Dear " + " ".join(placeholders),
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30},
            }
            data = json.dumps(reply).encode()
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", rec
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[PrivacyLog]:
    store = Store(tmp_path / "db")
    yield PrivacyLog(store)
    store.close()


def make(url: str, log: PrivacyLog, policy: str, **kwargs: Any) -> Orchestrator:
    escalation = Escalation(
        cloud_url=url, cloud_model="gpt-4o-mini", policy=policy, ledger=log,
        on_decision=log.record_decision,
    )  # fmt: skip
    return Orchestrator(
        escalation=escalation,
        local=FakeBackend(replies=["local answer"]),
        cloud=CloudBackend(url, "gpt-4o-mini", "sk-test-secret"),
        audit=log,
        **kwargs,
    )


async def test_auto_escalation_sends_no_planted_pii_and_restores_the_answer(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    url, rec = server
    orch = make(url, log, AUTO)
    result = await orch.ask(HARD_TASK)

    assert result.route == "cloud"
    assert "task beyond the local model" in result.reason
    assert len(rec.bodies) == 1
    received = rec.bodies[0].decode()
    for secret in SECRETS.values():
        assert secret not in received
        assert secret.replace(" ", "") not in received.replace(" ", "")
    assert "gonzalez" not in received.lower()
    # the answer the user sees has the originals back
    assert SECRETS["name"] in result.answer
    assert SECRETS["email"] in result.answer
    assert "[" not in result.answer
    assert result.redacted_entities["EMAIL"] == 1 and result.redacted_entities["IBAN"] == 1
    assert rec.auth == ["Bearer sk-test-secret"]


async def test_audit_log_matches_the_bytes_the_server_received(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    url, rec = server
    orch = make(url, log, AUTO)
    first = await orch.ask(HARD_TASK)
    second = await orch.ask("Compare the economies of two countries in detail please")
    entries = log.entries()
    assert len(entries) == len(rec.bodies) == 2
    for entry, body in zip(reversed(entries), rec.bodies, strict=True):
        assert entry["bytes_sent"] == len(body)
        assert entry["payload_sha256"] == hashlib.sha256(body).hexdigest()
        assert entry["model"] == "gpt-4o-mini" and entry["provider"] == url
    assert first.cloud_bytes + second.cloud_bytes == log.total_bytes()
    assert entries[-1]["entity_counts"]["EMAIL"] == 1
    # nothing secret is stored in the log either
    assert "sk-test-secret" not in json.dumps(entries)
    assert SECRETS["email"] not in json.dumps(entries)
    # spend is tracked in integer micro-USD: 120 in + 30 out at 150/600 per 1k tokens
    assert log.spent(orch.escalation.today()) == 2 * 36
    assert first.cost_microusd == 36


async def test_policy_never_sends_nothing(server: tuple[str, Recorder], log: PrivacyLog) -> None:
    url, rec = server
    orch = make(url, log, NEVER)
    result = await orch.ask(HARD_TASK)
    assert result.route == "local-llm"
    assert result.answer == "local answer"
    assert "the cloud policy is never" in result.reason
    assert rec.bodies == [] and log.entries() == [] and result.cloud_bytes == 0
    assert log.decisions()[0]["escalate"] is False


async def test_unconfigured_cloud_stays_local(log: PrivacyLog) -> None:
    orch = Orchestrator(
        escalation=Escalation(policy=AUTO), local=FakeBackend(replies=["here"]), audit=log
    )
    result = await orch.ask(HARD_TASK)
    assert result.route == "local-llm" and log.entries() == []
    assert any("no cloud provider is configured" in s for s in result.steps)


async def test_policy_ask_shows_what_would_be_sent_and_respects_no(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    url, rec = server
    orch = make(url, log, ASK)
    seen: list[CloudPreview] = []

    async def say_no(preview: CloudPreview) -> bool:
        seen.append(preview)
        return False

    result = await orch.ask(HARD_TASK, confirm=say_no)
    assert result.route == "local-llm" and rec.bodies == []
    shown = json.dumps(seen[0].messages)
    assert SECRETS["email"] not in shown and "[EMAIL_1]" in shown
    assert seen[0].bytes > 0 and seen[0].estimated_microusd > 0

    async def say_yes(preview: CloudPreview) -> bool:
        return True

    result = await orch.ask(HARD_TASK, confirm=say_yes)
    assert result.route == "cloud"
    assert len(rec.bodies) == 1 and len(rec.bodies[0]) == seen[0].bytes


async def test_unsure_local_answer_escalates_after_the_fact(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    url, rec = server
    orch = make(url, log, AUTO)
    orch.local = FakeBackend(replies=["I'm not sure, sorry."])
    result = await orch.ask("who is the mayor of Springfield, Oregon")
    assert result.route == "cloud"
    assert "unsure" in result.reason
    assert len(rec.bodies) == 1


async def test_history_stays_home_unless_opted_in(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    url, rec = server
    history = [{"role": "user", "content": "my blood test results came back positive"}]
    orch = make(url, log, AUTO)
    await orch.ask(HARD_TASK, history)
    assert "blood test" not in rec.bodies[-1].decode()
    orch.send_history = True
    await orch.ask(HARD_TASK, history)
    assert "blood test" in rec.bodies[-1].decode()


async def test_daily_budget_cap_blocks_escalation(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    url, rec = server
    orch = make(url, log, AUTO)
    estimate = orch.escalation.estimate(len(HARD_TASK) // 4 + 1, orch.options.max_tokens)
    orch.escalation.daily_budget_microusd = estimate + 10  # room for one call, not two
    first = await orch.ask(HARD_TASK)
    second = await orch.ask(HARD_TASK)
    assert first.route == "cloud" and second.route == "local-llm"
    assert any("budget" in s for s in second.steps)
    assert len(rec.bodies) == 1


async def test_provider_errors_are_typed_and_the_key_is_hidden(
    server: tuple[str, Recorder],
) -> None:
    url, rec = server
    rec.status = 401
    backend = CloudBackend(url, "m", "sk-hidden")
    with pytest.raises(CloudError) as err:
        await backend.generate([{"role": "user", "content": "hi"}], GenerateOptions())
    assert err.value.code == "cloud_auth"
    assert "sk-hidden" not in repr(backend) and "sk-hidden" not in str(err.value)
    await backend.aclose()
    down = CloudBackend("http://127.0.0.1:9/v1", "m")
    with pytest.raises(ModelError):
        await down.generate([{"role": "user", "content": "hi"}], GenerateOptions())
    await down.aclose()


async def test_node_wiring_from_settings_applies_terms_and_policy(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    url, rec = server
    settings = default_settings(
        {
            "cloud.url": url,
            "cloud.model": "gpt-4o-mini",
            "cloud.api_key": "",
            "cloud.policy": "auto",
            "cloud.daily_budget_microusd": 1_000_000,
            "cloud.send_history": False,
            "cloud.max_local_words": 5,
            "cloud.escalate_on_length": False,
            "privacy.terms": ["project bluebird"],
        }
    )
    orch = Orchestrator.from_settings(
        settings, local=FakeBackend(replies=["ok"]), audit=log, ledger=log,
        on_decision=log.record_decision,
    )  # fmt: skip
    result = await orch.ask("what should the next milestone of project bluebird be")
    assert result.route == "cloud" and "long request" in result.reason  # 9 words > 5
    assert "bluebird" not in rec.bodies[0].decode().lower()
    assert "project bluebird" in result.answer
    assert log.decisions()[0]["escalate"] is True
    off = Orchestrator.from_settings({**settings, "cloud.url": ""}, local=FakeBackend())
    assert off.cloud is None
    assert orch.gate.use_ner is True  # privacy.ner's default
    no_ner = Orchestrator.from_settings({**settings, "privacy.ner": False}, local=FakeBackend())
    assert no_ner.gate.use_ner is False


async def test_a_skill_answers_without_any_model_or_cloud(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    from bitterbot.agent.encoder import get_encoder
    from bitterbot.agent.router import Router, SkillIntent

    url, rec = server
    router = Router(get_encoder())
    router.add_skill(
        SkillIntent(
            "currency",
            "convert amounts between currencies",
            ["convert 100 dollars to euros", "how many yen is 50 pounds", "usd to chf rate"],
        )
    )
    calls: list[tuple[str, str]] = []

    async def run_skill(name: str, text: str) -> str:
        calls.append((name, text))
        return "21.40 USD"

    orch = make(url, log, AUTO, router=router, skill_runner=run_skill)
    orch.local = FakeBackend(replies=["should not be used"])
    result = await orch.ask("convert 20 euros to dollars")
    assert result.route == "currency" and result.answer == "21.40 USD"
    assert calls == [("currency", "convert 20 euros to dollars")]
    assert rec.bodies == [] and result.cloud_bytes == 0
    general = await orch.ask("write a detailed essay about rivers")
    assert general.route == "cloud" and any("router:" in s for s in general.steps)


async def test_a_failing_provider_falls_back_to_the_local_model_and_is_still_audited(
    server: tuple[str, Recorder], log: PrivacyLog
) -> None:
    url, rec = server
    rec.status = 500
    orch = make(url, log, AUTO)
    result = await orch.ask(HARD_TASK)
    assert result.route == "local-llm" and result.answer == "local answer"
    assert any("cloud failed" in s for s in result.steps)
    assert len(rec.bodies) == 1 and log.entries()[0]["bytes_sent"] == len(rec.bodies[0])
    assert log.spent(orch.escalation.today()) == 0  # nothing charged for a failed call
