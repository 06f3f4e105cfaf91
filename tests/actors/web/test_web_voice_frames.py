"""The page's microphone frames in-process: each tab's stream is its own (unique across web
actors and their restarts), a flood is dropped, a tab that goes ends its utterance, and nothing
a tab sends drops it."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from actors.web.chat import WebChat
from actors.web.hub import Client, Hub
from actors.web.voice import BURST_BYTES, WebVoice
from schemas import AudioFrame


class Frames:
    def __init__(self) -> None:
        self.sent: list[tuple[AudioFrame, bytes]] = []

    def __call__(self, event: AudioFrame, *, key: str, blob: bytes) -> None:
        assert key == event.source
        self.sent.append((event, blob))


def voice(frames: Frames, actor: str = "web") -> tuple[Hub, WebVoice]:
    hub = Hub(max_clients=10, queue_size=64)
    return hub, WebVoice(hub, frames, channel=WebChat.channel, display_name="", actor=actor)


def tab(hub: Hub, person: str = "ana") -> Client:
    client = hub.join(person, owner=False)
    assert isinstance(client, Client)
    return client


def audio(seq: Any, pcm: bytes = b"\x01\x00" * 640, **extra: Any) -> dict[str, Any]:
    return {"t": "audio", "seq": seq, "pcm": base64.b64encode(pcm).decode(), **extra}


def messages(client: Client) -> list[str]:
    found = []
    while not client.queue.empty():
        found.append(client.queue.get_nowait())
    return found


def test_streams_are_per_tab_per_actor_and_a_tab_that_goes_ends_its_utterance() -> None:
    async def scenario() -> None:
        frames = Frames()
        hub_a, a = voice(frames, "web")
        hub_b, b = voice(frames, "guest")
        owner, ana = tab(hub_a, "owner"), tab(hub_b, "ana")
        for v, client in ((a, owner), (b, ana)):
            v.command(client, {"t": "voice", "on": True}, "main")
            v.command(client, audio(0), "main")
        (first, _), (second, _) = frames.sent
        assert first.source != second.source  # two actors' first tabs: two streams
        assert (first.person_id, first.channel) == ("owner", "owner/main")
        assert (second.person_id, second.channel) == ("ana", "ana/main")
        _, again = voice(frames, "web")  # the same actor restarted: a stream of its own too
        assert again.source_prefix != a.source_prefix
        hub_b.leave(ana)  # the tab closed mid-utterance: the STT is told it ended
        last, blob = frames.sent[-1]
        assert last.end and last.source == second.source and blob == b""

    asyncio.run(scenario())


def test_a_flood_is_dropped_and_said_and_bad_input_never_drops_the_tab() -> None:
    async def scenario() -> None:
        frames = Frames()
        hub, v = voice(frames)
        client = tab(hub)
        v.command(client, audio(0), "main")  # voice is not on
        assert "turn voice on" in messages(client)[0]
        v.command(client, {"t": "voice", "on": True}, "main")
        second = b"\x01\x00" * 16000
        for n in range(10):  # ten seconds of audio at once
            v.command(client, audio(n, second), "main")
        sent = len(frames.sent)
        assert sent * len(second) <= BURST_BYTES + len(second)
        assert sum("faster than real time" in m for m in messages(client)) == 1
        for bad in (
            audio("x"),
            audio(10**400),
            {"t": "audio", "pcm": "not base64!"},
            audio(1, b"\x01"),  # half a sample
            audio(2, b"\x00" * 70000),  # over a second
            {"t": "voice", "on": False, "seq": "x"},
        ):
            v.command(client, bad, "main")
        assert not client.dropped

    asyncio.run(scenario())
