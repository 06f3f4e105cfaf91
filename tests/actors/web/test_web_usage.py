"""The usage and latency panel in a real browser against a real Hex (the brain on the packaged
model, the web actor): the backend's state and tokens per day and person after a chat, the
turn's latency waterfall, the machine; and the same numbers in /metrics."""

from __future__ import annotations

import asyncio
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from hexbus.bus import BusClient
from schemas import Metric
from tests.support.brain import brain_toml
from tests.support.harness import Hex, HexFactory, poll_for
from tests.support.web import artifact, chromium, page_of, web_toml

pytestmark = [pytest.mark.process, pytest.mark.slow]

WAIT_S = 60


def start(hex_factory: HexFactory) -> Hex:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    brain = brain_toml(root, extra="metadata = false\nmemory = false\nbudgets = { reply = 24 }")
    return hex_factory(brain + web_toml(), root=root).start()


def until(page: Any, expression: str, timeout: float = WAIT_S) -> Any:
    return poll_for(lambda: page.evaluate(expression), timeout, interval=0.05, what=expression)


def spoken_turn(hx: Hex) -> None:
    """A voice turn's latency as the TTS actor reports it at its first audio (each stage in ms
    since the one before)."""

    async def send() -> None:
        client = BusClient(hx.endpoints, "tts-probe")
        client.start()
        await asyncio.sleep(0.3)  # a fresh PUB's first messages go before its connection is up
        for _ in range(3):
            client.publish_volatile(
                Metric(
                    name="voice.first_audio",
                    value=640.0,
                    unit="ms",
                    labels={
                        "reply_to": "m-voice",
                        "channel": "c1",
                        "transcribed": "180",
                        "first_token": "210",
                        "first_sentence": "150",
                        "first_audio": "100",
                        "from": "speech_end",
                    },
                ),
                key="voice",
            )
            await asyncio.sleep(0.2)
        await client.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result(30)


def test_the_usage_panel_shows_tokens_backends_latency_and_the_machine(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    with chromium() as browser:
        page = browser.new_page()
        page.goto(page_of(hx)["open"])
        page.wait_for_selector("#connection.up")
        page.fill("#input", "Hi Hex, how was your day?")
        page.press("#input", "Enter")
        until(page, "document.querySelectorAll('.msg.hex[data-status]').length >= 1", 120)
        spoken_turn(hx)
        page.click("#show-usage")
        until(page, "hex.usage.last && hex.usage.last.brain.lines.length > 0")
        until(page, "hex.usage.last.turns.some(t => t.kind === 'voice')", 20)
        usage = page.evaluate("hex.usage.last")
        (backend,) = usage["brain"]["backends"]
        assert backend["name"] == "llamacpp" and backend["state"] == "awake", backend
        assert backend["completion_tokens"] > 0 and backend["requests"] >= 1
        (line,) = usage["brain"]["lines"]
        assert line["person"] == "owner" and line["replies"] == 1
        text = next(t for t in usage["turns"] if t["kind"] == "text")
        assert text["stages"][0][0] == "first_chunk" and text["total_ms"] > 0
        voice = next(t for t in usage["turns"] if t["kind"] == "voice")
        assert [s for s, _ in voice["stages"]] == [
            "transcribed",
            "first_token",
            "first_sentence",
            "first_audio",
        ]
        segments = page.locator('.turn[data-kind="voice"]').first.locator(".seg")
        assert segments.count() == 4
        machine = usage["machine"]
        assert 0 <= machine["cpu_percent"] <= 100 and machine["ram_total"] > machine["ram_used"] > 0
        if not machine["gpus"]:  # this machine: no NVIDIA driver
            assert page.inner_text("#usage-gpus").startswith("no GPU")
        assert {a["actor"] for a in usage["actors"]} >= {"brain", "web"}
        assert page.evaluate("hex.usage.chart.days.length") == 1
        assert page.locator('#usage-backends tr[data-state="awake"]').count() == 1
        updates = page.evaluate("hex.usage.updates")
        until(page, f"hex.usage.updates > {updates}", 10)  # live, every couple of seconds
        page.screenshot(path=artifact("usage.png"), full_page=True)
        page.click("#show-usage")  # hidden: the page stops sending it
        hidden_at = page.evaluate("hex.usage.updates")
        page.wait_for_timeout(5000)
        assert page.evaluate("hex.usage.updates") == hidden_at

    address = page_of(hx)
    bearer = {"Authorization": f"Bearer {address['token']}"}
    with httpx.Client(timeout=10) as http:
        text = http.get(f"{address['url']}metrics", headers=bearer).text
    for series in (
        'hex_backend_tokens_total{backend="llamacpp",kind="completion"}',
        'hex_backend_state{backend="llamacpp",state="awake"} 1.0',
        'hex_actor_handler_latency_ms_bucket{actor="brain",le="+Inf"}',
        "hex_host_cpu_percent",
        'hex_stage_latency_ms_count{stage="voice.first_audio"}',
    ):
        assert series in text, series
