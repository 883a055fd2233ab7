"""Escalation policy: off until configured, never/ask/auto per node and skill, budget, prices."""

from __future__ import annotations

import pytest

from bitterbot.agent.escalation import (
    ASK,
    AUTO,
    NEVER,
    Escalation,
    EscalationDecision,
    MemoryLedger,
    Price,
    ReplayTask,
    SufficiencyRule,
    cost_microusd,
    price_for,
    replay,
)
from bitterbot.protocol.errors import ConfigError

HARD = "write a detailed business plan for my bakery"
EASY = "what is the capital of peru"


def configured(policy: str = AUTO, **kwargs: object) -> Escalation:
    return Escalation(
        cloud_url="http://127.0.0.1:1/v1",
        cloud_model="gpt-4o-mini",
        policy=policy,
        clock=lambda: 1_700_000_000.0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_cloud_is_off_until_a_provider_is_configured() -> None:
    decision = Escalation(policy=AUTO).before_local(HARD)
    assert not decision.escalate
    assert "no cloud provider is configured" in decision.reason


def test_easy_requests_stay_local_hard_ones_escalate_under_auto() -> None:
    esc = configured()
    assert not esc.before_local(EASY).escalate
    hard = esc.before_local(HARD)
    assert hard.escalate and not hard.needs_confirmation
    assert "business plan" in hard.reason


def test_policy_never_and_ask() -> None:
    assert not configured(NEVER).before_local(HARD).escalate
    ask = configured(ASK).before_local(HARD)
    assert ask.escalate and ask.needs_confirmation and "asking" in ask.reason


def test_per_skill_policy_overrides_the_node_policy() -> None:
    esc = configured(AUTO, skill_policies={"medical": NEVER})
    assert not esc.before_local(HARD, skill="medical").escalate
    assert esc.before_local(HARD, skill="weather").escalate


def test_unknown_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        configured("sometimes")
    with pytest.raises(ConfigError):
        configured(AUTO, skill_policies={"x": "always"})


def test_after_local_rule_catches_empty_unsure_and_optionally_cut_answers() -> None:
    esc = configured(rule=SufficiencyRule(escalate_on_length=True))
    assert esc.after_local("").escalate
    assert esc.after_local("Honestly, I don’t know that.").escalate
    assert esc.after_local("Lima is the capital.", "length").escalate
    assert not esc.after_local("Lima is the capital of Peru.").escalate
    assert not configured().after_local("Lima", "length").escalate  # off by default


def test_rule_thresholds_are_configurable() -> None:
    rule = SufficiencyRule(max_local_words=3, hard_markers=("poem",))
    assert rule.request_too_hard("tell me a short story please") is not None
    assert rule.request_too_hard("a poem") is not None
    assert rule.request_too_hard("hi there") is None


def test_prices_are_integer_micro_usd_rounded_up() -> None:
    price = price_for("gpt-4o-mini-2024-07-18")
    assert price == Price(150, 600)
    assert cost_microusd(price, 1000, 1000) == 750
    assert cost_microusd(price, 1, 0) == 1  # never free
    assert isinstance(cost_microusd(price, 123, 45), int)
    assert price_for("some-new-model").input_per_1k >= 2500  # unknown: costed high


def test_daily_budget_blocks_and_resets_next_day() -> None:
    now = [1_700_000_000.0]
    ledger = MemoryLedger()
    esc = configured(daily_budget_microusd=400, ledger=ledger)
    esc.clock = lambda: now[0]
    assert esc.before_local(HARD).escalate
    esc.charge(1000, 500)  # 150 + 300 = 450 micro-USD
    assert ledger.spent(esc.today()) == 450
    blocked = esc.before_local(HARD)
    assert not blocked.escalate and "budget" in blocked.reason
    now[0] += 86_400
    assert esc.before_local(HARD).escalate


def test_every_decision_is_recorded_with_its_reason() -> None:
    seen: list[EscalationDecision] = []
    esc = configured(on_decision=seen.append)
    esc.before_local(EASY)
    esc.before_local(HARD)
    esc.after_local("I am not sure")
    assert [d.escalate for d in seen] == [False, True, True]
    assert all(d.reason for d in seen) and esc.decisions == seen
    assert [d.stage for d in seen] == ["before-local", "before-local", "after-local"]


def test_replay_costs_only_escalated_tasks() -> None:
    tasks = [ReplayTask("set an alarm", True)] * 90 + [ReplayTask(EASY, False)] * 5
    tasks += [ReplayTask(HARD, False)] * 5
    result = replay(tasks, configured(), tokens_out=300)
    assert result["share_escalated"] == 0.05
    assert result["share_skill"] == 0.9
    assert 0 < result["cost_per_1000_usd"] < result["cloud_only_cost_per_1000_usd"] / 10


def test_settings_give_rule_limits_and_per_skill_policies() -> None:
    settings = {
        "cloud.url": "http://127.0.0.1:1/v1",
        "cloud.model": "gpt-4o-mini",
        "cloud.policy": "auto",
        "cloud.daily_budget_microusd": 5000,
        "cloud.max_local_words": 4,
        "cloud.escalate_on_length": True,
        "cloud.skill_policies": ["medical=never", "notes = ask"],
    }
    esc = Escalation.from_settings(settings)
    assert esc.skill_policies == {"medical": "never", "notes": "ask"}
    assert esc.rule.max_local_words == 4 and esc.rule.escalate_on_length
    assert esc.before_local("one two three four five").escalate
    assert not esc.before_local("one two three four five", skill="medical").escalate
    with pytest.raises(ConfigError):
        Escalation.from_settings({**settings, "cloud.skill_policies": ["medical"]})
    with pytest.raises(ConfigError):
        Escalation.from_settings({**settings, "cloud.skill_policies": ["medical=maybe"]})
