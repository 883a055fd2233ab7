"""Chat history in LMDB: one ordered list of messages per session.

Database ``chat_history``; key ``<session>\\x00<seq as 16 hex digits>`` so a prefix scan
returns a session's messages in order; value ``{"role", "content", "ts"}``. Sessions are
named by the caller (``bitterbot chat --session NAME``; default ``default``).
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from bitterbot.node.store import Store, Txn
from bitterbot.protocol.errors import ValidationError

DB = "chat_history"
ROLES = {"system", "user", "assistant"}
MAX_SESSION_CHARS = 64
MAX_MESSAGE_CHARS = 1 << 20


def _prefix(session: str) -> bytes:
    if not session or len(session) > MAX_SESSION_CHARS or "\x00" in session:
        raise ValidationError(
            f"bad chat session name {session[:80]!r}",
            hint=f"use 1 to {MAX_SESSION_CHARS} characters, no NUL",
        )
    return session.encode("utf-8") + b"\x00"


def _last(txn: Txn, prefix: bytes) -> tuple[bytes, Any] | None:
    with closing(txn.items(DB, prefix, reverse=True)) as items:  # closes the cursor now
        return next(items, None)


class ChatHistory:
    def __init__(self, store: Store) -> None:
        self.store = store

    def messages(self, session: str = "default") -> list[dict[str, str]]:
        """The session's messages, oldest first, as ``{"role", "content"}``."""
        with self.store.read() as txn:
            return [
                {"role": v["role"], "content": v["content"]}
                for _, v in txn.items(DB, _prefix(session))
            ]

    def append(self, session: str, role: str, content: str, *, ts: float) -> int:
        """Store one message durably; returns its sequence number in the session."""
        if role not in ROLES:
            raise ValidationError(f"bad chat role {role!r}", hint="system, user or assistant")
        if len(content) > MAX_MESSAGE_CHARS:
            raise ValidationError("chat message too long", hint="send a shorter message")
        prefix = _prefix(session)

        def put(txn: Txn) -> int:
            last = _last(txn, prefix)
            seq = 0 if last is None else int(last[0][len(prefix) :], 16) + 1
            txn.put(DB, prefix + b"%016x" % seq, {"role": role, "content": content, "ts": ts})
            return seq

        return self.store.transact(put)

    def reset(self, session: str = "default") -> int:
        """Forget the session; returns how many messages were removed."""
        prefix = _prefix(session)

        def drop(txn: Txn) -> int:
            keys = [k for k, _ in txn.items(DB, prefix)]
            for key in keys:
                txn.delete(DB, key)
            return len(keys)

        return self.store.transact(drop)

    def sessions(self) -> dict[str, int]:
        """Session name -> message count."""
        counts: dict[str, int] = {}
        with self.store.read() as txn:
            for key, _ in txn.items(DB):
                name = key.split(b"\x00", 1)[0].decode("utf-8", "replace")
                counts[name] = counts.get(name, 0) + 1
        return counts

    def last(self, session: str = "default") -> dict[str, Any] | None:
        with self.store.read() as txn:
            item = _last(txn, _prefix(session))
        return None if item is None else dict(item[1])
