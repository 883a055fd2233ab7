"""README and SPEC tell the truth about what the code defines."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

from bitterbot.node.cli.common import bench
from bitterbot.node.cli.main import cli
from bitterbot.node.config import SETTINGS

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SPEC = (ROOT / "SPEC.md").read_text(encoding="utf-8")


def readme_commands() -> list[list[str]]:
    """Every `bitterbot ...` invocation in README (code blocks and inline code)."""
    found = re.findall(r"(?:^|`)(bitterbot [^`\n#]+)", README, flags=re.M)
    return [shlex.split(cmd.strip())[1:] for cmd in found]


def resolve(words: list[str]) -> click.Command:
    command: click.Command = cli
    for word in words:
        if word.startswith("-") or not isinstance(command, click.Group):
            break
        sub = command.get_command(click.Context(command), word)
        if sub is None:
            break
        command = sub
    return command


def test_every_command_in_the_readme_exists() -> None:
    commands = readme_commands()
    assert len(commands) > 20
    for words in commands:
        command = resolve(words)
        assert command is not cli, f"README names an unknown command: bitterbot {' '.join(words)}"
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        for word in words:
            flag = word.split("=", 1)[0]
            if flag.startswith("--"):
                assert flag in options, f"README uses {flag} on `bitterbot {' '.join(words)}`"


def test_every_benchmark_is_in_the_readme() -> None:
    for name in bench.commands:
        assert f"bitterbot bench {name}" in README, f"bench {name} is missing from README"


def test_every_settings_section_is_known_to_config_show() -> None:
    sections = {s.name.split(".")[0] for s in SETTINGS}
    for table in re.findall(r"^\[(\w+)\]$", README, flags=re.M):
        assert table in sections, f"README shows a [{table}] config section that does not exist"


def test_spec_lists_every_protocol_id_the_code_serves() -> None:
    from bitterbot.protocol import transfer

    ids = [transfer.PROTOCOL_ID]
    for module in ("bitterbot.node.pay.service", "bitterbot.node.rep.service"):
        mod = __import__(module, fromlist=["PROTOCOL_ID"])
        ids.extend(
            v
            for k, v in vars(mod).items()
            if k.endswith("PROTOCOL") or k.endswith("PROTOCOL_ID")
            if isinstance(v, str) and v.startswith("/")
        )
    for pid in ids:
        assert f"`{pid}`" in SPEC, f"{pid} is served but not in SPEC.md"
