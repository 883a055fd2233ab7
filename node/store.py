"""LMDB store: named databases, msgpack values, a schema version and ordered migrations.

Every committed write transaction is durable (LMDB's default ``sync=True``): once a
``with store.write()`` block returns, the data survives ``kill -9`` and power loss. Code that
acknowledges something to a peer does so only after that block returns.

Blocking: LMDB calls are fast for single records; bulk writes from async code go through
``trio.to_thread.run_sync`` (see :meth:`Store.run`).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgpack

from bitterbot.protocol.errors import StoreError

T = TypeVar("T")

SCHEMA_VERSION = 1
META_DB = "meta"
MAX_DBS = 64
DEFAULT_MAP_SIZE = 1 << 30  # sparse on Linux; grows on MapFullError


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _key(key: bytes | str) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


Migration = Callable[["Txn"], None]

#: Ordered migrations: MIGRATIONS[n] upgrades schema n to n+1. Append only.
MIGRATIONS: list[Migration] = []


class Txn:
    """A transaction with msgpack values over named databases."""

    def __init__(self, store: Store, txn: lmdb.Transaction, write: bool) -> None:
        self._store = store
        self.raw = txn
        self.write = write
        self.opened: list[str] = []

    def _db(self, name: str) -> Any:
        handle = self._store._dbs.get(name)
        if handle is None:
            if self.write:
                handle = self._store.env.open_db(name.encode(), txn=self.raw, create=True)
                self.opened.append(name)
            else:
                # The main database lists the named ones. A handle opened inside a read
                # transaction cannot be written through later (mdb_put: Invalid argument),
                # so open it in its own write transaction, then renew this read snapshot,
                # which cannot see handles opened after it began.
                if self.raw.get(name.encode()) is None:
                    return None  # never written: empty
                handle = self._store.env.open_db(name.encode(), create=False)
                self.raw.abort()
                self.raw = self._store.env.begin(write=False)
            self._store._dbs[name] = handle
        return handle

    def get(self, db: str, key: bytes | str, default: Any = None) -> Any:
        handle = self._db(db)
        data = None if handle is None else self.raw.get(_key(key), db=handle)
        return default if data is None else unpack(bytes(data))

    def put(self, db: str, key: bytes | str, value: Any, *, overwrite: bool = True) -> bool:
        ok: bool = self.raw.put(_key(key), pack(value), db=self._db(db), overwrite=overwrite)
        return ok

    def delete(self, db: str, key: bytes | str) -> bool:
        ok: bool = self.raw.delete(_key(key), db=self._db(db))
        return ok

    def items(
        self, db: str, prefix: bytes | str = b"", *, reverse: bool = False
    ) -> Generator[tuple[bytes, Any], None, None]:
        """Items whose key starts with ``prefix``, in key order (or reversed)."""
        prefix = _key(prefix)
        handle = self._db(db)
        if handle is None:
            return
        with self.raw.cursor(db=handle) as cur:
            if reverse:
                upper = _prefix_end(prefix)
                if upper is None or not cur.set_range(upper):
                    positioned = cur.last()
                else:
                    positioned = cur.prev()
                while positioned:
                    k = bytes(cur.key())
                    if not k.startswith(prefix):
                        break
                    yield k, unpack(bytes(cur.value()))
                    positioned = cur.prev()
                return
            if not cur.set_range(prefix):
                return
            for raw_key, v in cur:
                k = bytes(raw_key)
                if not k.startswith(prefix):
                    break
                yield k, unpack(bytes(v))

    def count(self, db: str) -> int:
        handle = self._db(db)
        if handle is None:
            return 0
        n: int = self.raw.stat(handle)["entries"]
        return n


def _prefix_end(prefix: bytes) -> bytes | None:
    """Smallest key greater than every key with ``prefix`` (None: no upper bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


class Store:
    def __init__(
        self, path: Path, *, map_size: int = DEFAULT_MAP_SIZE, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=MAX_DBS,
                subdir=True,
                readonly=readonly,
                max_readers=256,
            )
        except lmdb.Error as exc:
            raise StoreError(
                f"cannot open the database in {self.path}: {exc}",
                hint="check the folder's permissions and free disk space",
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"cannot create {self.path}: {exc.strerror}", hint="choose a writable home"
            ) from exc
        self._dbs: dict[str, Any] = {}
        if not readonly:
            self._migrate()
            self._open_existing()

    # --- transactions ---------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Txn]:
        try:
            txn = Txn(self, self.env.begin(write=False), write=False)
        except lmdb.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc
        try:
            yield txn
        except lmdb.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc
        finally:
            txn.raw.abort()  # may have been renewed (see Txn._db): end the current one

    @contextmanager
    def write(self) -> Iterator[Txn]:
        """A write transaction, durable once the block exits without error.

        On a full map the transaction is aborted, the map doubled, and ``StoreError`` with
        code ``retry`` raised; :meth:`transact` retries for you.
        """
        try:
            raw = self.env.begin(write=True)
        except lmdb.Error as exc:
            raise StoreError(f"database write failed: {exc}") from exc
        txn = Txn(self, raw, write=True)
        try:
            yield txn
            raw.commit()
        except BaseException as exc:
            raw.abort()
            for name in txn.opened:  # handles opened in an aborted txn are invalid
                self._dbs.pop(name, None)
            if isinstance(exc, lmdb.MapFullError):
                self._grow()
                raise StoreError("database map grew; retry the write", code="retry") from exc
            if isinstance(exc, lmdb.Error):
                if isinstance(exc, lmdb.DiskError) or getattr(exc, "errno", None) == errno.ENOSPC:
                    raise StoreError(
                        "the disk is full; nothing was written", hint="free disk space and retry"
                    ) from exc
                raise StoreError(f"database write failed: {exc}") from exc
            raise

    def _grow(self) -> None:
        self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def transact(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction; retries once the map has grown when it was full."""
        for _ in range(8):
            try:
                with self.write() as txn:
                    return fn(txn)
            except StoreError as exc:
                if exc.code != "retry":
                    raise
        raise StoreError("database is full", hint="free disk space")

    async def run(self, fn: Callable[[Txn], T]) -> T:
        """:meth:`transact` in a worker thread, for async callers doing bulk work."""
        import trio

        return await trio.to_thread.run_sync(self.transact, fn)

    # --- schema ---------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        with self.read() as txn:
            return int(txn.get(META_DB, "schema_version", 0))

    def _migrate(self) -> None:
        with self.write() as txn:
            current = int(txn.get(META_DB, "schema_version", 0))
            if current > SCHEMA_VERSION + len(MIGRATIONS):
                raise StoreError(
                    f"the database in {self.path} has schema {current}, newer than this build knows",
                    hint="upgrade bitterbot",
                )
            if current == 0:
                txn.put(META_DB, "schema_version", SCHEMA_VERSION)
                current = SCHEMA_VERSION
            while current < SCHEMA_VERSION + len(MIGRATIONS):
                MIGRATIONS[current - SCHEMA_VERSION](txn)
                current += 1
                txn.put(META_DB, "schema_version", current)

    def _open_existing(self) -> None:
        """Open every named database now, in a write transaction (see ``Txn._db``)."""
        with self.env.begin(write=True) as txn:
            names = [bytes(k).decode("utf-8", "replace") for k, _ in txn.cursor()]
            for name in names:
                if name not in self._dbs:
                    try:
                        self._dbs[name] = self.env.open_db(name.encode(), txn=txn, create=False)
                    except lmdb.Error:
                        continue  # a plain key in the main database, not a named one

    def close(self) -> None:
        self.env.close()
