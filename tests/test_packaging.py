"""A regular (non-editable) install carries everything, under the one `bitterbot` namespace."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_the_wheel_holds_the_four_packages_and_their_data_and_nothing_generic(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         str(ROOT), "-w", str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("bitterbot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("bitterbot-")}
    assert top == {"bitterbot"}  # no generic top-level name like `agent` in site-packages
    packages = {"/".join(n.split("/")[:2]) for n in names if n.count("/") >= 2}
    assert {
        "bitterbot/protocol",
        "bitterbot/agent",
        "bitterbot/node",
        "bitterbot/simnet",
    } <= packages
    for data in (
        "bitterbot/agent/builtin/calculator/calculator.wasm",
        "bitterbot/agent/builtin/file-search/file-search.wasm",
        "bitterbot/agent/builtin/summarize/SKILL.md",
        "bitterbot/simnet/scenarios/churn.toml",
    ):
        assert data in names, data
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "bitterbot = bitterbot.node.cli.main:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
