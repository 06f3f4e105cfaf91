"""The page in a real browser (Debian's chromium under Playwright) against a real Hex: the web
actor, the brain and the echo responder under the supervisor, over real sockets.

Screenshots go to test-artifacts/web/ for a person to look at."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from actors.web.auth import cookie_name
from hexbus.bus import BusClient
from schemas import ReplyChunk
from tests.support.brain import MODELS_OK, ScriptedServer, brain_toml, serving_in_thread, sse
from tests.support.harness import Hex, HexFactory, actor_toml, poll_for
from tests.support.web import artifact, chromium, page_of, web_toml

pytestmark = [pytest.mark.process, pytest.mark.slow]

ECHO = actor_toml("echo", "actors.diag.actor:EchoActor")
REPLY_S = 60


def start(hex_factory: HexFactory, *, backends: str = "", **web: Any) -> Hex:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    brain = brain_toml(
        root,
        extra="metadata = false\nbudgets = { reply = 40 }",
        **({"backends": backends} if backends else {}),
    )
    return hex_factory(brain + ECHO + web_toml(**web), root=root).start()


def open_page(browser: Any, hx: Hex) -> Any:
    page = browser.new_page()
    address = page_of(hx)
    page.goto(address["open"])
    assert page.url == address["url"]  # the token left the address bar (and the history)
    page.wait_for_selector("#connection.up")
    return page


def say(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def until(page: Any, expression: str, timeout: float = REPLY_S) -> Any:
    """Poll ``expression`` in the page until it is truthy (wait_for_function compiles its
    predicate with eval, which the page's Content-Security-Policy refuses, as it should)."""
    return poll_for(lambda: page.evaluate(expression), timeout, interval=0.05, what=expression)


def statuses_count(page: Any) -> int:
    return int(page.evaluate("document.querySelectorAll('.msg.hex[data-status]').length"))


def final(page: Any, n: int) -> Any:
    """The n-th (1-based) Hex bubble once its final reply has come."""
    until(page, f"document.querySelectorAll('.msg.hex[data-status]').length >= {n}")
    return page.locator(".msg.hex[data-status]").nth(n - 1)


def test_a_reply_streams_into_the_page_and_the_final_text_replaces_it(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    with chromium() as browser:
        page = open_page(browser, hx)
        say(page, "Hi Hex! What do you like to do on rainy days?")
        bubble = final(page, 1)
        assert bubble.get_attribute("data-status") == "complete"
        assert bubble.inner_text().strip()
        stats = page.evaluate("({acks: hex.stats.acks, chunks: hex.stats.chunks})")
        assert stats["acks"] >= 1 and stats["chunks"] >= 1, stats  # typing shown, then streamed
        assert page.is_hidden("#typing") and page.is_hidden("#stop")
        page.screenshot(path=artifact("chat.png"), full_page=True)
        # Three lines in a row, as people type: one answer for the turn, none lost.
        for line in ("wait", "actually", "tell me about your favourite book"):
            say(page, line)
        until(page, "document.querySelectorAll('.msg.person[data-id]').length === 4", 10)
        until(page, "hex.inflight.size === 0")
        statuses = page.eval_on_selector_all(
            ".msg.hex[data-status]", "els => els.map(e => e.dataset.status)"
        )
        assert statuses[-1] == "complete", statuses
        # The address `hexbus web` and `hexbus status` give is the page's.
        out = hx.cli("web", "--no-browser")
        assert out.returncode == 0 and out.stdout.strip() == page_of(hx)["open"], out
        status = hx.cli("status")
        assert f"web: the page is at {page_of(hx)['open']}" in status.stdout, status.stdout
        # /metrics, with the token as a bearer token (as Prometheus scrapes), gathered from the bus.
        address = page_of(hx)
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{address['url']}metrics").status_code == 401
            bearer = {"Authorization": f"Bearer {address['token']}"}
            text = poll_for(
                lambda: (
                    t
                    if 'hex_actor_restarts_total{actor="brain"}'
                    in (t := http.get(f"{address['url']}metrics", headers=bearer).text)
                    else None
                ),
                15,
                what="the supervisor's table in /metrics",
            )
        for series in (
            'hex_actor_up{actor="brain"} 1.0',
            'hex_actor_events_in_total{actor="echo"}',
            'hex_stage_latency_ms_count{stage="brain.first_chunk"}',
            "hex_journal_head_offset",
        ):
            assert series in text, (series, text[:3000])
        # The web actor restarts (gracefully, then killed): the open tab reconnects with its
        # cookie, the token unchanged, and goes on talking.
        token = page_of(hx)["token"]
        for restart in ("graceful", "kill"):
            pid = hx.pid("web")
            if restart == "graceful":
                hx.command("restart", "web")
            else:
                os.kill(pid, signal.SIGKILL)
            hx.wait_restarted("web", pid)
            until(page, "hex.socket.readyState === 1 && hex.retry === 500", 30)
            assert page_of(hx)["token"] == token and page_of(hx)["url"] == page.url
        say(page, "are you back?")
        assert final(page, statuses_count(page) + 1).get_attribute("data-status") == "complete"


def test_stop_cancels_the_reply_and_markup_from_anyone_never_runs(
    hex_factory: HexFactory,
) -> None:
    markup = sse(
        [
            "Look: <script>window.pwned = 1</script> ",
            '<img src=x onerror="window.pwned = 2"> ',
            "[click me](javascript:window.pwned=3) and **bold**.",
        ]
    )
    endless = sse(["I could talk about rain ", "for hours and hours, "], then="hang")
    with serving_in_thread(ScriptedServer(MODELS_OK, markup, endless)) as server:
        backends = f'[{{type = "openai", name = "cloud", base_url = "{server.url}", model = "m"}}]'
        hx = start(hex_factory, backends=backends)
        with chromium() as browser:
            page = open_page(browser, hx)
            say(
                page,
                "<b>hi</b><script>window.pwned = 4</script><img src=x onerror='window.pwned=5'>",
            )
            bubble = final(page, 1)
            assert bubble.get_attribute("data-status") == "complete"
            mine = page.locator(".msg.person").first
            assert mine.inner_text() == (
                "<b>hi</b><script>window.pwned = 4</script><img src=x onerror='window.pwned=5'>"
            )
            html = bubble.inner_html()
            assert "<strong>bold</strong>" in html and "&lt;script&gt;" in html, html
            # No element came from the text: no script, no image, no link to a script.
            assert bubble.locator("script, img, a").count() == 0, html
            assert page.locator(".msg.person *").count() == 0
            time.sleep(0.5)  # an onerror would have run by now
            assert page.evaluate("window.pwned") is None

            say(page, "what about rain?")
            until(page, "[...hex.replies.values()].some(r => !r.done && r.pieces.length)")
            assert page.is_visible("#stop")
            page.click("#stop")
            stopped = final(page, 2)
            assert stopped.get_attribute("data-status") == "cancelled"
            assert "stopped" in stopped.inner_text()
            assert page.is_hidden("#stop")
            page.screenshot(path=artifact("stopped.png"), full_page=True)
            assert page.evaluate("window.pwned") is None
        assert server.hangups >= 1  # the brain hung up on the stream it no longer wanted


def test_strangers_are_refused_and_a_stalled_tab_never_slows_another(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory, client_queue=64)
    address = page_of(hx)
    url, token = address["url"], address["token"]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    cookie = cookie_name(port)
    with httpx.Client(follow_redirects=False, timeout=10) as http:
        assert http.get(url).status_code == 401
        assert http.get(f"{url}?token=wrong").status_code == 401
        assert http.get(f"{url}static/app.js").status_code == 401
        taken = http.get(f"{url}?token={token}")
        assert taken.status_code == 303 and taken.headers["location"] == "/"
        set_cookie = taken.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        cookie_header = {"Cookie": f"{cookie}={token}"}
        page = http.get(url, headers=cookie_header)
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        rebound = http.get(url, headers={**cookie_header, "Host": f"evil.example:{port}"})
        assert rebound.status_code == 421  # DNS rebinding: another name for 127.0.0.1
        forged = http.post(f"{url}?token={token}", headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403

    ws = url.replace("http://", "ws://") + "ws"
    for headers, why in (
        ({}, "no token"),
        ({"Cookie": f"{cookie}=wrong"}, "a wrong token"),
        ({"Cookie": f"{cookie}={token}", "Origin": "http://evil.example"}, "another site"),
    ):
        with (
            pytest.raises(InvalidStatus),
            connect(ws, additional_headers=headers, open_timeout=5),
        ):
            pytest.fail(f"a websocket with {why} was accepted")

    # A tab that never reads: a tiny receive buffer, so its writer blocks at once.
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    with (
        connect(ws, sock=raw, additional_headers={"Cookie": f"{cookie}={token}"}) as stalled,
        chromium() as browser,
    ):
        stalled.send('{"t": "watch", "conversation": "main"}')
        page = open_page(browser, hx)
        page.click("#new-conversation")  # another tab's chat, while "main" floods the stalled one
        until(page, "hex.conversation === 'chat-2'", 10)

        def learns_why() -> str:
            """Dropped, the stalled tab learns why (its queue held only the notice): read at once,
            as a tab that wakes up would, within the grace the notice gets before the close."""
            poll_for(lambda: "web.client_dropped" in hx.log(), 60, what="the stalled tab dropped")
            while (frame := json.loads(stalled.recv(timeout=10)))["t"] != "dropped":
                pass
            return str(frame["text"])

        # (In threads of their own: Playwright's sync API keeps an event loop in this one.)
        with ThreadPoolExecutor(2) as pool:
            flood = pool.submit(asyncio.run, flood_chunks(hx, "owner/main", 6000))
            told = pool.submit(learns_why)
            say(page, "still there?")
            assert final(page, 1).get_attribute("data-status") == "complete"
            flood.result(60)
            assert "fell 64 messages behind" in told.result(60)
        assert page.evaluate("hex.dropped") is None and hx.log().count("web.client_dropped") == 1


async def flood_chunks(hx: Hex, channel: str, n: int) -> None:
    """Publish ``n`` 2 KiB reply chunks for ``channel`` on the bus, 1000 a second (12 MB: more
    than a tab's queue and its socket's buffers hold, unless the tab reads)."""
    client = BusClient(hx.endpoints, "flood")
    client.start()
    try:
        for i in range(n):
            text = secrets.token_urlsafe(
                1536
            )  # random: the websocket's compression cannot shrink it
            chunk = ReplyChunk(reply_to="flood", channel=channel, index=i, text=text)
            client.publish_volatile(chunk, key="web")
            if i % 20 == 0:
                await asyncio.sleep(0.02)
    finally:
        await client.close()
