"""BusChat, a bus client that records what the brain streams back; ChatThread, the same for
synchronous tests; and an async wait for a value."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hexbus.bus import BusClient
from hexbus.codec import Envelope
from schemas import ChatMessage, Notice, PersonaChanged, Reply, ReplyChunk, ReplyMeta, ReplySentence
from tests.support.harness import Hex

T = TypeVar("T")


class BusChat:
    """A chat client on the bus that records chunks, sentences, metadata and final replies."""

    def __init__(self, hx: Hex) -> None:
        self.client = BusClient(hx.endpoints, "tester")
        self.client.subscribe("chat.reply.chunk")
        self.chunks: dict[str, list[ReplyChunk]] = {}
        self.replies: dict[str, Reply] = {}
        self.sentences: dict[str, list[ReplySentence]] = {}
        self.metas: dict[str, ReplyMeta] = {}
        self.persona: list[PersonaChanged] = []
        self.notices: list[Notice] = []
        self.reply_ids: list[str] = []
        self.finals: list[tuple[float, Reply]] = []  # every final reply, with when it arrived
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> BusChat:
        self.client.start()
        loop = asyncio.get_running_loop()
        feed = self.client.durable(
            ["chat.reply", "chat.sentence", "chat.meta", "chat.notice", "brain.persona.changed"],
            after=-1,
            wait_ms=300,
        )
        self.feed = feed
        self.tasks = [loop.create_task(self._volatile()), loop.create_task(self._durable(feed))]
        assert await feed.positioned(10), "the broker did not answer the tail feed"
        await asyncio.sleep(0.3)  # the chunk subscription reaches the broker
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()

    async def _volatile(self) -> None:
        async for envelope, _ in self.client.volatile():
            if isinstance(envelope.body, ReplyChunk):
                self.chunks.setdefault(envelope.body.reply_to, []).append(envelope.body)

    async def _durable(self, feed: Any) -> None:
        async for envelope, _ in feed:
            if envelope is None:
                continue
            body = envelope.body
            if isinstance(body, Reply):
                self.reply_ids.append(envelope.id)
                self.finals.append((time.monotonic(), body))
                self.replies[body.reply_to] = body
            elif isinstance(body, ReplySentence):
                self.sentences.setdefault(body.reply_to, []).append(body)
            elif isinstance(body, ReplyMeta):
                self.metas[body.reply_to] = body
            elif isinstance(body, PersonaChanged):
                self.persona.append(body)
            elif isinstance(body, Notice):
                self.notices.append(body)

    async def send(
        self, text: str, channel: str = "c1", person: str = "ana", *, direct: bool = True
    ) -> Envelope:
        event = ChatMessage(
            platform="console",
            person_id=person,
            display_name=person.title(),
            channel=channel,
            text=text,
            direct=direct,
        )
        envelope = await self.client.publish_durable(event, key="console")
        assert await self.client.flush(10)
        return envelope

    async def reply(self, message: Envelope, timeout: float = 90) -> Reply:
        deadline = time.monotonic() + timeout
        while message.id not in self.replies:
            assert time.monotonic() < deadline, f"no reply to {message.body} within {timeout}s"
            await asyncio.sleep(0.05)
        return self.replies[message.id]


async def wait_for_value(get: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while (value := get()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


class ChatThread:
    """A :class:`BusChat` on its own event loop in a thread, for synchronous tests (hypothesis'
    stateful machines): ``call`` runs a coroutine there and returns its result."""

    def __init__(self, hx: Hex) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chat", daemon=True)
        self.thread.start()
        self.chat = BusChat(hx)
        self.call(self.chat.__aenter__())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self.chat.__aexit__(None, None, None), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
