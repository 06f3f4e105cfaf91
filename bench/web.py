"""What the page costs: a line typed in the browser to its reply's first piece on screen, next to
the console client's line to first piece, and the responder's acknowledgements with 50 busy tabs.

A Hex runs the brain (packaged SmolLM2 through llama.cpp, metadata off, fixed seed), the echo
responder and the web actor. Headless Chromium (Debian's, under Playwright) opens the page.

- ``web_first_chunk``: in the page, from just before the line goes out on the websocket to the
  first streamed piece of its reply added to the page (``performance.now()`` both, read from the
  page's ``hex.stats``).
- ``console_first_chunk``: the same line published by a bus client as ``hexbus chat`` does, to
  its first ``chat.reply.chunk``, on the bench's clock.
- ``web_path`` and ``console_path``: each of those less the brain's own time from receiving the
  message to its first chunk (its ``brain.first_chunk`` metric): what the way there and back
  adds, page or console.
  Page and console alternate line by line, each in a fresh conversation (the same prompt size),
  so the shared machine's noise falls on both alike. Target: ``web_over_console_first_chunk``
  (the p50s' ratio) at most 1.2.
- ``ack``: console lines to the echo responder's ``chat.ack``, idle, then with 50 tabs open
  (websocket clients with the page's token) each tailing the whole bus while 200 reply pieces a
  second cross it (with the heartbeats and the acks themselves). Target: ``loaded_over_idle_p99``
  at most 1.5.

Run: ``python bench/web.py`` (``--quick``: fewer lines). Prints JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import json
import shutil
import tempfile
import threading
import time
from typing import Any

from actors.web.auth import cookie_name
from bench._common import emit, parser, percentile, progress, run_async, summary
from hexbus.bus import BusClient
from schemas import ChatAck, ChatMessage, Metric, ReplyChunk
from tests.support.brain import brain_toml
from tests.support.harness import Hex, actor_toml
from tests.support.web import chromium, page_of, web_toml

LINE = "Tell me about a quiet morning by the sea, what you hear and what you smell, please."
TABS = 50


def start() -> Hex:
    root = Path(tempfile.mkdtemp(prefix="hxw", dir="/tmp"))
    config = brain_toml(root, extra="metadata = false\nbudgets = { reply = 24 }")
    config += actor_toml("echo", "actors.diag.actor:EchoActor") + web_toml()
    return Hex(config, root=root).start()


def page_line(page: Any, conversation: str) -> tuple[float, str]:
    """Seconds from the page sending a line to its reply's first piece on screen, and its id."""
    page.evaluate(f"hex.switchTo({json.dumps(conversation)})")
    page.evaluate(f"hex.say({json.dumps(LINE)})")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = page.evaluate(
            "(() => { const id = [...hex.stats.sentAt.keys()].find(k => !k.startsWith('l'));"
            " if (!id || !hex.stats.firstChunkAt.has(id) || hex.inflight.has(id)) return null;"
            " const s = hex.stats.firstChunkAt.get(id) - hex.stats.sentAt.get(id);"
            " hex.stats.sentAt.delete(id); return [s, id]; })()"
        )
        if done is not None:
            return float(done[0]) / 1000, str(done[1])
        # Seldom: the page stamps its own times, and polling it busily (the driver, the page's
        # script) would take the CPU the brain needs and lengthen what is measured.
        time.sleep(0.25)
    raise TimeoutError("the page's line got no reply within 60 s")


async def console_line(
    client: BusClient, chunks: dict[str, float], conversation: str
) -> tuple[float, str]:
    """Seconds from publishing a console line to its reply's first chunk, and its id."""
    event = ChatMessage(
        platform="console",
        person_id="owner",  # the page's person: the same prompt, so the brain's time is alike
        display_name="owner",
        channel=conversation,
        text=LINE,
        direct=True,
    )
    sent = time.monotonic()
    envelope = await client.publish_durable(event, key="console")
    deadline = sent + 60
    while envelope.id not in chunks:
        if time.monotonic() > deadline:
            raise TimeoutError("the console line got no reply chunk within 60 s")
        await asyncio.sleep(0.005)
    first = chunks[envelope.id] - sent
    await asyncio.sleep(1.5)  # the rest of the reply, before the next line starts
    return first, envelope.id


async def read_chunks(client: BusClient, chunks: dict[str, float], brain: dict[str, float]) -> None:
    """First chunks of console replies, on the bench's clock; and every reply's time in the
    brain, from its receipt to its first chunk (the ``brain.first_chunk`` metric)."""
    async for envelope, _ in client.volatile():
        body = envelope.body
        if isinstance(body, ReplyChunk) and body.reply_to not in chunks:
            chunks[body.reply_to] = time.monotonic()
        elif isinstance(body, Metric) and body.name == "brain.first_chunk":
            brain[body.labels.get("reply_to", "")] = body.value / 1000


async def acks(hx: Hex, n: int) -> list[float]:
    """Seconds from each of ``n`` console lines to the echo responder's ``chat.ack`` for it (the
    brain is stopped by then: the figure is the responder's path, not the model's)."""
    client = BusClient(hx.endpoints, "ackbench")
    client.subscribe("chat.ack")
    client.start()
    got: dict[str, float] = {}

    async def read() -> None:
        async for envelope, _ in client.volatile():
            if isinstance(envelope.body, ChatAck):
                got.setdefault(envelope.body.message_event_id, time.monotonic())

    reader = asyncio.get_running_loop().create_task(read())
    latencies = []
    try:
        await asyncio.sleep(0.5)
        for i in range(n):
            event = ChatMessage(
                platform="console",
                person_id="acker",
                display_name="Acker",
                channel=f"ack{i % 5}",
                text="ping",
                direct=True,
            )
            sent = time.monotonic()
            envelope = await client.publish_durable(event, key="console")
            while envelope.id not in got and time.monotonic() - sent < 10:
                await asyncio.sleep(0.001)
            latencies.append(got.get(envelope.id, sent + 10) - sent)
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        await client.close()
    return latencies


async def busy_tabs(hx: Hex, stop: threading.Event, opened: threading.Event) -> int:
    """50 websocket tabs tailing the whole bus while 200 pieces a second cross it; messages
    received."""
    from websockets.asyncio.client import connect

    page = page_of(hx)
    ws = page["url"].replace("http://", "ws://") + "ws"
    received = 0

    async def tab() -> None:
        nonlocal received
        cookie = cookie_name(int(page["url"].rsplit(":", 1)[1].strip("/")))
        async with connect(ws, additional_headers={"Cookie": f"{cookie}={page['token']}"}) as sock:
            await sock.send('{"t": "tail", "prefixes": []}')  # the bus tail, every topic
            while not stop.is_set():
                try:
                    await asyncio.wait_for(sock.recv(), 0.5)
                    received += 1
                except TimeoutError:
                    continue

    async def feed() -> None:
        client = BusClient(hx.endpoints, "busyfeed")
        client.start()
        i = 0
        try:
            while not stop.is_set():
                for _ in range(10):
                    piece = ReplyChunk(reply_to="busy", channel="owner/busy", index=i, text="word ")
                    client.publish_volatile(piece, key="web")
                    i += 1
                await asyncio.sleep(0.05)
        finally:
            await client.close()

    tabs = [asyncio.get_running_loop().create_task(tab()) for _ in range(TABS)]
    await asyncio.sleep(1.0)
    opened.set()
    await asyncio.gather(feed(), *tabs)
    return received


def main() -> None:
    args = parser(__doc__).parse_args()
    lines = 4 if args.quick else 12
    pings = 100 if args.quick else 300
    progress("starting Hex (brain, echo, web)")
    hx = start()
    try:
        web: list[float] = []
        console: list[float] = []
        chunks: dict[str, float] = {}
        brain: dict[str, float] = {}
        web_ids: list[str] = []
        console_ids: list[str] = []
        with chromium() as browser:
            page = browser.new_page()
            page.goto(page_of(hx)["open"])
            page.wait_for_selector("#connection.up")
            client = BusClient(hx.endpoints, "bench")
            client.subscribe("chat.reply.chunk.console")
            client.subscribe("metrics.brain")
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()
            reader = asyncio.run_coroutine_threadsafe(_start(client, chunks, brain), loop).result(
                10
            )
            page_line(page, "warmup")
            for i in range(lines):
                progress(f"line {i + 1}/{lines}: page, then console")
                took, reply_to = page_line(page, f"w{i}")
                web.append(took)
                web_ids.append(reply_to)
                future = asyncio.run_coroutine_threadsafe(
                    console_line(client, chunks, f"c{i}"), loop
                )
                took, reply_to = future.result(90)
                console.append(took)
                console_ids.append(reply_to)
            asyncio.run_coroutine_threadsafe(_stop(client, reader), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
        hx.cli("killswitch", "--keep", "echo", "web")  # the model's CPU out of the ack figures
        progress(f"{pings} acknowledgements idle")
        idle = run_async(acks(hx, pings))
        progress(f"{pings} acknowledgements with {TABS} busy tabs")
        stop, opened = threading.Event(), threading.Event()
        results: list[int] = []
        tabs = threading.Thread(
            target=lambda: results.append(run_async(busy_tabs(hx, stop, opened))), daemon=True
        )
        tabs.start()
        opened.wait(30)
        loaded = run_async(acks(hx, pings))
        stop.set()
        tabs.join(30)
        dropped_tabs = hx.log().count("web.client_dropped")
    finally:
        hx.stop()
        shutil.rmtree(hx.root, ignore_errors=True)
    web_p50, console_p50 = percentile(web, 50), percentile(console, 50)
    # What the path adds around the brain: end to end, less the brain's own receipt-to-chunk.
    web_path = [t - brain[i] for t, i in zip(web, web_ids, strict=True) if i in brain]
    console_path = [t - brain[i] for t, i in zip(console, console_ids, strict=True) if i in brain]
    idle_p99, loaded_p99 = percentile(idle, 99), percentile(loaded, 99)
    emit(
        {
            **summary(web, "web_first_chunk_s"),
            **summary(console, "console_first_chunk_s"),
            "web_over_console_first_chunk": round(web_p50 / console_p50, 3),
            **summary([brain[i] for i in web_ids if i in brain], "web_brain_s", 4),
            **summary([brain[i] for i in console_ids if i in brain], "console_brain_s", 4),
            **summary(web_path, "web_path_s", 4),
            **summary(console_path, "console_path_s", 4),
            **summary(idle, "ack_idle_s", 4),
            **summary(loaded, "ack_loaded_s", 4),
            "loaded_over_idle_p99": round(loaded_p99 / idle_p99, 3),
            "tabs": TABS,
            "tab_messages_received": results[0] if results else 0,
            "tabs_dropped": dropped_tabs,
        }
    )


async def _start(
    client: BusClient, chunks: dict[str, float], brain: dict[str, float]
) -> asyncio.Task[None]:
    client.start()
    reader = asyncio.get_running_loop().create_task(read_chunks(client, chunks, brain))
    await asyncio.sleep(0.3)
    return reader


async def _stop(client: BusClient, reader: asyncio.Task[None]) -> None:
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await client.close()


if __name__ == "__main__":
    main()
