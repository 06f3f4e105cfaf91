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
    """When this process first saw each key of a collection that changes under it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seen: dict[str, float] = {}

    def oldest(self, keys: Collection[str]) -> float | None:
        """The earliest first sighting among ``keys`` (now, for a key not seen before); None
        when ``keys`` is empty. Keys gone from ``keys`` are forgotten."""
        seen = self.seen
        for key in [k for k in seen if k not in keys]:
            del seen[key]
        now = self.clock()
        return min((seen.setdefault(k, now) for k in keys), default=None)


__all__ = ["PendingSince"]
