"""Scenario files: the built-ins load, typos fail loudly, missing subsystems say what they need."""

from __future__ import annotations

import pytest

from bitterbot.simnet import runners
from bitterbot.simnet.errors import NotAvailableError, ScenarioError
from bitterbot.simnet.scenarios import builtin_names, evaluate_targets, load, parse

REQUIRED = {"discovery", "churn", "gossip", "sybil", "market", "cheaters"}


def test_every_required_scenario_ships_and_loads():
    names = set(builtin_names())
    assert REQUIRED <= names
    for name in names:
        scenario = load(name)
        assert scenario.kind in runners.KINDS
        assert scenario.nodes >= 2
        assert scenario.description


def test_churn_scenario_asks_for_thirty_percent_down_and_ninety_nine_percent_found():
    churn = load("churn")
    assert churn.section("churn")["down_fraction"] == pytest.approx(0.3)
    assert churn.targets["lookup_success_rate"] == {"min": 0.99}


def test_unknown_keys_and_wrong_types_are_errors_not_ignored():
    with pytest.raises(ScenarioError, match="unknown key"):
        parse('kind = "discovery"\n[workload]\nkeyz = 3\n', where="t")
    with pytest.raises(ScenarioError, match="unknown key"):
        parse('kind = "discovery"\n[network]\nnode = 3\n', where="t")
    with pytest.raises(ScenarioError, match="wrong type"):
        parse('kind = "discovery"\n[network]\nnodes = "many"\n', where="t")
    with pytest.raises(ScenarioError, match="integer"):
        parse('kind = "discovery"\n[network]\nnodes = 2.5\n', where="t")
    with pytest.raises(ScenarioError, match="unknown scenario kind"):
        parse('kind = "teleport"\n', where="t")
    with pytest.raises(ScenarioError, match="missing kind"):
        parse("seed = 1\n", where="t")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse("kind = \n", where="t")
    with pytest.raises(ScenarioError, match="min = 0.99"):
        parse('kind = "discovery"\n[targets]\nx = 3\n', where="t")


def test_overrides_and_defaults():
    base = parse('kind = "discovery"\nseed = 4\n', where="t")
    assert base.seed == 4 and base.nodes == 10
    assert base.section("workload")["keys"] == 5
    changed = base.with_overrides(nodes=50, seed=9)
    assert changed.nodes == 50 and changed.seed == 9
    assert base.nodes == 10  # the original is untouched
    with pytest.raises(ScenarioError):
        base.with_overrides(nodes=1)


def test_unknown_scenario_name_lists_the_built_ins():
    with pytest.raises(ScenarioError) as info:
        load("nope")
    assert "discovery" in (info.value.hint or "")


def test_targets_are_judged_with_their_bounds():
    rows = evaluate_targets(
        {"a_rate": {"min": 0.99}, "b_ms": {"max": 500.0}, "c_rate": {"min": 0.5}},
        {"a_rate": 0.995, "b_ms": 731.0, "c_rate": None},
    )
    assert [r["met"] for r in rows] == [True, False, False]
    yes_no = evaluate_targets({"ok": {"min": 1}}, {"ok": True})
    assert yes_no[0]["met"] and yes_no[0]["value"] == 1
    assert not evaluate_targets({"ok": {"min": 1}}, {"ok": False})[0]["met"]


def test_a_kind_whose_subsystem_is_missing_says_what_it_needs(monkeypatch):
    monkeypatch.setitem(
        runners.KINDS,
        "gossip",
        runners.Kind("bitterbot.simnet.run_gossip", ("bitterbot.node.nonexistent",), "X and Y"),
    )
    with pytest.raises(NotAvailableError) as info:
        runners.load_runner("gossip")
    assert "not available yet: needs X and Y" in info.value.message
    assert "bitterbot.node.nonexistent" in info.value.message
    assert info.value.code == "not_available"
