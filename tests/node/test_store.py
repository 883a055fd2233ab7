"""LMDB store: named databases, ordering, schema version, durability under SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bitterbot.node import store as store_module
from bitterbot.node.store import SCHEMA_VERSION, Store
from bitterbot.protocol.errors import StoreError


def test_values_round_trip_through_named_databases(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    with s.write() as txn:
        txn.put("alpha", "k1", {"n": 1, "b": b"\x00\xff", "l": [1, "x"]})
        txn.put("beta", "k1", "other database")
    with s.read() as txn:
        assert txn.get("alpha", "k1") == {"n": 1, "b": b"\x00\xff", "l": [1, "x"]}
        assert txn.get("beta", "k1") == "other database"
        assert txn.get("alpha", "missing", "dflt") == "dflt"
        assert txn.get("never-written", "k") is None
        assert txn.count("alpha") == 1


def test_prefix_iteration_in_both_directions(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    with s.write() as txn:
        for key in ["a/1", "a/2", "a/3", "b/1", "a\xff"]:
            txn.put("items", key, key)
    with s.read() as txn:
        assert [k for k, _ in txn.items("items", "a/")] == [b"a/1", b"a/2", b"a/3"]
        assert [k for k, _ in txn.items("items", "a/", reverse=True)] == [b"a/3", b"a/2", b"a/1"]
        assert [v for _, v in txn.items("items", "b/")] == ["b/1"]
        assert list(txn.items("items", "zzz")) == []


def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    with pytest.raises(RuntimeError), s.write() as txn:
        txn.put("items", "k", 1)
        raise RuntimeError("boom")
    with s.read() as txn:
        assert txn.get("items", "k") is None


def test_full_map_grows_and_retry_succeeds(tmp_path: Path) -> None:
    s = Store(tmp_path / "db", map_size=256 * 1024)
    blob = os.urandom(64 * 1024)

    def fill(txn: store_module.Txn) -> int:
        for i in range(16):
            txn.put("blobs", f"{i}", blob)
        return txn.count("blobs")

    assert s.transact(fill) == 16
    with s.read() as txn:
        assert txn.get("blobs", "15") == blob


def test_schema_version_is_recorded_and_migrations_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db"
    Store(path).close()
    s = Store(path)
    assert s.schema_version == SCHEMA_VERSION
    s.close()

    ran: list[int] = []

    def m1(txn: store_module.Txn) -> None:
        ran.append(1)
        txn.put("items", "migrated", True)

    def m2(txn: store_module.Txn) -> None:
        ran.append(2)

    monkeypatch.setattr(store_module, "MIGRATIONS", [m1, m2])
    s = Store(path)
    assert ran == [1, 2]
    assert s.schema_version == SCHEMA_VERSION + 2
    with s.read() as txn:
        assert txn.get("items", "migrated") is True
    s.close()
    Store(path).close()  # already migrated: nothing runs again
    assert ran == [1, 2]


def test_database_from_a_newer_build_is_refused(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    with s.write() as txn:
        txn.put("meta", "schema_version", SCHEMA_VERSION + 50)
    s.close()
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path / "db")


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bitterbot.node.store import Store
    s = Store(Path(sys.argv[1]))
    i = 0
    while True:
        with s.write() as txn:
            txn.put("acked", f"{i:08d}", {"i": i, "pad": "x" * 512})
        print(i, flush=True)  # acknowledged only after the commit returned
        i += 1
    """
)


def test_nothing_acknowledged_is_lost_after_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    acked = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        acked = int(line)
        if acked >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    s = Store(path)
    with s.read() as txn:
        for i in range(acked + 1):
            assert txn.get("acked", f"{i:08d}") == {"i": i, "pad": "x" * 512}


def test_database_first_read_then_written_after_reopening(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    with s.write() as txn:
        txn.put("items", "a", 1)
    s.close()
    s = Store(tmp_path / "db")
    with s.read() as txn:
        assert txn.get("items", "a") == 1
        assert txn.get("fresh", "x") is None
    with s.write() as txn:
        txn.put("items", "b", 2)
        txn.put("fresh", "x", 3)
    with s.read() as txn:
        assert txn.get("items", "b") == 2 and txn.get("fresh", "x") == 3


def test_database_created_by_another_process_is_readable_and_writable(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    with s.read() as txn:
        assert txn.get("made-elsewhere", "k") is None
    subprocess.run(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from bitterbot.node.store import Store;"
         "s = Store(Path(sys.argv[1]));"
         "exec('with s.write() as t: t.put(\"made-elsewhere\", \"k\", 7)')",
         str(tmp_path / "db")],
        check=True, timeout=60,
    )  # fmt: skip
    with s.read() as txn:
        assert txn.get("made-elsewhere", "k") == 7
    with s.write() as txn:
        txn.put("made-elsewhere", "k2", 8)
    with s.read() as txn:
        assert [v for _, v in txn.items("made-elsewhere")] == [7, 8]
