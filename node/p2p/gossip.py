"""The gossipsub half of :class:`~bitterbot.node.p2p.host.P2PHost`: subscribe and publish.

A mixin: it uses the host's ``_pubsub``, ``config``, ``_stopping`` and ``_require_running``.
Limits (SPEC.md 4.6): payloads up to 64 KiB, dropped before the topic validator when larger;
py-libp2p allows 10 messages per second per peer per topic, our own publishes included.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from bitterbot.node.p2p.errors import ignore_libp2p_errors, libp2p_errors
from bitterbot.protocol.errors import BitterbotError, TooLargeError, ValidationError

logger = logging.getLogger(__name__)

MAX_GOSSIP_BYTES = 64 * 1024
GOSSIP_HEARTBEAT_S = 1
IDONTWANT_MIN_BYTES = 1024  # go-libp2p's IDontWantMessageThreshold
GOSSIP_RATE_PER_TOPIC = 10.0  # py-libp2p's per-peer, per-topic messages/s (own ones too)

GossipValidator = Callable[[str, bytes], Any]


@dataclass(frozen=True)
class GossipMessage:
    topic: str
    data: bytes
    from_peer: str  # origin (signed by it)
    seqno: bytes


class _Subscription:
    def __init__(self, host: GossipMixin, topic: str, raw: Any) -> None:
        self._host = host
        self.topic = topic
        self._raw = raw

    def __aiter__(self) -> AsyncIterator[GossipMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[GossipMessage]:
        from libp2p.peer.id import ID

        async for msg in self._raw:
            yield GossipMessage(
                topic=self.topic,
                data=bytes(msg.data),
                from_peer=ID(msg.from_id).to_base58(),
                seqno=bytes(msg.seqno),
            )

    async def unsubscribe(self) -> None:
        await self._host._unsubscribe(self.topic)


class GossipMixin:
    _pubsub: Any
    _gossip: Any
    _stopping: bool
    config: Any

    def _require_running(self) -> None:
        raise NotImplementedError

    @asynccontextmanager
    async def subscribe(
        self, topic: str, validator: GossipValidator | None = None
    ) -> AsyncIterator[_Subscription]:
        """Subscribe to ``topic``; iterate the context value for :class:`GossipMessage`.

        ``validator(from_peer, data)`` returns True to accept; False or a BitterbotError
        drops the message and it is not forwarded. Prefer a synchronous validator (it lets
        gossipsub drop concurrent copies of a message); an ``async def`` one is awaited.
        Messages over the size limit are dropped before the validator runs.
        """
        self._require_running()
        if topic in self._pubsub.topic_ids:
            raise ValidationError(
                f"already subscribed to {topic!r}", hint="one subscription per topic per node"
            )
        limit = self.config.max_gossip_bytes
        from libp2p.peer.id import ID

        def accept(msg: Any) -> Any:
            if len(msg.data) > limit:
                return False
            if validator is None:
                return True
            return validator(ID(msg.from_id).to_base58(), bytes(msg.data))

        def refused(exc: BitterbotError) -> bool:
            logger.debug("gossip on %s rejected: %s", topic, exc)
            return False

        if validator is not None and inspect.iscoroutinefunction(validator):

            async def check_async(forwarder: Any, msg: Any) -> bool:
                try:
                    return bool(await accept(msg))
                except BitterbotError as exc:
                    return refused(exc)

            self._pubsub.set_topic_validator(topic, check_async, True)
        else:
            # A synchronous validator runs before gossipsub can switch tasks, so the
            # message is marked seen before another copy of it is looked at.
            def check(forwarder: Any, msg: Any) -> bool:
                try:
                    return bool(accept(msg))
                except BitterbotError as exc:
                    return refused(exc)

            self._pubsub.set_topic_validator(topic, check, False)
        raw = await self._pubsub.subscribe(topic)
        sub = _Subscription(self, topic, raw)
        try:
            yield sub
        finally:
            if not self._stopping:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await self._unsubscribe(topic)

    async def _unsubscribe(self, topic: str) -> None:
        if self._pubsub is None or topic not in self._pubsub.topic_ids:
            return
        self._pubsub.remove_topic_validator(topic)
        with ignore_libp2p_errors(f"unsubscribe {topic}"):
            await self._pubsub.unsubscribe(topic)

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on ``topic`` (signed by this node). Our own topic validator runs
        on it too. py-libp2p limits each peer to 10 messages/s per topic: batch."""
        self._require_running()
        if len(data) > self.config.max_gossip_bytes:
            raise TooLargeError(
                f"gossip message of {len(data)} bytes, limit {self.config.max_gossip_bytes}"
            )
        with libp2p_errors(f"publish on {topic} failed"):
            await self._pubsub.publish(topic, data)

    def topic_peers(self, topic: str) -> list[str]:
        """Peers known to be subscribed to ``topic``."""
        return sorted(p.to_base58() for p in self._pubsub.peer_topics.get(topic, ()))

    def mesh_peers(self, topic: str) -> list[str]:
        """Peers in this node's gossipsub mesh for ``topic`` (full messages go to them)."""
        mesh = getattr(self._gossip, "mesh", {}) if self._gossip is not None else {}
        return sorted(p.to_base58() for p in mesh.get(topic, ()))


def flood_publishing_router(**options: Any) -> Any:
    """py-libp2p's GossipSub with two of go-libp2p's defaults it lacks (SPEC.md 4.6):

    - flood publishing: a message this node originates goes to every peer subscribed to
      the topic, not only to its mesh, which saves the first hop's fan-out; forwarded
      messages still travel along the mesh only;
    - IDONTWANT only for messages of at least ``IDONTWANT_MIN_BYTES``: py-libp2p sends one
      to every mesh peer for every message, doubling the RPCs a small message costs.
    """
    from libp2p.pubsub.gossipsub import GossipSub

    class BitterbotGossipSub(GossipSub):
        _small_message = False

        async def publish(self, msg_forwarder: Any, pubsub_msg: Any) -> None:
            # read by _emit_idontwant_for_message before publish() first awaits
            self._small_message = len(pubsub_msg.data) < IDONTWANT_MIN_BYTES
            await super().publish(msg_forwarder, pubsub_msg)

        async def _emit_idontwant_for_message(self, msg_id: Any, topic_ids: Any) -> None:
            if not self._small_message:
                await super()._emit_idontwant_for_message(msg_id, topic_ids)

        def _get_peers_to_send(
            self, topic_ids: Any, msg_forwarder: Any, origin: Any, msg_id: Any = None
        ) -> Any:
            peers = set(super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id))
            if self.pubsub is not None and origin == msg_forwarder == self.pubsub.my_id:
                for topic in topic_ids:
                    peers.update(
                        p
                        for p in self.pubsub.peer_topics.get(topic, ())
                        if p != origin and self._is_gossipsub_peer(p)
                    )
            yield from peers

    return BitterbotGossipSub(**options)
