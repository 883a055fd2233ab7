"""A real nutshell mint on 127.0.0.1 for Cashu tests (import the fixture into a test module).

    from cashu_mint_fixture import cashu_mint  # noqa: F401  (the fixture)

One mint per test module (starting one takes a few seconds), with its SQLite database in
the module's temporary folder; stopped when the module ends. Needs ``make mint-env``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bitterbot.node.pay.cashu_mint import LocalMint


@pytest.fixture(scope="module")
def cashu_mint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMint]:
    with LocalMint(tmp_path_factory.mktemp("mint")) as mint:
        yield mint
