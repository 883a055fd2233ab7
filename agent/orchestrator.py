"""The orchestrator: one request in, one answer out, through router, skills, local model,
escalation policy and privacy gate.

    orch = Orchestrator(router=router, local=backend, escalation=escalation,
                        cloud=CloudBackend.from_settings(settings), audit=privacy_log,
                        skill_runner=run_skill)
    result = await orch.ask("convert 20 euros to dollars")
    result.as_dict()  # route, reason, answer, cloud_bytes, redacted_entities, ...

The path of a request:

1. The router picks an installed skill; ``skill_runner(skill, text)`` answers it (route =
   the skill's name). A failing skill falls back to the local model, with the reason.
2. Otherwise the escalation policy looks at the request *before* the local model
   (too long / too hard?) and, if the local model runs, at its answer *after* (empty,
   unsure?). Unless it escalates, the answer is local (route ``local-llm``).
3. Escalation (route ``cloud``): the messages are minimized (current task only unless
   ``send_history``) and redacted; with policy ``ask`` the ``confirm`` callback sees
   exactly the redacted messages and byte count, and a "no" keeps the request local. The
   audit sink records the exact payload before it is sent; the placeholders in the answer
   are restored; the cost is charged to the daily budget.

Every step's reason ends up in ``AskResult.reason`` and ``AskResult.steps``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from bitterbot.agent.backends import Backend, Completion, GenerateOptions, Message
from bitterbot.agent.escalation import SUFFICIENT, Escalation
from bitterbot.agent.privacy import PrivacyGate, Redaction, minimize
from bitterbot.agent.router import CLOUD, LOCAL_LLM, Router
from bitterbot.protocol.errors import BitterbotError, ModelError

#: One redaction at a time: the NER model is shared by every request of the process.
GATE_LIMITER = trio.CapacityLimiter(1)

SkillRunner = Callable[[str, str], Awaitable[str]]


class AuditSink(Protocol):
    def record_request(
        self, *, provider: str, model: str, payload: bytes, entity_counts: Mapping[str, int]
    ) -> Any: ...


class CloudClient(Protocol):
    url: str
    model: str

    def count_tokens(self, messages: Sequence[Message]) -> int: ...

    async def generate_audited(
        self,
        messages: Sequence[Message],
        options: GenerateOptions,
        on_send: Callable[[bytes], None] | None,
    ) -> Completion: ...


@dataclass
class CloudPreview:
    """What would leave the device: shown to the user under policy ``ask``."""

    messages: list[Message]
    bytes: int
    entity_counts: dict[str, int]
    estimated_microusd: int
    provider: str
    model: str


Confirm = Callable[[CloudPreview], Awaitable[bool]]


@dataclass
class AskResult:
    route: str  # a skill name, "local-llm" or "cloud"
    reason: str
    answer: str
    cloud_bytes: int = 0
    redacted_entities: dict[str, int] = field(default_factory=dict)
    model: str = ""
    cost_microusd: int = 0
    latency_ms: float = 0.0
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "reason": self.reason,
            "answer": self.answer,
            "cloud_bytes": self.cloud_bytes,
            "redacted_entities": dict(self.redacted_entities),
            "model": self.model,
            "cost_microusd": self.cost_microusd,
            "latency_ms": round(self.latency_ms, 1),
            "steps": list(self.steps),
        }


@dataclass
class Orchestrator:
    escalation: Escalation
    router: Router | None = None
    local: Backend | None = None
    cloud: CloudClient | None = None
    gate: PrivacyGate = field(default_factory=PrivacyGate)
    skill_runner: SkillRunner | None = None
    audit: AuditSink | None = None
    confirm: Confirm | None = None
    send_history: bool = False
    system_prompt: str | None = None
    options: GenerateOptions = field(default_factory=GenerateOptions)

    @classmethod
    def from_settings(
        cls,
        settings: Mapping[str, Any],
        *,
        local: Backend | None,
        router: Router | None = None,
        skill_runner: SkillRunner | None = None,
        audit: AuditSink | None = None,
        ledger: Any = None,
        on_decision: Callable[[Any], None] | None = None,
        confirm: Confirm | None = None,
    ) -> Orchestrator:
        """The node's wiring: cloud client only when configured, gate with privacy.terms.

        ``ledger``/``on_decision``/``audit`` are normally one
        :class:`bitterbot.node.privacy_log.PrivacyLog`.
        """
        extra: dict[str, Any] = {}
        if ledger is not None:
            extra["ledger"] = ledger
        escalation = Escalation.from_settings(settings, on_decision=on_decision, **extra)
        cloud = None
        if escalation.configured:
            from bitterbot.agent.cloud_backend import CloudBackend

            cloud = CloudBackend.from_settings(settings)
        return cls(
            escalation=escalation,
            router=router,
            local=local,
            cloud=cloud,
            gate=PrivacyGate(
                extra_terms=list(settings["privacy.terms"]), ner=bool(settings["privacy.ner"])
            ),
            skill_runner=skill_runner,
            audit=audit,
            confirm=confirm,
            send_history=bool(settings["cloud.send_history"]),
        )

    async def ask(
        self,
        text: str,
        history: Sequence[Message] = (),
        *,
        snippets: Sequence[str] = (),
        confirm: Confirm | None = None,
    ) -> AskResult:
        start = time.perf_counter()
        result = await self._ask(text, history, snippets, confirm or self.confirm)
        result.latency_ms = (time.perf_counter() - start) * 1000
        return result

    async def _ask(
        self,
        text: str,
        history: Sequence[Message],
        snippets: Sequence[str],
        confirm: Confirm | None,
    ) -> AskResult:
        steps: list[str] = []
        if self.router is not None:
            decision = self.router.route(text)
            steps.append(f"router: {decision.reason}")
            if decision.route not in (LOCAL_LLM, CLOUD) and self.skill_runner is not None:
                try:
                    answer = await self.skill_runner(decision.route, text)
                except BitterbotError as exc:
                    steps.append(f"skill {decision.route!r} failed: {exc.message}")
                else:
                    return AskResult(decision.route, decision.reason, answer, steps=steps)

        before = self.escalation.before_local(
            text, tokens_in=len(text) // 4 + 1, max_tokens_out=self.options.max_tokens
        )
        steps.append(f"escalation before local: {before.reason}")
        if before.escalate:
            sent = await self._cloud(
                text, history, snippets, before.needs_confirmation, confirm, steps
            )
            if sent is not None:
                return sent
        if self.local is None:
            raise ModelError(
                "no local model, and the cloud was not used: " + steps[-1],
                hint="configure agent.model, or a cloud provider with policy ask or auto",
            )
        messages = self._local_messages(text, history, snippets)
        completion = await self.local.generate(messages, self.options)
        after = self.escalation.after_local(
            completion.text,
            completion.finish_reason,
            tokens_in=completion.tokens_in,
            max_tokens_out=self.options.max_tokens,
        )
        steps.append(f"escalation after local: {after.reason}")
        if after.escalate and not before.escalate:
            sent = await self._cloud(
                text, history, snippets, after.needs_confirmation, confirm, steps
            )
            if sent is not None:
                return sent
        # why local: no skill (router), the rule's verdict, and any cloud attempt that failed
        why = [s.split(": ", 1)[1] for s in steps if s.startswith(("router:", "escalation"))]
        why = [w for w in why if w != SUFFICIENT] or [SUFFICIENT]
        why += [s for s in steps if s.startswith("cloud")]
        return AskResult(
            LOCAL_LLM, "; ".join(why), completion.text, model=completion.model, steps=steps
        )

    def _local_messages(
        self, text: str, history: Sequence[Message], snippets: Sequence[str]
    ) -> list[Message]:
        # on the device nothing is minimized: the local model may see the whole history
        return minimize(
            text, history, send_history=True, snippets=snippets, system=self.system_prompt
        )

    async def _cloud(
        self,
        text: str,
        history: Sequence[Message],
        snippets: Sequence[str],
        ask_first: bool,
        confirm: Confirm | None,
        steps: list[str],
    ) -> AskResult | None:
        """Send through the privacy gate; None when the request stays local after all."""
        if self.cloud is None:
            steps.append("cloud: no cloud client configured; staying local")
            return None
        plain = minimize(
            text, history, send_history=self.send_history, snippets=snippets,
            system=self.system_prompt,
        )  # fmt: skip
        # the gate's NER model takes tens of ms (seconds on first load): never on the loop
        messages, redaction = await trio.to_thread.run_sync(
            self.gate.redact_messages, plain, limiter=GATE_LIMITER
        )
        counts = redaction.counts()
        preview = CloudPreview(
            messages,
            len(self._payload_preview(messages)),
            counts,
            self.escalation.estimate(self.cloud.count_tokens(messages), self.options.max_tokens),
            self.cloud.url,
            self.cloud.model,
        )
        if ask_first:
            if confirm is None or not await confirm(preview):
                steps.append("cloud: the user did not approve sending; staying local")
                return None
            steps.append("cloud: the user approved sending")
        sent: list[int] = []

        def on_send(payload: bytes) -> None:
            sent.append(len(payload))
            if self.audit is not None:
                self.audit.record_request(
                    provider=self.cloud.url if self.cloud else "",
                    model=self.cloud.model if self.cloud else "",
                    payload=payload,
                    entity_counts=counts,
                )

        try:
            completion = await self.cloud.generate_audited(messages, self.options, on_send)
        except ModelError as exc:  # the audit already holds the attempt if bytes left
            steps.append(f"cloud failed ({exc.message}); answering locally")
            return None
        cost = self.escalation.charge(completion.tokens_in, completion.tokens_out)
        steps.append(f"cloud: sent {sum(sent)} bytes, {sum(counts.values())} entities redacted")
        reason = next(
            (s.split(": ", 1)[1] for s in reversed(steps) if s.startswith("escalation")), ""
        )
        return AskResult(
            CLOUD,
            reason,
            _restore(redaction, completion.text),
            cloud_bytes=sum(sent),
            redacted_entities=counts,
            model=completion.model,
            cost_microusd=cost,
            steps=steps,
        )

    def _payload_preview(self, messages: list[Message]) -> bytes:
        body = getattr(self.cloud, "request_body", None)
        if body is not None:
            data: bytes = body(messages, self.options)
            return data
        return "".join(m["content"] for m in messages).encode("utf-8")


def _restore(redaction: Redaction, answer: str) -> str:
    return redaction.restore(answer)
