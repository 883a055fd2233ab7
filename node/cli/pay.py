"""CLI: `bitterbot pay` (open, status, close, refund, faucet, buy, call, wallet).

Two settlement backends: the ledger of TEST MONEY (every command that shows its money says
so) and a Cashu mint (``pay.backend = "cashu:<mint URL>"``: ecash, as real as the mint's
Lightning). Commands that talk to peers go through the running node's API; ``pay status``,
``pay faucet`` and ``pay wallet`` work on the home directly when no node runs.
"""

from __future__ import annotations

from typing import Any

import click

from bitterbot.node.api.client import call_node
from bitterbot.node.cli.common import CliContext, home_option, pass_cli, print_json

TEST_MONEY_NOTE = "TEST MONEY (ledger backend): not real money"


def money_note(out: dict[str, Any]) -> str:
    """What the amounts are: TEST MONEY on the ledger, sats of ecash on a Cashu mint."""
    if out.get("test_money", True):
        return TEST_MONEY_NOTE
    return f"sats of ecash ({out.get('backend', 'cashu')})"


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


@click.group("pay")
def pay_group() -> None:
    """Payment channels: pay developers directly (TEST MONEY ledger, or Cashu ecash)."""


@pay_group.command("open")
@click.argument("peer")
@click.argument("amount", type=click.IntRange(min=1))
@home_option
@json_option
@pass_cli
def pay_open(cli_ctx: CliContext, peer: str, amount: int, as_json: bool) -> None:
    """Open a channel to PEER (peer ID or multiaddr with /p2p/) with AMOUNT locked."""
    out = call_node(
        cli_ctx.home_path, "POST", "/v1/pay/open", {"peer": peer, "amount": amount}, timeout=120
    )
    if as_json:
        print_json({**out, "capacity": amount, "money": money_note(out)})
        return
    click.echo(f"opened channel {out['channel']} to {peer} with {amount} units")
    click.echo(money_note(out))


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
    if _mint_url(cli_ctx) is not None:
        import trio

        wallet = _local_wallet(cli_ctx)
        balance = trio.run(wallet.balance)
        return {"backend": str(settings["pay.backend"]), "test_money": False, "balance": balance,
                "channels": channels}  # fmt: skip
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
        print_json({**out, "money": money_note(out)})
        return
    click.echo(f"balance: {out['balance']} units   [{money_note(out)}]")
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
        print_json({**out, "money": money_note(out)})
        return
    if "paid" in out:
        click.echo(f"closed: {out['paid']} paid to the payee, {out['refunded']} refunded to you")
    elif "settled" in out:
        click.echo(f"settled {out['settled']} from our highest voucher")
    else:
        click.echo(f"closing; refund possible after ms {out['refund_after_ms']} (pay refund)")
    click.echo(money_note(out))


@pay_group.command("refund")
@click.argument("target")
@home_option
@json_option
@pass_cli
def pay_refund(cli_ctx: CliContext, target: str, as_json: bool) -> None:
    """After a unilateral close's dispute window: take back what was not paid."""
    out = call_node(cli_ctx.home_path, "POST", "/v1/pay/refund", {"target": target})
    if as_json:
        print_json({**out, "money": money_note(out)})
    else:
        click.echo(f"refunded {out['refunded']} units   [{money_note(out)}]")


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
    if _mint_url(cli_ctx) is not None:
        from bitterbot.protocol.errors import ConfigError

        raise ConfigError(
            "the faucet makes TEST MONEY on the ledger; this node settles on a Cashu mint",
            hint="fund the Cashu wallet: bitterbot pay wallet mint AMOUNT",
        )
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
        print_json({**out, "money": money_note(out)})
        return
    lic = out["license"]
    click.echo(
        f"licensed {skill} {lic['versions']['min']} up to {lic['versions']['below']} "
        f"for {out['price']} units   [{money_note(out)}]"
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


# --- the Cashu wallet ------------------------------------------------------------------


def _mint_url(cli_ctx: CliContext) -> str | None:
    from bitterbot.node.pay.cashu import parse_backend

    return parse_backend(str(cli_ctx.settings()["pay.backend"]))


def _local_wallet(cli_ctx: CliContext) -> Any:
    from bitterbot.node.pay.cashu import CASHU_FOLDER
    from bitterbot.node.pay.cashu_wallet import CashuWallet
    from bitterbot.protocol.errors import ConfigError

    url = _mint_url(cli_ctx)
    if url is None:
        raise ConfigError(
            "pay wallet needs a Cashu backend",
            hint="set pay.backend = 'cashu:<mint URL>' (config.toml or BITTERBOT_PAY_BACKEND)",
        )
    return CashuWallet(cli_ctx.home.ensure().path / CASHU_FOLDER, url)


def _wallet_call(cli_ctx: CliContext, method: str, route: str, body: Any, local: Any) -> Any:
    """Through the running node (one process owns the wallet), else on the home directly."""
    if cli_ctx.home.running_pid() is not None:
        return call_node(cli_ctx.home_path, method, route, body, timeout=3700)
    import trio

    return trio.run(local, _local_wallet(cli_ctx))


@pay_group.group("wallet")
def wallet_group() -> None:
    """The node's Cashu wallet (pay.backend = cashu:<mint URL>): balance, mint, receive, send."""


@wallet_group.command("balance")
@home_option
@json_option
@pass_cli
def wallet_balance(cli_ctx: CliContext, as_json: bool) -> None:
    """Spendable ecash in sats (channel deposits not included)."""

    async def local(w: Any) -> dict[str, Any]:
        return {"balance": await w.balance(), "mint": w.mint_url}

    out = _wallet_call(cli_ctx, "GET", "/v1/pay/wallet", None, local)
    if as_json:
        print_json(out)
    else:
        click.echo(f"{out['balance']} sat on {out['mint']}")


@wallet_group.command("mint")
@click.argument("amount", type=click.IntRange(min=1))
@click.option(
    "--wait", "wait_s", default=600, show_default=True, help="seconds to wait for payment"
)
@home_option
@json_option
@pass_cli
def wallet_mint(cli_ctx: CliContext, amount: int, wait_s: int, as_json: bool) -> None:
    """Mint AMOUNT sat: pay the Lightning invoice shown, the ecash arrives when it is paid."""

    async def local(w: Any) -> dict[str, Any]:
        return dict(await w.mint(amount, float(wait_s)))

    body = {"amount": amount, "wait_s": wait_s}
    out = _wallet_call(cli_ctx, "POST", "/v1/pay/wallet/mint", body, local)
    if as_json:
        print_json(out)
        return
    click.echo(f"invoice: {out['invoice']}")
    if out["minted"]:
        click.echo(f"minted {out['minted']} sat")
    else:
        click.echo(
            f"not paid within {wait_s} s; run the command again once it is (quote {out['quote']})"
        )


@wallet_group.command("receive")
@click.argument("token")
@home_option
@json_option
@pass_cli
def wallet_receive(cli_ctx: CliContext, token: str, as_json: bool) -> None:
    """Receive a Cashu TOKEN (cashuA.../cashuB...) into the wallet."""

    async def local(w: Any) -> dict[str, Any]:
        return {"received": await w.receive_token(token, [])}

    out = _wallet_call(cli_ctx, "POST", "/v1/pay/wallet/receive", {"token": token}, local)
    if as_json:
        print_json(out)
    else:
        click.echo(f"received {out['received']} sat")


@wallet_group.command("send")
@click.argument("amount", type=click.IntRange(min=1))
@home_option
@json_option
@pass_cli
def wallet_send(cli_ctx: CliContext, amount: int, as_json: bool) -> None:
    """Take AMOUNT sat out of the wallet as a token to give someone (it is bearer money)."""

    async def local(w: Any) -> dict[str, Any]:
        return {"token": await w.send(amount)}

    out = _wallet_call(cli_ctx, "POST", "/v1/pay/wallet/send", {"amount": amount}, local)
    if as_json:
        print_json(out)
    else:
        click.echo(out["token"])


COMMANDS: list[click.Command] = [pay_group]
