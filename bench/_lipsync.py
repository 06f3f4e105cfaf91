"""How far the avatar's mouth frames are from the audio they show, as a player hears it.

A real Hex runs the avatar actor (50 frames a second, VMC out to a loopback receiver). This
process speaks as TTS does: espeak-ng phrases cut into 20 ms ``audio.out`` chunks, each phrase in
a burst, the next while the last plays. A player in its own thread, on its own bus connection,
plays the chunks as Discord's and the page's players do: back to back from when each arrived.
Each mouth frame's value is the openness of exactly one chunk (the avatar's mapping, rounded
as VMC sends it); its offset is the frame's arrival time minus that chunk's playback start on
the player's clock. A frame shows the chunk playing when it is made, so even with no delay at
all the offset is spread over one chunk (0 to 20 ms): the floor, measured in the same run as
the offsets a perfect avatar would have at the same frame times (``avatar_lipsync_floor_ms``;
``avatar_lipsync_p95_over_floor``). A negative offset is a frame ahead of the player (it got
the chunk later than the avatar did).
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from actors.avatar.lipsync import openness, rms_of
from bench._common import percentile, progress
from hexbus.bus import BusClient
from hexbus.pcm import to_pcm16
from schemas import AudioOut
from tests.support.avatar import OscReceiver
from tests.support.harness import FAST_BUS, Hex
from tests.support.speech import espeak

RATE = 24000
CHUNK_BYTES = RATE // 50 * 2
FPS = 50.0
PHRASES = (
    "Once upon a time, a goblin collected silver spoons,",
    "and she hid them under the old stone bridge,",
    "counting them every single night by candlelight.",
    "Nobody knew, until a curious magpie followed her home.",
)


class Player:
    """Plays ``audio.out`` as a player does, on its own loop and connection: each chunk starts
    when it arrives or when the one before it ends, whichever is later."""

    def __init__(self, hx: Hex) -> None:
        self.hx = hx
        self.timeline: list[tuple[float, float, float]] = []  # (start, end, mouth), monotonic
        self.until = 0.0
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)

    async def run(self) -> None:
        client = BusClient(self.hx.endpoints, "bench-player")
        client.subscribe("audio.out")
        client.start()
        self.ready.set()

        async def listen() -> None:
            async for envelope, blob in client.volatile():
                if not isinstance(envelope.body, AudioOut) or blob is None:
                    continue
                now = time.monotonic()
                start = max(now, self.until)
                self.until = start + len(blob) / 2 / envelope.body.rate
                self.timeline.append((start, self.until, round(openness(rms_of(blob)), 4)))

        async def stop() -> None:
            while not self.stopping.is_set():
                await asyncio.sleep(0.05)

        listening = asyncio.ensure_future(listen())
        await stop()
        listening.cancel()
        await client.close()


def floor_ms(
    frames: list[tuple[float, dict[str, float]]], timeline: list[tuple[float, float, float]]
) -> list[float]:
    """What a perfect avatar would score at the same frame times: each frame showing exactly the
    chunk playing on the player's clock when it arrived (its offset is then how far into that
    chunk the frame fell)."""
    out = []
    for at, _ in frames:
        for start, end, mouth in timeline:
            if start <= at < end and 0.0 < mouth < 1.0:
                out.append((at - start) * 1000)
                break
    return out


def offsets_ms(
    frames: list[tuple[float, dict[str, float]]], timeline: list[tuple[float, float, float]]
) -> list[float]:
    """Per mouth frame that names one chunk: how far outside that chunk's playback it came."""
    out = []
    for at, shapes in frames:
        value = round(shapes.get("A", 0.0), 4)
        if value <= 0.0 or value >= 1.0:  # closed or clipped: not one chunk's
            continue
        near = [s for s, e, m in timeline if m == value and s - 0.3 < at < e + 0.3]
        if near:
            out.append((at - min(near, key=lambda s: abs(at - s))) * 1000)
    return out


async def speak(hx: Hex, phrases: list[list[bytes]]) -> None:
    client = BusClient(hx.endpoints, "bench-tts")
    client.start()
    await asyncio.sleep(0.5)  # a fresh PUB's first messages go before its connection is up
    until = 0.0
    for n, chunks in enumerate(phrases):
        now = time.monotonic()
        for seq, chunk in enumerate(chunks):
            client.publish_volatile(
                AudioOut(
                    channel="bench",
                    platform="voice",
                    reply_to=f"r{n // len(PHRASES)}",
                    sentence=n,
                    seq=seq,
                    rate=RATE,
                    last=seq == len(chunks) - 1,
                ),
                key="bench",
                blob=chunk,
            )
        until = max(now, until) + sum(len(c) for c in chunks) / 2 / RATE
        # The next phrase comes while this one plays, as TTS's do (synthesis is faster than speech).
        await asyncio.sleep(max(0.0, until - time.monotonic() - 0.6))
    await asyncio.sleep(max(0.0, until - time.monotonic()) + 0.5)
    await client.close()


def lipsync(rounds: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="lipsync"))
    pieces = []
    for text in PHRASES:
        pcm = to_pcm16(espeak(text, folder, rate=RATE, speed=160, trim=False))
        pieces.append([pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)])
    receiver = OscReceiver()
    config = f"""
[actors.avatar]
module = "actors.avatar.actor:AvatarActor"
[actors.avatar.config]
fps = {FPS}
[actors.avatar.config.vmc]
enabled = true
port = {receiver.port}
"""
    hx = Hex(FAST_BUS + config)
    try:
        hx.start()
        player = Player(hx)
        player.thread.start()
        player.ready.wait(10)
        progress(f"lip-sync: {rounds * len(PHRASES)} phrases through the avatar at {FPS:g} fps")
        asyncio.run(speak(hx, pieces * rounds))
        player.stopping.set()
        player.thread.join(10)
        frames = receiver.frames()
        offsets = offsets_ms(frames, player.timeline)
        floor = floor_ms(frames, player.timeline)
    finally:
        receiver.close()
        hx.cleanup()
    late = [abs(o) for o in offsets]
    chunk_ms = CHUNK_BYTES / 2 / RATE * 1000
    floor_p95 = percentile(floor, 95) if floor else None
    return {
        "avatar_lipsync_offset_ms": {
            "p50": round(percentile(late, 50), 1) if late else None,
            "p95": round(percentile(late, 95), 1) if late else None,
            "signed_p50": round(percentile(offsets, 50), 1) if offsets else None,
            "n": len(offsets),
        },
        "avatar_chunk_ms": chunk_ms,
        "avatar_lipsync_floor_ms": {
            "p50": round(percentile(floor, 50), 1) if floor else None,
            "p95": round(floor_p95, 1) if floor_p95 is not None else None,
        },
        "avatar_lipsync_p95_over_floor": round(percentile(late, 95) / floor_p95, 2)
        if late and floor_p95
        else None,
    }
