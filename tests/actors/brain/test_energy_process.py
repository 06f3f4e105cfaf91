"""Her energy through real processes: an OpenAI-compatible server (scripted) reports its
remaining tokens falling, then answers 429; she goes awake → sleepy → asleep → awake after the
reset, her replies shrink while she is sleepy, she says so once, and asleep she asks no backend
and says when she wakes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from actors.brain.energy import SLEEPY_LINE
from hexbus.bus import BusClient
from schemas import BrainEnergy
from tests.support.brain import (
    MODELS_OK,
    Answer,
    ScriptedServer,
    serving_in_thread,
    sse,
    start_brain,
    status,
)
from tests.support.brain_chat import BusChat, wait_for_value
from tests.support.harness import Hex, HexFactory

pytestmark = [pytest.mark.process, pytest.mark.slow]

# Ten-word sentences, one word a piece: as many as the request's max_tokens allow.
WORDS = [
    f"{w} "
    for _ in range(40)
    for w in ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten."]
]


STORY = "Tell me a long story about the sea, with every detail you know."


def limits(remaining: int, reset: str = "60s") -> dict[str, str]:
    return {
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": str(remaining),
        "x-ratelimit-reset-tokens": reset,
    }


def capped(server: ScriptedServer, headers: dict[str, str]) -> Answer:
    """A reply of as many words as the request's max_tokens, with these rate-limit headers."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked = json.loads(server.requests[-1][1])
        await sse(WORDS[: asked["max_tokens"]], headers=headers)(reader, writer)

    return reply


def energy_on_the_journal(hx: Hex) -> list[BrainEnergy]:
    async def read() -> list[BrainEnergy]:
        client = BusClient(hx.endpoints, "energy-reader")
        client.start()
        found: list[BrainEnergy] = []
        try:
            deadline = time.monotonic() + 1.5
            async for envelope, _ in client.durable(["brain.energy"], after=0, wait_ms=200):
                if envelope is not None and isinstance(envelope.body, BrainEnergy):
                    found.append(envelope.body)
                if time.monotonic() > deadline:
                    return found
        finally:
            await client.close()
        return found

    return asyncio.run(read())


def test_falling_limits_then_a_429_make_her_sleepy_then_asleep_then_awake_after_the_reset(
    hex_factory: HexFactory,
) -> None:
    server = ScriptedServer()
    server.replies = (
        MODELS_OK,
        capped(server, limits(60_000)),
        capped(server, limits(2_000)),  # nearly spent: sleepy from here
        capped(server, limits(1_500)),
        status(429, b'{"error": "rate limited"}', {"Retry-After": "3", **limits(0, "3s")}),
        capped(server, limits(99_000)),  # after the reset
    )
    with serving_in_thread(server):
        backends = f'[{{type = "openai", name = "cloud", base_url = "{server.url}", model = "m"}}]'
        hx = start_brain(hex_factory, backends=backends, extra="metadata = false")

        def asked() -> list[dict[str, object]]:
            return [json.loads(b) for p, b in server.requests if p.endswith("/chat/completions")]

        async def talk() -> None:
            async with BusChat(hx) as chat:
                awake = await chat.reply(await chat.send(STORY))
                cap = int(asked()[-1]["max_tokens"])  # type: ignore[call-overload]
                assert awake.status == "complete" and len(awake.text.split()) == cap
                await chat.reply(await chat.send(STORY))  # its headers: 2% left
                await wait_for_value(
                    lambda: hx.status()["brain"].get("detail", "").startswith("sleepy") or None,
                    10,
                    "sleepy in hexbus status",
                )
                sleepy = await chat.reply(await chat.send(STORY))
                assert sleepy.status == "complete" and len(sleepy.text.split()) == cap // 2
                request = asked()[-1]
                assert request["max_tokens"] == cap // 2
                # In the system turn for this message, before its words.
                assert SLEEPY_LINE in str(request["messages"][-2]["content"])  # type: ignore[index]
                told = [n for n in chat.notices if n.kind == "sleepy"]
                assert len(told) == 1 and "sleepy" in told[0].text

                limited = await chat.reply(await chat.send(STORY))  # the 429
                assert limited.status == "failed" and "sleepy" in limited.text
                n = len(server.requests)
                asleep = await chat.reply(await chat.send(STORY))
                assert asleep.status == "failed" and "awake again at" in asleep.text, asleep
                assert len(server.requests) == n  # asleep, no backend was asked

                await wait_for_value(
                    lambda: hx.status()["brain"].get("detail") == "awake" or None,
                    20,
                    "awake after the reset",
                )
                again = await chat.reply(await chat.send(STORY))
                assert again.status == "complete" and len(again.text.split()) == cap
                assert asked()[-1]["max_tokens"] == cap
                assert len([n for n in chat.notices if n.kind == "sleepy"]) == 1

        asyncio.run(talk())
        states = [e.state for e in energy_on_the_journal(hx)]
        assert states == ["sleepy", "asleep", "awake"], states
