"""CLI: `bitterbot pay` (open, status, close, refund, faucet, buy, call) and `bench vouchers`.

The built-in settlement backend is a ledger of TEST MONEY: every command that shows money
says so. Commands that talk to peers go through the running node's API; ``pay status``
and ``pay faucet`` work on the home directly.
"""

from __future__ import annotations

from typing import Any

import click

from bitterbot.node.api.client import call_node
from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json

TEST_MONEY_NOTE = "TEST MONEY (ledger backend): not real money"

json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


@click.group("pay")
def pay_group() -> None:
    """Payment channels: pay developers directly (built-in backend: TEST MONEY)."""


@pay_group.command("open")
@click.argument("peer")
@click.argument("amount", type=click.IntRange(min=1))
@home_option
@json_option
@pass_cli
def pay_open(cli_ctx: CliContext, peer: str, amount: int, as_json: bool) -> None:
    """Open a channel to PEER (peer ID or multiaddr with /p2p/) with AMOUNT locked."""
    out = call_node(cli_ctx.home_path, "POST", "/v1/pay/open", {"peer": peer, "amount": amount})
    if as_json:
        print_json({**out, "capacity": amount, "money": TEST_MONEY_NOTE})
        return
    click.echo(f"opened channel {out['channel']} to {peer} with {amount} units")
    click.echo(TEST_MONEY_NOTE)


def _local_status(cli_ctx: CliContext) -> dict[str, Any]:
    from bitterbot.node.pay.ledger import LedgerBackend
    from bitterbot.node.pay.service import ledger_path
    from bitterbot.node.store import Store

    home = cli_ctx.home.ensure()
    identity = home.identity()
    store = Store(home.db_path)
    try:
        from bitterbot.node.pay.service import CHANNELS, channel_summary, open_databases

        open_databases(store, (CHANNELS,))
        with store.read() as txn:
            channels = [channel_summary(k, v) for k, v in txn.items(CHANNELS)]
    finally:
        store.close()
    settings = cli_ctx.settings()
    backend = LedgerBackend.open(ledger_path(settings, home.path))
    try:
        balance = backend.balance_sync(identity.public_key)
    finally:
        backend.shutdown()
    return {"backend": "ledger", "test_money": True, "balance": balance, "channels": channels}


@pay_group.command("status")
@home_option
@json_option
@pass_cli
def pay_status(cli_ctx: CliContext, as_json: bool) -> None:
    """Balance and channels (capacity, paid, remaining, state)."""
    if cli_ctx.home.running_pid() is not None:
        out = call_node(cli_ctx.home_path, "GET", "/v1/pay/status")
    else:
        out = _local_status(cli_ctx)
    if as_json:
        print_json({**out, "money": TEST_MONEY_NOTE})
        return
    click.echo(f"balance: {out['balance']} units   [{TEST_MONEY_NOTE}]")
    if not out["channels"]:
        click.echo("no channels")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("channel", "role", "peer", "state", "capacity", "paid", "remaining")
    for c in out["channels"]:
        table.add_row(
            c["channel"][:16],
            c["role"],
            c["peer"][:20],
            c["state"],
            str(c["capacity"]),
            str(c["paid"]),
            str(c["remaining"]),
        )
    Console().print(table)


@pay_group.command("close")
@click.argument("target")
@click.option("--unilateral", is_flag=True, help="close without the peer (refund after window)")
@home_option
@json_option
@pass_cli
def pay_close(cli_ctx: CliContext, target: str, unilateral: bool, as_json: bool) -> None:
    """Close the channel TARGET (a peer ID or channel ID prefix)."""
    out = call_node(
        cli_ctx.home_path, "POST", "/v1/pay/close", {"target": target, "unilateral": unilateral}
    )
    if as_json:
        print_json({**out, "money": TEST_MONEY_NOTE})
        return
    if "paid" in out:
        click.echo(f"closed: {out['paid']} paid to the payee, {out['refunded']} refunded to you")
    elif "settled" in out:
        click.echo(f"settled {out['settled']} from our highest voucher")
    else:
        click.echo(f"closing; refund possible after ms {out['refund_after_ms']} (pay refund)")
    click.echo(TEST_MONEY_NOTE)


@pay_group.command("refund")
@click.argument("target")
@home_option
@json_option
@pass_cli
def pay_refund(cli_ctx: CliContext, target: str, as_json: bool) -> None:
    """After a unilateral close's dispute window: take back what was not paid."""
    out = call_node(cli_ctx.home_path, "POST", "/v1/pay/refund", {"target": target})
    if as_json:
        print_json({**out, "money": TEST_MONEY_NOTE})
    else:
        click.echo(f"refunded {out['refunded']} units   [{TEST_MONEY_NOTE}]")


@pay_group.command("faucet")
@click.argument("amount", type=click.IntRange(min=1))
@home_option
@json_option
@pass_cli
def pay_faucet(cli_ctx: CliContext, amount: int, as_json: bool) -> None:
    """Mint AMOUNT of TEST MONEY to this node's ledger account."""
    from bitterbot.node.pay.ledger import LedgerBackend
    from bitterbot.node.pay.service import ledger_path

    home = cli_ctx.home.ensure()
    if home.running_pid() is not None:
        balance = call_node(home.path, "POST", "/v1/pay/faucet", {"amount": amount})["balance"]
    else:
        backend = LedgerBackend.open(ledger_path(cli_ctx.settings(), home.path))
        try:
            balance = backend.faucet_sync(home.identity().public_key, amount)
        finally:
            backend.shutdown()
    if as_json:
        print_json({"balance": balance, "money": TEST_MONEY_NOTE})
    else:
        click.echo(f"balance: {balance} units   [{TEST_MONEY_NOTE}]")


@pay_group.command("buy")
@click.argument("peer")
@click.argument("skill")
@click.argument("version")
@click.option("--max-price", type=click.IntRange(min=1), required=True, help="most you pay")
@home_option
@json_option
@pass_cli
def pay_buy(
    cli_ctx: CliContext, peer: str, skill: str, version: str, max_price: int, as_json: bool
) -> None:
    """Buy a license for SKILL at VERSION from PEER (retrying never pays twice)."""
    body = {"peer": peer, "skill": skill, "version": version, "max_price": max_price}
    out = call_node(cli_ctx.home_path, "POST", "/v1/pay/purchase", body)
    if as_json:
        print_json({**out, "money": TEST_MONEY_NOTE})
        return
    lic = out["license"]
    click.echo(
        f"licensed {skill} {lic['versions']['min']} up to {lic['versions']['below']} "
        f"for {out['price']} units   [{TEST_MONEY_NOTE}]"
    )


@pay_group.command("call")
@click.argument("peer")
@click.argument("service")
@click.argument("text", default="")
@click.option("--max-price", type=click.IntRange(min=1), required=True, help="most you pay")
@home_option
@json_option
@pass_cli
def pay_call(
    cli_ctx: CliContext, peer: str, service: str, text: str, max_price: int, as_json: bool
) -> None:
    """Call SERVICE on PEER, paid per call (the price is checked against --max-price first)."""
    body = {"peer": peer, "service": service, "input": text, "max_price": max_price}
    out = call_node(cli_ctx.home_path, "POST", "/v1/pay/call", body)
    if as_json:
        print_json(out)
    else:
        click.echo(out["output"])


COMMANDS: list[click.Command] = [pay_group]
