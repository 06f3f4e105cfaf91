"""The page's bus tail in-process, over a real SUB socket fed by a PUB standing in for the
broker's: tabs with the same filter get the same lines, a tab sees only its own filter's topics,
a flood is capped with the rest counted, and a tab that changes filter, stops or closes gets
nothing more of what it no longer asked for, not even a batch already on its way."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from actors.web import tail
from actors.web.hub import Client, Hub
from actors.web.tail import BusTail
from hexbus.codec import make_envelope, message_frames
from hexbus.config import BusConfig
from hexbus.endpoints import endpoints
from schemas import ChatAck, Event, ReplyChunk

WAIT_S = 15.0  # for what must come, on a loaded machine


class Tabs:
    """Tabs on a real hub, and every tail message each was sent."""

    def __init__(self) -> None:
        self.hub = Hub(max_clients=100, queue_size=1000)
        self.got: dict[Client, list[dict[str, Any]]] = {}

    def open(self, slot: int | None = None) -> Client:
        """A tab; with ``slot``, the first whose id puts it in that slot of a flush's turns."""
        while True:
            client = self.hub.join("owner", True)
            assert isinstance(client, Client)
            if slot is None or client.id % tail.SLOTS == slot:
                self.got[client] = []
                return client
            self.hub.leave(client)

    def collect(self) -> int:
        new = 0
        for client, got in self.got.items():
            while not client.queue.empty():
                message = json.loads(client.queue.get_nowait())
                if message["t"] == "tail":
                    got.append(message)
                    new += 1
        return new

    def lines(self, client: Client) -> list[str]:
        return [line for m in self.got[client] for line in m["lines"]]

    def counted(self, client: Client) -> int:
        return sum(len(m["lines"]) + m["skipped"] for m in self.got[client])

    def clear(self) -> None:
        for got in self.got.values():
            got.clear()

    async def until(self, check: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not check():
            assert asyncio.get_running_loop().time() < deadline, f"no {what} in {WAIT_S} s"
            await asyncio.sleep(0.005)
            self.collect()

    async def quiet(self) -> None:
        """Until nothing more has come for two flushes' time (what is on its way arrives)."""
        calm = 0.0
        while calm < tail.FLUSH_S * 2:
            await asyncio.sleep(0.05)
            calm = 0.0 if self.collect() else calm + 0.05


def test_tabs_get_their_filters_lines_once_and_nothing_after_they_stop() -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            ends = endpoints(BusConfig(), Path(tmp))
            pub = zmq.asyncio.Context.instance().socket(zmq.PUB)
            pub.bind(ends.volatile_out)
            tabs = Tabs()
            loop = asyncio.get_running_loop()
            bus_tail = BusTail(tabs.hub, ends, lambda coro, name: loop.create_task(coro, name=name))
            n = 0

            async def send(*events: Event) -> None:
                nonlocal n
                for event in events:
                    n += 1
                    envelope = make_envelope(event, event_id=f"e{n}", source="t", key="web")
                    await pub.send_multipart(message_frames(envelope))

            def chunk(i: int) -> ReplyChunk:
                return ReplyChunk(reply_to="r", channel="owner/c", index=i, text=f"w{i}")

            def ack(i: int) -> ChatAck:
                return ChatAck(message_event_id=f"m{i}", channel="owner/c")

            async def settle(probe: Callable[[int], Event], *who: Client) -> None:
                """Probes until each of ``who`` has a line of one (its SUB subscription reached
                the PUB), then quiet, then forget what came."""
                i = 0
                while not all(tabs.lines(c) for c in who):
                    await send(probe(10_000 + i))
                    i += 1
                    await asyncio.sleep(0.05)
                    tabs.collect()
                    assert i < 200, "the tail's SUB never got the probes"
                await tabs.quiet()
                tabs.clear()

            everything = [tabs.open() for _ in range(3)]
            acks = tabs.open()
            for client in everything:
                bus_tail.command(client, {"t": "tail", "prefixes": []})
            bus_tail.command(acks, {"t": "tail", "prefixes": ["chat.ack"]})
            await settle(ack, *everything, acks)

            # Each filter's topics, in order, the same for every tab that shares it.
            await send(*(e for i in range(5) for e in (chunk(i), ack(i))))
            await tabs.until(
                lambda: (
                    all(len(tabs.lines(c)) >= 10 for c in everything) and len(tabs.lines(acks)) >= 5
                ),
                "first lines",
            )
            await tabs.quiet()
            first = tabs.lines(everything[0])
            assert len(first) == 10 and all(tabs.lines(c) == first for c in everything[1:])
            assert [("chunk" in x, "ack" in x) for x in first] == [(True, False), (False, True)] * 5
            assert len(tabs.lines(acks)) == 5 and all("chat.ack" in x for x in tabs.lines(acks))
            tabs.clear()

            # A flood: at most a flush's worth of lines per batch, the rest counted.
            await send(*(e for i in range(tail.LINES_PER_FLUSH) for e in (chunk(i), ack(i))))
            await tabs.until(
                lambda: (
                    all(tabs.counted(c) >= 2 * tail.LINES_PER_FLUSH for c in everything)
                    and tabs.counted(acks) >= tail.LINES_PER_FLUSH
                ),
                "the flood",
            )
            await tabs.quiet()
            assert [tabs.counted(c) for c in everything] == [2 * tail.LINES_PER_FLUSH] * 3
            assert tabs.counted(acks) == tail.LINES_PER_FLUSH
            assert all(len(m["lines"]) <= tail.LINES_PER_FLUSH for m in tabs.got[everything[0]])
            assert tabs.got[everything[0]] == tabs.got[everything[1]] == tabs.got[everything[2]]
            tabs.clear()

            # One tab narrows its filter, one stops, one closes: each gets only what it asked.
            bus_tail.command(everything[0], {"t": "tail", "prefixes": ["chat.reply"]})
            bus_tail.command(everything[1], {"t": "tail", "off": True})
            tabs.hub.leave(everything[2])
            await settle(chunk, everything[0])
            await settle(ack, acks)
            await send(*(e for i in range(3) for e in (chunk(i), ack(i))))
            await tabs.until(
                lambda: len(tabs.lines(everything[0])) >= 3 and len(tabs.lines(acks)) >= 3,
                "lines after the changes",
            )
            await tabs.quiet()
            assert [x.split()[1] for x in tabs.lines(everything[0])] == ["chat.reply.chunk.web"] * 3
            assert tabs.got[everything[1]] == [] and tabs.got[everything[2]] == []

            # A batch on its way when its tab stops: a tab in the first turn of a flush has it,
            # the tab in the last turn stopped right then and never gets it.
            first_turn, last_turn = tabs.open(slot=0), tabs.open(slot=tail.SLOTS - 1)
            for client in (first_turn, last_turn):
                bus_tail.command(client, {"t": "tail", "prefixes": ["chat.ack"]})
            await settle(ack, first_turn, last_turn, acks)
            for attempt in range(5):
                await send(ack(attempt))
                await tabs.until(lambda: bool(tabs.lines(first_turn)), "the first turn's batch")
                if tabs.lines(last_turn):  # this process stalled past the last turn: again
                    await tabs.quiet()
                    tabs.clear()
                    continue
                bus_tail.command(last_turn, {"t": "tail", "off": True})
                await tabs.quiet()
                assert tabs.got[last_turn] == [] and len(tabs.lines(acks)) == 1
                break
            else:
                raise AssertionError("the last turn's batch always came with the first's")

            for client in (everything[0], acks, first_turn, last_turn):
                tabs.hub.leave(client)
            assert bus_tail.task is not None
            await asyncio.wait_for(bus_tail.task, WAIT_S)  # no tab tails: its socket closes
            pub.close(linger=0)

    asyncio.run(run())
