"""The page's bus tail in-process, over a real SUB socket fed by a PUB standing in for the
broker's: tabs with the same filter get the same lines, a tab sees only its own filter's topics,
a flood is capped with the rest counted, and a tab that changes filter or closes stops getting
what it no longer asked for."""

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
from schemas import ChatAck, ReplyChunk


def tab(hub: Hub) -> Client:
    client = hub.join("owner", True)
    assert isinstance(client, Client)
    return client


def received(client: Client) -> list[dict[str, Any]]:
    out = []
    while not client.queue.empty():
        message = json.loads(client.queue.get_nowait())
        if message["t"] == "tail":
            out.append(message)
    return out


def lines_of(client: Client) -> list[str]:
    return [line for m in received(client) for line in m["lines"]]


def test_tabs_sharing_a_filter_get_the_same_lines_and_others_only_their_topics() -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            ends = endpoints(BusConfig(), Path(tmp))
            pub = zmq.asyncio.Context.instance().socket(zmq.PUB)
            pub.bind(ends.volatile_out)
            hub = Hub(max_clients=10, queue_size=1000)
            loop = asyncio.get_running_loop()
            bus_tail = BusTail(hub, ends, lambda coro, name: loop.create_task(coro, name=name))
            everything = [tab(hub) for _ in range(3)]
            acks = tab(hub)
            for client in everything:
                bus_tail.command(client, {"t": "tail", "prefixes": []})
            bus_tail.command(acks, {"t": "tail", "prefixes": ["chat.ack"]})

            async def settle(tabs: list[Client]) -> None:
                """Until each of ``tabs`` has a probe's line (the SUB's subscriptions reached the
                PUB), then forget what came."""
                for i in range(200):
                    probe = ChatAck(message_event_id=f"probe{i}", channel="owner/c")
                    envelope = make_envelope(probe, event_id=f"p{i}", source="t", key="web")
                    await pub.send_multipart(message_frames(envelope))
                    await asyncio.sleep(0.05)
                    if all(c.queue.qsize() for c in tabs):
                        break
                await asyncio.sleep(tail.FLUSH_S * 2)
                for c in tabs:
                    received(c)

            async def until(check: Callable[[], bool]) -> None:
                for _ in range(100):
                    if check():
                        return
                    await asyncio.sleep(0.05)

            await settle([*everything, acks])

            async def publish(n: int, start: int = 0) -> None:
                for i in range(start, start + n):
                    chunk = ReplyChunk(reply_to="r", channel="owner/c", index=i, text=f"w{i}")
                    ack = ChatAck(message_event_id=f"m{i}", channel="owner/c")
                    for event in (chunk, ack):
                        envelope = make_envelope(event, event_id=f"{i}", source="t", key="web")
                        await pub.send_multipart(message_frames(envelope))

            await publish(5)
            await until(lambda: all(c.queue.qsize() for c in [*everything, acks]))
            await asyncio.sleep(tail.FLUSH_S * 2)  # a later flush would hold lines of these
            first = lines_of(everything[0])
            assert len(first) == 10 and all(lines_of(c) == first for c in everything[1:])
            ack_lines = lines_of(acks)
            assert len(ack_lines) == 5 and all("chat.ack" in line for line in ack_lines)

            # A flood: a flush's worth of lines, the rest counted, for each filter alike.
            await publish(tail.LINES_PER_FLUSH, start=5)
            await until(lambda: all(c.queue.qsize() for c in [*everything, acks]))
            await asyncio.sleep(tail.FLUSH_S * 2)
            batches = [received(c) for c in everything]
            total = [sum(len(m["lines"]) + m["skipped"] for m in b) for b in batches]
            assert total == [2 * tail.LINES_PER_FLUSH] * 3
            assert batches[0] == batches[1] == batches[2]
            assert (
                sum(len(m["lines"]) + m["skipped"] for m in received(acks)) == tail.LINES_PER_FLUSH
            )

            # One tab narrows its filter, one stops, one closes: each gets only what it asked for.
            bus_tail.command(everything[0], {"t": "tail", "prefixes": ["chat.reply"]})
            bus_tail.command(everything[1], {"t": "tail", "off": True})
            hub.leave(everything[2])
            await settle([everything[0], acks])
            received(everything[1]), received(everything[2])
            await publish(3, start=1000)
            await until(lambda: all(c.queue.qsize() for c in (everything[0], acks)))
            await asyncio.sleep(tail.FLUSH_S * 2)
            narrowed = lines_of(everything[0])
            assert len(narrowed) == 3 and all("chat.reply.chunk" in line for line in narrowed)
            assert lines_of(everything[1]) == [] and lines_of(everything[2]) == []
            assert len(lines_of(acks)) == 3

            hub.leave(everything[0])
            hub.leave(acks)
            assert bus_tail.task is not None
            await asyncio.wait_for(bus_tail.task, 5)  # no tab tails: its socket closes
            pub.close(linger=0)

    asyncio.run(run())
