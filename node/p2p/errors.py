"""Where py-libp2p's errors become ours: one translation, used at every libp2p boundary.

py-libp2p raises many unrelated exception types (stream resets, muxer and security errors,
multiaddr parse errors) with no common base, plus plain ``OSError`` and trio's broken
resource errors from the transport. Like httpx mapping httpcore errors in one place, code
that calls libp2p wraps the call::

    with libp2p_errors("cannot open /x to peer", hint="..."):
        await host.new_stream(...)          # -> NetworkError (or the given class), chained

    with ignore_libp2p_errors("closing the host"):
        await host.close()                  # expected to fail when the peer is gone: logged

Our own errors pass through untouched; anything else (a bug) propagates unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from bitterbot.protocol.errors import BitterbotError, NetworkError

logger = logging.getLogger(__name__)

#: Transport failures that are not libp2p's own types.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


def is_libp2p_error(exc: BaseException) -> bool:
    """True for exceptions raised by py-libp2p or multiaddr (translate them at our boundary)."""
    return type(exc).__module__.startswith(("libp2p", "multiaddr"))


def is_transport_error(exc: BaseException) -> bool:
    """A libp2p error or a transport failure: the network's fault, not a bug of ours."""
    return is_libp2p_error(exc) or isinstance(exc, TRANSPORT_ERRORS)


def describe_error(exc: BaseException) -> str:
    """A one-line reason a user can read (dial failures say what they mean)."""
    name = type(exc).__name__
    if name in {"SwarmDialAllFailedError", "OpenConnectionError"}:
        return "connection refused or no route to it"
    text = str(exc).strip()
    return f"{name}: {text}" if text else name


@contextmanager
def libp2p_errors(
    message: str, *, error: type[BitterbotError] = NetworkError, hint: str | None = None
) -> Iterator[None]:
    """Raise ``error(message: reason)`` from a libp2p or transport failure inside."""
    try:
        yield
    except BitterbotError:
        raise
    except Exception as exc:
        if not is_transport_error(exc):
            raise
        raise error(f"{message}: {describe_error(exc)}", hint=hint) from exc


@contextmanager
def ignore_libp2p_errors(
    what: str, *, also: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Log (debug) and drop a libp2p or transport failure inside: for closes and refreshes
    whose failure is expected when a peer is gone."""
    try:
        yield
    except BitterbotError:
        raise
    except Exception as exc:
        if not is_transport_error(exc) and not isinstance(exc, also):
            raise
        logger.debug("%s: %r", what, exc)
