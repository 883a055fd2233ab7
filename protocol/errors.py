"""The one error hierarchy of Bitterbot.

Every error a user can meet derives from :class:`BitterbotError` and carries a stable
``code`` (never renamed once shipped) and a ``hint`` that says what to do next::

    BitterbotError
    ├── WireError                 bad bytes from the network or a file
    │   ├── TooLargeError         over the size limit, refused before parsing
    │   ├── DecodeError           not canonical msgpack, wrong shape or types
    │   ├── UnknownVersionError   a version or kind this build does not speak
    │   └── SignatureError        signature does not verify for the claimed key
    ├── StaleError                timestamp too old / too far in the future, replay, rollback
    ├── ValidationError           well-formed but semantically invalid input
    ├── ConfigError               bad settings, flags or config file
    ├── HomeError                 the node's home: permissions, corrupt key, already running
    ├── StoreError                LMDB problems (full disk, corrupt environment)
    ├── NetworkError              libp2p: dial failures, unreachable seeds, ports in use
    ├── ModelError                model backends: missing model, context overflow, unreachable server
    ├── SkillError                skill packages and the sandbox
    │   └── SandboxViolation      a skill tried something it was not granted
    ├── PaymentError              payment channels, vouchers, licenses
    ├── NotFoundError             the named thing does not exist
    └── NotRunningError           a part of the node (agent, market, payments) is not running

Subsystems add subclasses; they never raise bare exceptions across a boundary. Foreign
errors (lmdb, libp2p, wasmtime, httpx) are translated where they enter, with ``raise ...
from``.
"""

from __future__ import annotations


class BitterbotError(Exception):
    """Base of every Bitterbot error: a stable ``code``, a message and a hint."""

    code: str = "bitterbot_error"
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class WireError(BitterbotError):
    code = "wire_error"


class TooLargeError(WireError):
    code = "too_large"


class DecodeError(WireError):
    code = "decode_error"


class UnknownVersionError(WireError):
    code = "unknown_version"


class SignatureError(WireError):
    code = "bad_signature"


class StaleError(BitterbotError):
    code = "stale"


class ValidationError(BitterbotError):
    code = "invalid"


class ConfigError(BitterbotError):
    code = "config_error"
    exit_code = 2


class HomeError(BitterbotError):
    code = "home_error"


class StoreError(BitterbotError):
    code = "store_error"


class NetworkError(BitterbotError):
    code = "network_error"


class ModelError(BitterbotError):
    code = "model_error"


class SkillError(BitterbotError):
    code = "skill_error"


class SandboxViolation(SkillError):
    code = "sandbox_violation"


class PaymentError(BitterbotError):
    code = "payment_error"


class NotFoundError(BitterbotError):
    code = "not_found"


class NotRunningError(BitterbotError):
    """A part of the node is not running in this process (the local API answers 503)."""

    code = "not_running"


def leaf_errors(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; ``[exc]`` for a plain one.

    trio nurseries wrap whatever their tasks raise in groups; the boundaries that print or
    answer an error (CLI, API, simnet) want the one that says what went wrong.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return [exc]
    out: list[BaseException] = []
    for inner in exc.exceptions:
        out.extend(leaf_errors(inner))
    return out


def first_error(
    exc: BaseException,
    kinds: type[BaseException] | tuple[type[BaseException], ...] = BitterbotError,
) -> BaseException | None:
    """The first leaf of ``exc`` (see :func:`leaf_errors`) that is one of ``kinds``."""
    return next((e for e in leaf_errors(exc) if isinstance(e, kinds)), None)
