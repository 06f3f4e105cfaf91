"""``hexbus chat``: talk to Hex from a terminal, on the bus like any other platform.

Each line typed (or read from a pipe) becomes a durable ``chat.message.console``;
the reply's chunks are printed as they stream in, and the final ``chat.reply``
(read from the journal, so it cannot be missed) ends the turn. When the final
text differs from what streamed (a dropped chunk, or a backend that failed
mid-reply and was replaced), the final text is printed again whole.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import TextIO

from hexbus.bus import BusClient
from hexbus.endpoints import Endpoints
from schemas import ChatMessage, Notice, Reply, ReplyChunk


class ChatError(Exception):
    """The chat could not go on (Hex not answering, the bus gone)."""


async def _lines(stream: TextIO, prompt: str) -> AsyncIterator[str]:
    while True:
        if prompt:
            print(prompt, end="", flush=True)
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        # Bytes that are not UTF-8 reach Python as lone surrogates, which no encoder takes:
        # they become U+FFFD, and the rest of the line is sent as typed.
        yield line.rstrip("\n").encode("utf-8", "surrogateescape").decode("utf-8", "replace")


STARTED_AGAIN = "(Hex started her reply again)"


class ChatClient:
    def __init__(
        self, endpoints: Endpoints, *, person_id: str, name: str, channel: str, out: TextIO
    ) -> None:
        self.client = BusClient(endpoints, "chat")
        self.person_id, self.name, self.channel = person_id, name, channel
        self.out = out
        self.client.subscribe("chat.reply.chunk.console")
        self.chunks: dict[str, list[str]] = {}
        self.finals: dict[str, Reply] = {}
        self.notices: asyncio.Queue[Notice] = asyncio.Queue()
        self.arrived = asyncio.Event()
        self.waiting_for = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._feed = self.client.durable(
            ["chat.reply.console", "chat.notice.console"], after=-1, wait_ms=500
        )

    async def start(self) -> None:
        self.client.start()
        loop = asyncio.get_running_loop()
        self._tasks += [
            loop.create_task(self._read_chunks()),
            loop.create_task(self._read_finals()),
        ]
        if not await self._feed.positioned(
            10
        ):  # then no reply after the journal's head can be missed
            raise ChatError(
                "the broker did not answer within 10 s: is Hex running (`hexbus status`)?"
            )

    async def _read_chunks(self) -> None:
        async for envelope, _ in self.client.volatile():
            body = envelope.body
            if isinstance(body, ReplyChunk) and body.channel == self.channel:
                if body.index == 0 and self.chunks.get(body.reply_to):
                    # The reply starts over (the brain restarted mid-reply): what streamed of
                    # it before is not part of the one that will finish.
                    self.chunks[body.reply_to] = []
                    if body.reply_to == self.waiting_for:
                        self.out.write(f"\n{STARTED_AGAIN}\n")
                self.chunks.setdefault(body.reply_to, []).append(body.text)
                if body.reply_to == self.waiting_for:
                    self.out.write(body.text)
                    self.out.flush()

    async def _read_finals(self) -> None:
        async for envelope, _ in self._feed:
            if envelope is None:
                continue
            body = envelope.body
            if isinstance(body, Reply) and body.channel == self.channel:
                self.finals[body.reply_to] = body
                self.arrived.set()
            elif isinstance(body, Notice) and body.channel == self.channel:
                self.out.write(f"\n({body.text})\n")
                self.out.flush()

    async def say(self, text: str, timeout: float) -> Reply:
        return await self.answer(await self.send(text), timeout)

    async def send(self, text: str) -> str:
        """Send one line (acknowledged by the broker); its event id."""
        event = ChatMessage(
            platform="console",
            person_id=self.person_id,
            display_name=self.name,
            channel=self.channel,
            text=text,
            direct=True,
        )
        envelope = await self.client.publish_durable(event, key="console")
        if not await self.client.flush(10):
            raise ChatError(
                "the broker did not acknowledge the message within 10 s: is Hex running?"
            )
        return envelope.id

    async def answer(self, message_id: str, timeout: float) -> Reply:
        """Print the reply to ``message_id`` as it streams, and return its final."""
        self.waiting_for = message_id
        for text in self.chunks.get(message_id, []):  # streamed before this line's turn to print
            self.out.write(text)
        self.out.flush()
        deadline = time.monotonic() + timeout
        while message_id not in self.finals:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChatError(
                    f"no reply within {timeout:g} s: is the brain running? (`hexbus status`)"
                )
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                continue
        self.waiting_for = ""
        reply = self.finals.pop(message_id)
        streamed = "".join(self.chunks.pop(message_id, [])).strip()
        if reply.status == "complete" and not streamed.startswith(reply.text):
            # Chunks were lost, or a backend failed mid-reply and another started over: the final text is
            # the reply. (A reply trimmed to its last whole sentence is a prefix of what streamed.)
            self.out.write(("\n" if streamed else "") + reply.text)
        elif reply.merged_into:
            self.out.write(("\n" if streamed else "") + "[answered together with the next line]")
        elif reply.status != "complete":
            self.out.write(("\n" if streamed else "") + (reply.text or "") + f" [{reply.status}]")
        self.out.write("\n")
        self.out.flush()
        return reply

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()


async def chat(
    endpoints: Endpoints,
    *,
    person_id: str,
    name: str,
    channel: str,
    timeout: float,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
) -> int:
    interactive = stdin.isatty()
    client = ChatClient(endpoints, person_id=person_id, name=name, channel=channel, out=out)
    try:
        await client.start()
        if not interactive:
            # A script: each line waits for its reply (a pipe's lines would otherwise all
            # arrive at once and be answered as one turn)
            async for line in _lines(stdin, ""):
                if line.strip():
                    await client.say(line, timeout)
            return 0
        out.write("Talking to Hex on the bus. Ctrl-D ends.\n")
        await typed(client, stdin, out, timeout)
    finally:
        await client.close()
    return 0


async def typed(client: ChatClient, stdin: TextIO, out: TextIO, timeout: float) -> None:
    """At a terminal, each line goes the moment it is typed, whether or not Hex has answered
    the last: lines typed in a row are a burst, which the brain answers as one turn, and the
    replies print in order as they come."""
    sent: asyncio.Queue[str | None] = asyncio.Queue()

    async def replies() -> None:
        while (message_id := await sent.get()) is not None:
            out.write("hex> ")
            await client.answer(message_id, timeout)

    printer = asyncio.get_running_loop().create_task(replies())
    try:
        async for line in _lines(stdin, ""):
            if printer.done():
                break  # it failed: its error is raised below
            if line.strip():
                sent.put_nowait(await client.send(line))
        sent.put_nowait(None)
        await printer
    finally:
        printer.cancel()
        await asyncio.gather(printer, return_exceptions=True)
