"""The page's tests share: a Hex with the web actor, its address, and a real Chromium.

* :func:`web_toml`: the web actor's table (any free port) for a supervisor.toml.
* :func:`page_of`: the address and token the running actor left for ``hexbus web``.
* :func:`chromium`: Debian's chromium driven by Playwright (scripts/test installs both).
* :func:`artifact`: where a screenshot goes for a person to look at (``test-artifacts/web``).
* :class:`Published`: the events the page's plain classes publish, in-process (no bus).
* :func:`journaled`: the durable events of some families in a running Hex's journal.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hexbus import notes
from hexbus.bus import BusClient
from hexbus.codec import Envelope
from schemas import Event
from tests.support.harness import REPO, Hex, actor_toml, poll_for

ARTIFACTS = REPO / "test-artifacts" / "web"


def web_toml(name: str = "web", **config: Any) -> str:
    return actor_toml(
        name,
        "actors.web.actor:WebActor",
        heartbeat_timeout_s=10.0,
        config={"port": 0, **config},
    )


def page_of(hx: Hex, actor: str = "web") -> dict[str, Any]:
    """The note the web actor left: url, token and the address to open."""
    return poll_for(
        lambda: notes.read(hx.run_dir, actor).get(actor), 20, what=f"{actor}'s page address"
    )


@contextmanager
def chromium(*extra: str) -> Iterator[Any]:
    """A headless Chromium (the Debian package) under Playwright, with ``extra`` flags (a fake
    microphone); fails with the fix if absent."""
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is not installed: scripts/test installs it (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *extra],
        )
        try:
            yield browser
        finally:
            browser.close()


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


class Published:
    """Stands in for the actor's publish in in-process tests of the page's plain classes: keeps
    each event and answers with an envelope whose id is ``e<n>``."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event, **_: Any) -> Envelope:
        self.events.append(event)
        return Envelope(
            id=f"e{len(self.events)}",
            topic="chat.message.web",
            source="web",
            body=event,  # type: ignore[arg-type]
        )


async def _journaled(hx: Hex, prefixes: list[str]) -> list[Any]:
    client = BusClient(hx.endpoints, "journal-reader")
    client.start()
    feed = client.durable(prefixes, after=0, wait_ms=0)
    found = []

    async def read() -> None:
        async for envelope, _ in feed:
            if envelope is None:
                if feed.after >= feed.head:
                    return  # caught up with the head
            else:
                found.append(envelope.body)

    try:
        await asyncio.wait_for(read(), 20)
    finally:
        await client.close()
    return found


def journaled(hx: Hex, prefixes: list[str]) -> list[Any]:
    """The bodies of every durable event under ``prefixes`` journaled so far, in order (run in a
    thread of its own: Playwright's sync API keeps an event loop in the test's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _journaled(hx, prefixes)).result(30)


@contextmanager
def guest_tab(hx: Hex, actor: str = "guest") -> Iterator[Any]:
    """A websocket to ``actor``'s page with its cookie, its hello read (a tab as the page has one)."""
    import json

    from websockets.sync.client import connect

    from actors.web.auth import cookie_name

    page = page_of(hx, actor)
    port = int(page["url"].rsplit(":", 1)[1].strip("/"))
    headers = {"Cookie": f"{cookie_name(port)}={page['token']}"}
    with connect(page["url"].replace("http://", "ws://") + "ws", additional_headers=headers) as tab:
        json.loads(tab.recv(5))
        yield tab
