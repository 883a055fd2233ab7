"""The cheaters scenario on a real Cashu mint (``backend = "cashu"``): no ledger is shared."""

from __future__ import annotations

import pytest

from bitterbot.protocol import cashu as rules
from bitterbot.simnet.run import run_scenario
from bitterbot.simnet.scenarios import parse
from bitterbot.simnet.simnode_pay import CASHU_GRANT

pytestmark = pytest.mark.timeout(300)


async def test_cheaters_on_cashu_accept_no_cheat_and_payees_hold_the_ecash(tmp_path):
    text = """
kind = "cheaters"
seed = 3
[network]
nodes = 5
seeds = 1
nodes_per_worker = 5
settle_s = 1.0
[workload]
backend = "cashu"
payees = 1
cheaters = 1
payments_per_pair = 4
rounds = 2
honest_part = 10
"""
    summary = await run_scenario(parse(text, where="cashu-cheaters"), report_dir=None)
    m = summary["metrics"]
    assert m["cheating_vouchers_accepted"] == 0 and m["replayed_vouchers_accepted"] == 0
    assert m["payee_books_mismatches"] == 0
    assert m["honest_payment_acceptance_rate"] == 1.0
    # every payer opened one channel (default capacity) to the payee; the payee's wallet
    # holds what the signatures cover, short of the total by less than a unit a channel
    payers = m["honest_payers"] + m["cheaters"]
    assert 0 <= m["payee_ecash_shortfall_sat"] < payers * rules.cover_unit(100_000)
    assert m["payee_ecash_settled_sat"] > 0  # each node also minted its start grant
    assert m["payee_ecash_balance_sat"] == CASHU_GRANT + m["payee_ecash_settled_sat"]
    assert any("ecash" in note for note in summary["notes"])
