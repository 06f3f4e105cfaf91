"""Who may publish what: the origin of a connection, and the privileged topics it may send.

A connection's origin is the name ZeroMQ's authenticator gave it (the admitted key's host
name, hexbus/keys.py), or ``local`` where no authenticator runs (the 0700 ipc run directory,
the broker's own inproc sockets). A CURVE connection without a name (an authenticator that
stopped answering) is ``unknown`` and privileged nowhere.

Privileged topics (schemas.PRIVILEGED) are honoured from ``bus.privileged_origins`` and, one
family at a time, from the hosts ``bus.origin_grants`` names: a GPU host running stt is granted
``chat.message`` (speech becomes a person's message there), and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import zmq

from hexbus.codec import MAX_TOPIC_BYTES, Envelope, RejectedFrame, peek
from hexbus.keys import LOCAL
from schemas import DeadLetter, Delivery, delivery_of, privileged

UNKNOWN: Final = "unknown"


def origin_of(frame: zmq.Frame, curve: bool = False) -> str:
    """The origin of a received frame; ``curve``: its socket admits hosts by key."""
    try:
        name = frame.get("User-Id")
    except zmq.ZMQError:
        name = None
    if isinstance(name, str) and name:
        return name
    return UNKNOWN if curve else LOCAL


class Origins:
    """The rule the broker applies on the durable path and its lanes apply on the volatile one."""

    def __init__(
        self, full: Iterable[str], grants: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self.full = frozenset(full)
        self.grants = {origin: tuple(families) for origin, families in (grants or {}).items()}
        self.owners: dict[int, str] = {}  # producer session -> the origin that first used it

    def check(self, origin: str, envelope: Envelope) -> None:
        """Raise :class:`RejectedFrame` (kind ``origin``) for a durable event ``origin`` may not
        publish."""
        if not self.allows(origin, envelope.topic):
            raise RejectedFrame("origin", self.refusal(origin, envelope.topic))
        body = envelope.body
        if isinstance(body, DeadLetter) and origin not in self.full:
            # `hexbus deadletter retry` applies the event a letter carries: it must be one the
            # letter's origin could have published itself.
            inner = peek(body.envelope)
            if inner is None or not self.allows(origin, inner.topic):
                raise RejectedFrame("origin", self.refusal(origin, f"a letter of {body.topic}"))
        if not self.owns(origin, envelope.session):
            owner = self.owners[envelope.session]
            raise RejectedFrame("origin", f"session {envelope.session:x} belongs to {owner}")

    def owns(self, origin: str, session: int) -> bool:
        """Whether ``session`` is ``origin``'s (the first to use it, since the broker started):
        deduplication is by session, so nobody may write, or use up numbers, in another's."""
        return self.owners.setdefault(session, origin) == origin

    def allows_volatile(self, origin: str, topic: str) -> bool:
        """On the volatile lanes, besides: a durable family travels there only as the broker's
        own copy for observers (with the origin it stamped), never from another host."""
        if origin in self.full:
            return True
        try:
            durable = delivery_of(topic) is Delivery.DURABLE
        except KeyError:
            return self.allows(origin, topic)  # an unknown family: every receiver rejects it
        return not durable and self.allows(origin, topic)

    def allows(self, origin: str, topic: str) -> bool:
        if origin in self.full:
            return True
        if len(topic) > MAX_TOPIC_BYTES:  # no receiver decodes it; never worth a cache entry
            return False
        if not privileged(topic):
            return True
        return any(topic == g or topic.startswith(g + ".") for g in self.grants.get(origin, ()))

    @staticmethod
    def refusal(origin: str, topic: str) -> str:
        return (
            f"origin {origin} may not publish {topic[:80]}: control, memory, chat and persona "
            "requests need bus.privileged_origins (or bus.origin_grants for one family)"
        )
