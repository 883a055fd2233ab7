"""Shared CLI pieces: the context object, JSON output, the ``bench`` group.

Each noun's commands live in their own ``cli_<noun>.py`` and register on the root group in
:mod:`bitterbot.node.cli.main`. Commands are thin: parse, call, print. Errors are
:class:`~bitterbot.protocol.errors.BitterbotError` and are printed once, by ``main``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from bitterbot.node.config import Settings, default_home, load_settings
from bitterbot.node.home import Home


@dataclass
class CliContext:
    home_path: Path
    debug: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None

    def settings(self, **overrides: Any) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.home_path, self.overrides)
        if overrides:
            return self._settings.with_overrides(overrides)
        return self._settings

    @property
    def home(self) -> Home:
        return Home(self.home_path)


pass_cli = click.make_pass_decorator(CliContext)


def home_option(f: Any) -> Any:
    """``--home`` on a subcommand too (``bitterbot node status --home DIR``)."""

    def set_home(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        if value is not None:
            cli = ctx.ensure_object(CliContext)
            cli.home_path = value.expanduser().absolute()
            cli._settings = None

    return click.option(
        "--home",
        type=click.Path(path_type=Path),
        default=None,
        expose_value=False,
        callback=set_home,
        is_eager=True,
        help="node home folder (default ~/.bitterbot)",
    )(f)


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def stderr(message: str) -> None:
    click.echo(message, err=True)


def default_context() -> CliContext:
    return CliContext(home_path=default_home())


@click.group("bench")
def bench() -> None:
    """Benchmarks: each prints JSON numbers."""


def is_tty() -> bool:
    return sys.stdout.isatty()
