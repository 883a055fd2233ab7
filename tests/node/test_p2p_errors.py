"""libp2p's errors become ours in one place (node/p2p/errors.py); bugs are not swallowed."""

from __future__ import annotations

import pytest
import trio
from libp2p.stream_muxer.exceptions import MuxedStreamReset

from bitterbot.node.p2p.errors import ignore_libp2p_errors, libp2p_errors
from bitterbot.node.p2p.framing import StreamClosed
from bitterbot.protocol.errors import (
    NetworkError,
    NotFoundError,
    ValidationError,
    first_error,
    leaf_errors,
)


@pytest.mark.parametrize(
    "foreign", [MuxedStreamReset("reset by peer"), OSError("refused"), trio.BrokenResourceError()]
)
def test_libp2p_and_transport_errors_become_network_errors_chained(foreign: Exception) -> None:
    with pytest.raises(StreamClosed) as err, libp2p_errors("reading", error=StreamClosed):
        raise foreign
    assert err.value.__cause__ is foreign
    assert err.value.message.startswith("reading: ") and isinstance(err.value, NetworkError)


def test_our_errors_and_bugs_pass_through_untranslated() -> None:
    with pytest.raises(ValidationError), libp2p_errors("x"):
        raise ValidationError("bad record")
    with pytest.raises(KeyError), libp2p_errors("x"):
        raise KeyError("a bug")
    with pytest.raises(KeyError), ignore_libp2p_errors("x"):
        raise KeyError("a bug")


def test_expected_failures_of_closes_are_dropped_and_others_kept() -> None:
    with ignore_libp2p_errors("closing"):
        raise MuxedStreamReset("gone")
    with ignore_libp2p_errors("closing", also=(ValueError,)):
        raise ValueError("a bad record")
    with pytest.raises(NotFoundError), ignore_libp2p_errors("closing"):
        raise NotFoundError("ours")


def test_the_error_inside_nested_exception_groups_is_found() -> None:
    ours = NotFoundError("no skill named x")
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [KeyError("k"), ours])])
    assert leaf_errors(group)[1] is ours and len(leaf_errors(group)) == 2
    assert first_error(group) is ours
    assert first_error(group, OSError) is None
    assert leaf_errors(ours) == [ours]
