"""The page's bus tail: ``hexbus tail`` in a tab, with topic filters, bounded.

A tab sends ``{"t": "tail", "prefixes": ["chat", "sys.actor"]}`` (``[]``: every topic) to
start or change its filter, and ``{"t": "tail", "off": true}`` to stop. While any tab tails,
one SUB socket of its own (not the actor's: the tail must never slow the actor's dispatch)
subscribes the union of their prefixes; each event becomes the line ``hexbus tail`` prints, and
every ``FLUSH_S`` each tab gets its new lines, at most ``LINES_PER_FLUSH`` (the rest counted as
skipped, so a flood of audio frames costs a tab a number, not its connection). Tabs with the same
filter share one batch, kept and encoded once for all of them: fifty tabs tailing the whole bus
cost an event one append, not fifty; the tabs' turns are spread over the interval. Pausing is
the page's: it stops drawing and keeps what comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import zmq
import zmq.asyncio

from actors.web.hub import Client, Hub, encode
from hexbus import codec
from hexbus.codec import RejectedFrame
from hexbus.endpoints import Endpoints, connect_address, secure_client
from hexbus.tail import render

__all__ = ["BusTail"]

FLUSH_S = 0.25
LINES_PER_FLUSH = 200
MAX_PREFIXES = 16
SLOTS = 10  # a flush reaches its tabs in this many turns, FLUSH_S / SLOTS apart


class Batch:
    """The lines one filter's tabs have not been sent yet."""

    __slots__ = ("lines", "skipped")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.skipped = 0


class BusTail:
    def __init__(
        self,
        hub: Hub,
        endpoints: Endpoints,
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    ) -> None:
        self.hub, self.endpoints, self.spawn = hub, endpoints, spawn
        self.tails: dict[Client, tuple[str, ...]] = {}
        self.batches: dict[tuple[str, ...], Batch] = {}  # one per filter some tab has
        self.task: asyncio.Task[Any] | None = None
        self.changed = asyncio.Event()

    def command(self, client: Client, message: dict[str, Any]) -> None:
        if message.get("off"):
            self._forget(client)
            return
        prefixes = message.get("prefixes", [])
        if (
            not isinstance(prefixes, list)
            or len(prefixes) > MAX_PREFIXES
            or not all(isinstance(p, str) and p.isascii() and len(p) <= 100 for p in prefixes)
        ):
            self.hub.send(
                client,
                {"t": "error", "text": f"a tail takes at most {MAX_PREFIXES} ASCII topic prefixes"},
            )
            return
        self._forget(client)  # its old filter's batch is not for its new one
        wanted = tuple(sorted(set(prefixes))) or ("",)
        self.tails[client] = wanted
        self.batches.setdefault(wanted, Batch())
        self.changed.set()
        if self.task is None or self.task.done():
            self.task = self.spawn(self._run(), "bus-tail")
        self.hub.send(client, {"t": "tailing", "prefixes": list(prefixes)})

    def _forget(self, client: Client) -> None:
        prefixes = self.tails.pop(client, None)
        if prefixes is not None and prefixes not in self.tails.values():
            self.batches.pop(prefixes, None)
        self.changed.set()

    async def _run(self) -> None:
        sock = zmq.asyncio.Context.instance().socket(zmq.SUB)
        sock.linger = 0
        sock.rcvhwm = 10_000
        if self.endpoints.curve_dir and self.endpoints.volatile_out.startswith("tcp://"):
            secure_client(sock, self.endpoints.curve_dir)
        sock.connect(connect_address(self.endpoints.volatile_out))
        sock.connect(connect_address(self.endpoints.volatile_big))
        subscribed: set[str] = set()
        flushed = asyncio.get_running_loop().time()
        try:
            while True:
                for client in [c for c in self.tails if c not in self.hub.clients]:
                    self._forget(client)  # the tab closed or was dropped
                if not self.tails:
                    return
                if self.changed.is_set():
                    self.changed.clear()
                    wanted = {p for prefixes in self.batches for p in prefixes}
                    for prefix in subscribed - wanted:
                        sock.unsubscribe(prefix.encode("ascii"))
                    for prefix in wanted - subscribed:
                        sock.subscribe(prefix.encode("ascii"))
                    subscribed = wanted
                if await sock.poll(int(FLUSH_S * 1000)):
                    self._take(await sock.recv_multipart())
                now = asyncio.get_running_loop().time()
                if now - flushed >= FLUSH_S:
                    flushed = now
                    self._flush()
        finally:
            sock.close(linger=0)

    def _take(self, frames: list[bytes]) -> None:
        try:
            envelope, blob = codec.decode_message(frames, self.endpoints.max_blob_mb << 20)
        except RejectedFrame as exc:
            line, topic = f"# rejected frame: {exc}", ""
        else:
            line, topic = render(envelope, blob, False)[:2000], envelope.topic
        for prefixes, batch in self.batches.items():
            if any(topic.startswith(p) for p in prefixes):
                if len(batch.lines) < LINES_PER_FLUSH:
                    batch.lines.append(line)
                else:
                    batch.skipped += 1

    def _flush(self) -> None:
        """Each filter's batch to its tabs, encoded once. The tabs' turns are spread over the
        interval (a tab always in the same slot, so its batches keep their order): fifty tabs
        written at one instant, and read at one instant by a browser on the same machine, take
        the cores together, and the responder waits."""
        loop = asyncio.get_running_loop()
        for prefixes, batch in self.batches.items():
            if not (batch.lines or batch.skipped):
                continue
            text = encode({"t": "tail", "lines": batch.lines, "skipped": batch.skipped})
            for client, wanted in self.tails.items():
                if wanted == prefixes:
                    turn = client.id % SLOTS * FLUSH_S / SLOTS
                    loop.call_later(turn, self._deliver, client, prefixes, text)
            self.batches[prefixes] = Batch()

    def _deliver(self, client: Client, prefixes: tuple[str, ...], text: str) -> None:
        # Not to a tab that stopped, changed its filter or closed since the flush.
        if self.tails.get(client) == prefixes and client in self.hub.clients:
            self.hub.send_text(client, text)
