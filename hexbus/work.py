"""How long work has waited: the ages behind ``Actor.oldest_work`` and the heartbeat's
``oldest_work_s``.

An actor's unfinished work is usually a collection it already keeps (the brain's
pending messages, STT's pending utterances, both in the state so they survive a
crash). :class:`PendingSince` dates each key the first time this process sees it,
so the actor needs no bookkeeping of its own and work restored after a restart
counts from the restart::

    def oldest_work(self) -> float | None:
        return self.pending_since.oldest(self.state.pending)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection


class PendingSince:
    """When this process first saw each key of a collection that changes under it, and when it
    last finished a piece of work (:meth:`progressed`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seen: dict[str, float] = {}
        self.progress: float | None = None

    def progressed(self) -> None:
        """A piece of work was finished (a reply, a transcript), or visibly moved on (a reply's
        words streaming out)."""
        self.progress = self.clock()

    def oldest(self, keys: Collection[str]) -> float | None:
        """The earliest first sighting among ``keys`` (now, for a key not seen before), or the
        last progress if later; None when ``keys`` is empty. Keys gone from ``keys`` are
        forgotten. So the age is how long the work has waited without anything getting done:
        an actor that keeps finishing work under a queue longer than ``work_timeout_s`` (five
        people talking to one small CPU) is slow, not hung, and is never restarted for it."""
        seen = self.seen
        for key in [k for k in seen if k not in keys]:
            del seen[key]
        now = self.clock()
        first = min((seen.setdefault(k, now) for k in keys), default=None)
        if first is None or self.progress is None:
            return first
        return max(first, self.progress)


__all__ = ["PendingSince"]
