"""The open tabs and what each is waiting to be sent, bounded.

The web actor's handlers hand a message to :meth:`Hub.to_channel` and return at once: each tab
has its own queue of at most ``client_queue`` messages, drained by that tab's writer. A tab that
does not read (a stalled connection, a laptop lid closed) fills its own queue and is dropped from
the stream with a notice; it never slows a handler, the responder or another tab.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

__all__ = ["Client", "Hub", "encode"]

log = structlog.get_logger("actors.web.hub")

DROP_GRACE_S = 5.0  # a dropped tab's notice gets this long to leave before its writer is cancelled

_ids = itertools.count(1)


@dataclass(eq=False)
class Client:
    """One open tab: who it speaks for, the conversations it shows, what waits to be sent."""

    person_id: str
    owner: bool
    queue: asyncio.Queue[str]  # JSON texts, encoded once for every tab they go to
    id: int = field(default_factory=lambda: next(_ids))
    watching: set[str] = field(default_factory=set)  # channels whose replies it shows
    panels: set[str] = field(default_factory=set)  # other views it shows live ("runtime")
    dropped: str = ""  # why it was dropped from the stream ("" while it is in it)
    on_drop: Callable[[], object] | None = None  # cancels its writer after the grace period


class Hub:
    def __init__(self, *, max_clients: int, queue_size: int) -> None:
        self.max_clients = max_clients
        self.queue_size = queue_size
        self.clients: set[Client] = set()
        self.on_leave: list[Callable[[Client], object]] = []  # told when a tab goes
        self.dropped_total = 0

    def join(self, person_id: str, owner: bool) -> Client | str:
        """A new tab's client, or why it is refused."""
        if len(self.clients) >= self.max_clients:
            return (
                f"{len(self.clients)} tabs are open, the most this page serves (max_clients): "
                "close one and reload"
            )
        client = Client(person_id, owner, asyncio.Queue(maxsize=self.queue_size))
        self.clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            for gone in self.on_leave:
                gone(client)

    def send(self, client: Client, message: dict[str, Any]) -> None:
        """Queue ``message`` for ``client``; a full queue drops the tab (never waits)."""
        self._put(client, encode(message))

    def send_text(self, client: Client, text: str) -> None:
        """Queue a message already encoded (:func:`encode`), as :meth:`send` does."""
        self._put(client, text)

    def _put(self, client: Client, text: str) -> None:
        if client.dropped:
            return
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.drop(client, f"this tab fell {self.queue_size} messages behind: reload it")

    def drop(self, client: Client, why: str) -> None:
        """Take ``client`` out of the stream: its queue is emptied and holds only the notice."""
        if client.dropped:
            return
        client.dropped = why
        self.dropped_total += 1
        self.clients.discard(client)
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(encode({"t": "dropped", "text": why}))
        log.warning("web.client_dropped", client=client.id, why=why)
        if client.on_drop is not None:
            asyncio.get_running_loop().call_later(DROP_GRACE_S, client.on_drop)

    def to_channel(self, channel: str, message: dict[str, Any]) -> int:
        """Send to every tab showing ``channel``; how many."""
        text = ""
        sent = 0
        for client in list(self.clients):
            if channel in client.watching:
                text = text or encode(message)
                self._put(client, text)
                sent += 1
        return sent

    def to_all(self, message: dict[str, Any]) -> None:
        text = encode(message)
        for client in list(self.clients):
            self._put(client, text)


def encode(message: dict[str, Any]) -> str:
    """A message as the tabs get it: compact JSON, encoded once for every tab it goes to."""
    return json.dumps(message, separators=(",", ":"))
