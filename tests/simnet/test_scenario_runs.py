"""Whole scenarios on small real networks (6-8 nodes), through run_scenario and the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bitterbot.node.cli.main import cli
from bitterbot.simnet.run import run_scenario
from bitterbot.simnet.scenarios import parse

pytestmark = pytest.mark.timeout(240)


def _scenario(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return parse(text, where=str(path))


async def test_discovery_under_churn_finds_records_and_writes_a_report(tmp_path):
    scenario = _scenario(
        tmp_path,
        """
kind = "discovery"
seed = 2
[network]
nodes = 8
seeds = 2
nodes_per_worker = 4
settle_s = 1.0
[workload]
keys = 3
providers_per_key = 2
duration_s = 12.0
concurrency = 3
late_nodes = 2
lookup_timeout_s = 5.0
[churn]
down_fraction = 0.25
interval_s = 3.0
[targets]
lookup_success_rate = { min = 0.9 }
""",
    )
    summary = await run_scenario(scenario, report_dir=tmp_path / "report")
    m = summary["metrics"]
    assert m["workers"] == 2
    assert m["churn_kills"] >= 3
    assert m["lookups_total"] >= 10
    assert m["lookups_answered_locally"] < m["lookups_total"]  # late nodes asked the network
    assert m["lookup_success_rate"] >= 0.9, m
    assert m["lookup_latency_p50_ms"] is not None
    assert summary["targets"][0]["metric"] == "lookup_success_rate"
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| kill |" in report and "restart=True" in report
    assert (tmp_path / "report" / "success_over_time.png").stat().st_size > 2000


async def test_gossip_reaches_every_node_and_a_late_node_catches_up(tmp_path):
    scenario = _scenario(
        tmp_path,
        """
kind = "gossip"
[network]
nodes = 7
seeds = 2
settle_s = 1.0
[workload]
rounds = 3
pause_s = 0.5
late_nodes = 1
sync_interval_s = 2.0
mesh_settle_s = 2.0
""",
    )
    m = (await run_scenario(scenario))["metrics"]
    assert m["attestation_coverage_final"] == 1.0, m
    assert m["attestation_coverage_at_1s"] >= 0.9, m
    assert m["delivery_latency_p50_ms"] < 1000
    assert m["late_nodes_caught_up"] == 1


async def test_sybil_flood_does_not_lift_the_flagged_skill(tmp_path):
    scenario = _scenario(
        tmp_path,
        """
kind = "sybil"
[network]
nodes = 6
seeds = 2
settle_s = 1.0
[workload]
sybils = 200
mesh_settle_s = 2.0
""",
    )
    m = (await run_scenario(scenario))["metrics"]
    assert m["sybil_attestations_pulled_mean"] == 600  # rating, counter-rating, vouch each
    assert m["flagged_skill_tiers_after"] == {"flagged": 5}
    assert m["flagged_skill_lifted_nodes"] == 0
    assert m["honest_skill_tiers_after"] == {"trusted": 5}
    assert m["sybil_attestations_ignored_mean"] == 200
    assert m["trusted_rating_moves_score"] is True


async def test_no_cheating_voucher_is_accepted(tmp_path):
    scenario = _scenario(
        tmp_path,
        """
kind = "cheaters"
[network]
nodes = 6
seeds = 2
settle_s = 0.5
[workload]
payees = 2
cheaters = 2
payments_per_pair = 3
rounds = 2
""",
    )
    m = (await run_scenario(scenario))["metrics"]
    assert m["cheating_attempts_total"] == 2 * 2 * 2 * 6
    assert m["cheating_vouchers_accepted"] == 0
    assert m["replayed_vouchers_accepted"] == 0
    assert set(m["cheating_accepted_by_kind"]) >= {"replay", "forgery", "rollback"}
    assert m["honest_payment_acceptance_rate"] == 1.0
    assert m["payee_books_mismatches"] == 0


@pytest.mark.slow
async def test_market_installs_only_verified_packages_and_sells_a_paid_skill_once(tmp_path):
    scenario = _scenario(
        tmp_path,
        """
kind = "market"
[network]
nodes = 7
seeds = 2
settle_s = 1.0
[workload]
publishers = 1
buyers = 2
altering_providers = 1
paid_price = 300
""",
    )
    m = (await run_scenario(scenario))["metrics"]
    assert m["packages_published"] == 2  # one free, one paid
    assert m["search_by_name_success_rate"] == 1.0
    assert m["install_success_rate"] == 1.0
    assert m["altered_packages_installed"] == 0
    assert m["skill_runs_correct"] == 2
    assert m["altering_provider_penalized_rate"] == 1.0  # it was tried first, and dropped
    assert m["install_after_publisher_loss"] is True
    # the paid skill: shown with price and seller, refused below the price, bought once
    assert m["paid_offer_shows_price_and_seller_rate"] == 1.0
    assert m["paid_under_max_price_refused_rate"] == 1.0
    assert m["paid_install_success_rate"] == 1.0, m
    assert m["paid_skill_runs_correct"] == 2
    assert m["paid_altered_installed"] == 0
    assert m["paid_altered_bytes_refused_rate"] == 1.0
    assert m["paid_overpayments"] == 0
    assert m["paid_repeat_buys_charged"] == 0
    assert m["seller_revenue_expected"] == m["seller_revenue_received"] == 2 * 300
    assert m["seller_licenses_sold"] == 2
    assert m["seller_books_mismatch"] == 0
    # the altering node holds the encrypted package and a leaked decrypted copy, no licence
    assert m["unlicensed_uses_attempted"] == 2
    assert m["unlicensed_runs_refused_rate"] == 1.0
    assert m["unlicensed_refusal_codes"] == {"unlock": "license_missing", "run": "license_missing"}


def test_cli_lists_scenarios_and_refuses_bad_ones_with_a_message():
    runner = CliRunner()
    listed = runner.invoke(cli, ["simnet", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert {"discovery", "churn", "gossip", "sybil", "market", "cheaters"} <= set(rows)
    assert rows["discovery"]["available"] is True
    bad = runner.invoke(cli, ["simnet", "run", "no-such-scenario"])
    assert bad.exit_code != 0
    assert "no scenario named" in str(bad.exception)


def test_cli_run_prints_json_metrics(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(
        'kind = "discovery"\n[network]\nnodes = 3\nseeds = 1\nsettle_s = 0.5\n'
        "[workload]\nkeys = 1\nproviders_per_key = 1\nduration_s = 2.0\nlate_nodes = 1\n"
    )
    result = CliRunner().invoke(
        cli, ["simnet", "run", str(path), "--seed", "5", "--json", "--report", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["seed"] == 5 and summary["nodes"] == 3
    assert summary["metrics"]["lookups_total"] >= 1
    assert summary["metrics"]["lookup_success_rate"] == 1.0
    assert (tmp_path / "r" / "report.md").exists()


def test_backend_override_applies_only_to_scenarios_that_pay():
    from bitterbot.simnet.scenarios import load

    assert load("market").with_overrides(backend="cashu").params["workload"]["backend"] == "cashu"
    assert load("cheaters").params["workload"]["backend"] == "ledger"  # the default
    refused = CliRunner().invoke(cli, ["simnet", "run", "discovery", "--backend", "cashu"])
    assert refused.exit_code != 0
    assert "makes no payments" in str(refused.exception)
