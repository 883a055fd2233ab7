"""Escalation policy: when a request may go to the cloud, and what it may cost.

Cloud use is off until a provider is configured (``cloud.url`` and ``cloud.model``). Then
the policy decides, per node with per-skill overrides:

* ``never``: nothing leaves the device;
* ``ask``: the caller shows exactly what would be sent and sends only after a yes;
* ``auto``: send when the rule below says the local model is insufficient.

**The rule** ("local model judged insufficient", :class:`SufficiencyRule`), applied only to
requests no skill took:

1. *Before* running the local model: the request is judged too hard for a small local
   model when it is longer than ``max_local_words`` words, or contains one of
   ``hard_markers`` (long-form writing, code, translation of long text, analysis).
2. *After* a local answer: it is judged insufficient when it is empty, shorter than
   ``min_answer_chars``, was cut off by the length limit (when ``escalate_on_length``),
   or contains one of ``uncertain_markers`` ("I don't know", "I'm not sure", ...).

Every field is configurable; the defaults are documented in SPEC.md section 7.

**Money** is integer micro-USD throughout. :data:`PRICES` holds per-model prices in
micro-USD per 1,000 tokens; a daily cap (``cloud.daily_budget_microusd``) is checked
against the estimated cost before sending, and the actual cost is charged after, to an
injected :class:`SpendLedger` (LMDB in the node, memory in tests).

Every decision is returned with its reason and passed to the ``on_decision`` sink.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bitterbot.protocol.errors import ConfigError

NEVER, ASK, AUTO = "never", "ask", "auto"
POLICIES = (NEVER, ASK, AUTO)
SUFFICIENT = "the local model is judged sufficient"


@dataclass(frozen=True)
class Price:
    """Micro-USD per 1,000 tokens (1 USD per 1M tokens = 1,000 micro-USD per 1k)."""

    input_per_1k: int
    output_per_1k: int


#: List prices (USD per 1M tokens, input/output) as micro-USD per 1k tokens.
PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(150, 600),
    "gpt-4.1-nano": Price(100, 400),
    "gpt-4.1-mini": Price(400, 1600),
    "gpt-4o": Price(2500, 10_000),
    "claude-3-5-haiku": Price(800, 4000),
    "mistral-small": Price(200, 600),
}
DEFAULT_PRICE = Price(2500, 10_000)  # unknown models are costed like an expensive one


def price_for(model: str, prices: Mapping[str, Price] = PRICES) -> Price:
    if model in prices:
        return prices[model]
    for name, price in prices.items():  # "gpt-4o-mini-2024-07-18" -> "gpt-4o-mini"
        if model.startswith(name + "-"):
            return price
    return DEFAULT_PRICE


def cost_microusd(price: Price, tokens_in: int, tokens_out: int) -> int:
    """Cost in integer micro-USD, rounded up."""
    total = tokens_in * price.input_per_1k + tokens_out * price.output_per_1k
    return -(-total // 1000)


class SpendLedger(Protocol):
    def spent(self, day: str) -> int: ...

    def add(self, day: str, microusd: int) -> int: ...


class MemoryLedger:
    def __init__(self) -> None:
        self.days: dict[str, int] = {}

    def spent(self, day: str) -> int:
        return self.days.get(day, 0)

    def add(self, day: str, microusd: int) -> int:
        self.days[day] = self.days.get(day, 0) + microusd
        return self.days[day]


@dataclass
class SufficiencyRule:
    max_local_words: int = 80
    hard_markers: Sequence[str] = (
        "write code", "write a program", "python", "javascript", "sql query", "debug",
        "business plan", "essay", "report", "page", "detailed", "in detail", "step by step",
        "analyze", "analyse", "analysis", "compare", "legal", "contract", "prove",
        "translate", "cover letter", "marketing", "strategy", "campaign",
    )  # fmt: skip
    min_answer_chars: int = 2
    escalate_on_length: bool = False
    uncertain_markers: Sequence[str] = (
        "i don't know", "i do not know", "i'm not sure", "i am not sure", "i cannot answer",
        "i can't answer", "i'm unable", "i am unable", "as an ai",
    )  # fmt: skip

    def request_too_hard(self, text: str) -> str | None:
        words = len(text.split())
        if words > self.max_local_words:
            return f"long request ({words} words > {self.max_local_words})"
        low = text.lower()
        for marker in self.hard_markers:
            if re.search(rf"(?<!\w){re.escape(marker)}(?!\w)", low):
                return f"task beyond the local model (matched {marker!r})"
        return None

    def answer_insufficient(self, answer: str, finish_reason: str) -> str | None:
        if len(answer.strip()) < self.min_answer_chars:
            return "the local model gave no answer"
        if self.escalate_on_length and finish_reason == "length":
            return "the local answer was cut off"
        low = answer.lower().replace("’", "'")
        for marker in self.uncertain_markers:
            if marker in low:
                return f"the local model was unsure ({marker!r})"
        return None


@dataclass
class EscalationDecision:
    escalate: bool  # True: go to the cloud (after confirmation when needs_confirmation)
    reason: str
    stage: str  # "before-local" | "after-local"
    policy: str
    needs_confirmation: bool = False
    estimated_microusd: int = 0
    time_s: float = 0.0


@dataclass
class Escalation:
    """Decides local vs cloud for requests no skill took; tracks spend."""

    cloud_url: str = ""
    cloud_model: str = ""
    policy: str = NEVER
    skill_policies: dict[str, str] = field(default_factory=dict)
    daily_budget_microusd: int = 1_000_000
    rule: SufficiencyRule = field(default_factory=SufficiencyRule)
    prices: Mapping[str, Price] = field(default_factory=lambda: dict(PRICES))
    ledger: SpendLedger = field(default_factory=MemoryLedger)
    on_decision: Callable[[EscalationDecision], None] | None = None
    clock: Callable[[], float] = time.time
    decisions: list[EscalationDecision] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, value in [("cloud.policy", self.policy), *self.skill_policies.items()]:
            if value not in POLICIES:
                raise ConfigError(
                    f"{name}: unknown escalation policy {value!r}",
                    hint="use never, ask or auto",
                )
        if self.daily_budget_microusd < 0:
            raise ConfigError("cloud.daily_budget_microusd must be >= 0")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **kwargs: object) -> Escalation:
        rule = SufficiencyRule(
            max_local_words=int(settings["cloud.max_local_words"]),
            escalate_on_length=bool(settings["cloud.escalate_on_length"]),
        )
        kwargs.setdefault("rule", rule)
        overrides: dict[str, str] = {}
        raw = settings["cloud.skill_policies"]
        for item in raw if isinstance(raw, list | tuple) else []:
            skill, sep, policy = str(item).partition("=")
            if not sep or not skill.strip():
                raise ConfigError(
                    f"cloud.skill_policies: {item!r} is not SKILL=POLICY",
                    hint="for example: medical=never,weather=auto",
                )
            overrides[skill.strip()] = policy.strip()
        kwargs.setdefault("skill_policies", overrides)
        return cls(
            cloud_url=str(settings["cloud.url"]),
            cloud_model=str(settings["cloud.model"]),
            policy=str(settings["cloud.policy"]),
            daily_budget_microusd=int(settings["cloud.daily_budget_microusd"]),
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def configured(self) -> bool:
        return bool(self.cloud_url and self.cloud_model)

    def today(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%Y-%m-%d")

    def spent_today(self) -> int:
        return self.ledger.spent(self.today())

    def estimate(self, tokens_in: int, max_tokens_out: int) -> int:
        return cost_microusd(price_for(self.cloud_model, self.prices), tokens_in, max_tokens_out)

    def charge(self, tokens_in: int, tokens_out: int) -> int:
        """Record the cost of a finished cloud call; returns the cost in micro-USD."""
        cost = cost_microusd(price_for(self.cloud_model, self.prices), tokens_in, tokens_out)
        self.ledger.add(self.today(), cost)
        return cost

    def _decide(
        self, stage: str, insufficient: str | None, skill: str | None, estimated: int
    ) -> EscalationDecision:
        policy = self.skill_policies.get(skill or "", self.policy)
        escalate, confirm = False, False
        if insufficient is None:
            reason = SUFFICIENT
        elif not self.configured:
            reason = f"{insufficient}, but no cloud provider is configured"
        elif policy == NEVER:
            reason = f"{insufficient}, but the cloud policy is never"
        elif self.spent_today() + estimated > self.daily_budget_microusd:
            reason = (
                f"{insufficient}, but the daily cloud budget is reached "
                f"({self.spent_today()} + {estimated} > {self.daily_budget_microusd} micro-USD)"
            )
        else:
            escalate, confirm = True, policy == ASK
            reason = insufficient + (" (asking before sending)" if confirm else "")
        decision = EscalationDecision(
            escalate, reason, stage, policy, confirm, estimated if escalate else 0, self.clock()
        )
        self.decisions.append(decision)
        if self.on_decision is not None:
            self.on_decision(decision)
        return decision

    def before_local(
        self, text: str, *, skill: str | None = None, tokens_in: int = 0, max_tokens_out: int = 256
    ) -> EscalationDecision:
        estimated = self.estimate(tokens_in or len(text) // 4 + 1, max_tokens_out)
        return self._decide("before-local", self.rule.request_too_hard(text), skill, estimated)

    def after_local(
        self,
        answer: str,
        finish_reason: str = "stop",
        *,
        skill: str | None = None,
        tokens_in: int = 0,
        max_tokens_out: int = 256,
    ) -> EscalationDecision:
        insufficient = self.rule.answer_insufficient(answer, finish_reason)
        estimated = self.estimate(tokens_in, max_tokens_out)
        return self._decide("after-local", insufficient, skill, estimated)


# --- workload replay (``bitterbot bench escalation``) ------------------------------------

#: Open requests for the mixed workload: some a small local model handles, some it cannot.
OPEN_TASKS = [
    "what is the capital of peru",
    "how many legs does a spider have",
    "who wrote the odyssey",
    "what is the boiling point of water in fahrenheit",
    "give me a synonym for happy",
    "what year did the berlin wall fall",
    "how many minutes are in a day",
    "what color do you get mixing blue and yellow",
    "name three primary colors",
    "what is the largest ocean",
    "write a detailed business plan for a vegan bakery in a small town",
    "write a python script that parses a csv file and plots monthly totals",
    "compare the monetary policies of the fed and the ecb since 2008 in detail",
    "translate this contract clause into legal german and explain the risks",
    "draft a marketing campaign for a new fitness app with a week by week schedule",
    "analyze the themes of crime and punishment in a five paragraph essay",
]


@dataclass
class ReplayTask:
    text: str
    handled_by_skill: bool  # the router sent it to an installed skill


def replay(
    tasks: Sequence[ReplayTask], escalation: Escalation, *, tokens_out: int = 300
) -> dict[str, Any]:
    """Decide every task without running a model; cost the escalated ones.

    Only the before-local half of the rule applies (no local answers are generated);
    ``cloud_only`` costs every task the same way, as if no router or local model existed.
    Money is summed in integer micro-USD and reported per 1,000 tasks in USD.
    """
    price = price_for(escalation.cloud_model, escalation.prices)
    escalated = hybrid = cloud_only = 0
    for task in tasks:
        tokens_in = len(task.text) // 4 + 1 + 20  # + chat template and system prompt
        cost = cost_microusd(price, tokens_in, tokens_out)
        cloud_only += cost
        if task.handled_by_skill:
            continue
        if escalation.rule.request_too_hard(task.text) is not None:
            escalated += 1
            hybrid += cost
    n = max(1, len(tasks))
    return {
        "tasks": len(tasks),
        "share_skill": round(sum(t.handled_by_skill for t in tasks) / n, 4),
        "share_escalated": round(escalated / n, 4),
        "cost_per_1000_usd": round(hybrid * 1000 / n / 1e6, 4),
        "cloud_only_cost_per_1000_usd": round(cloud_only * 1000 / n / 1e6, 4),
        "model": escalation.cloud_model,
        "assumed_tokens_out": tokens_out,
    }
