"""The page's application in-process (Starlette's test client, no server): the guard's refusals
carry the security headers, the cookie is the page's own port's, the websocket takes a tab only
with the token and from the page's Origin, and tabs never leak."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from actors.web.app import build_app
from actors.web.auth import allowed_hosts, cookie_name
from actors.web.chat import WebChat, markdown_renderer
from actors.web.config import WebConfig
from actors.web.hub import Hub
from tests.support.web import Published

TOKEN = "t" * 43
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
COOKIE = cookie_name(PORT)


def spawn(coro: Any, name: str) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro, name=name)


@pytest.fixture
def page() -> Iterator[tuple[TestClient, Hub, Published]]:
    config = WebConfig(max_clients=1)
    hub = Hub(max_clients=config.max_clients, queue_size=config.client_queue)
    published = Published()
    app = build_app(
        token=TOKEN,
        cookie=COOKIE,
        allowed=allowed_hosts(PORT),
        url=f"{BASE}/",
        secure=False,
        hub=hub,
        commands=WebChat(config, hub, published, markdown_renderer()).command,
        person=("owner", True),
        spawn=spawn,
    )
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client, hub, published


def guarded(response: Any) -> bool:
    headers = response.headers
    return (
        "script-src 'self'" in headers.get("content-security-policy", "")
        and headers.get("x-content-type-options") == "nosniff"
        and headers.get("referrer-policy") == "no-referrer"
    )


def test_refusals_say_why_and_carry_the_security_headers(
    page: tuple[TestClient, Hub, Published],
) -> None:
    client, _, _ = page
    no_token = client.get("/")
    assert no_token.status_code == 401 and "hexbus web" in no_token.text and guarded(no_token)
    rebound = client.get(
        "/", headers={"Host": f"evil.example:{PORT}", "Cookie": f"{COOKIE}={TOKEN}"}
    )
    assert rebound.status_code == 421 and guarded(rebound)
    forged = client.post(
        "/", headers={"Origin": "http://evil.example", "Cookie": f"{COOKIE}={TOKEN}"}
    )
    assert forged.status_code == 403 and guarded(forged)
    assert client.get("/static/app.js").status_code == 401
    odd = client.get("/static/app.js?token=%ff%fe")  # not UTF-8: refused, not a crash
    assert odd.status_code == 401


def test_the_token_becomes_this_ports_cookie_and_leaves_the_address(
    page: tuple[TestClient, Hub, Published],
) -> None:
    client, _, _ = page
    taken = client.get(f"/?token={TOKEN}")
    assert taken.status_code == 303 and taken.headers["location"] == "/"
    cookie = taken.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN}") and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower() and guarded(taken)
    assert client.get(f"/?token={TOKEN}x").status_code == 401
    ok = client.get("/", headers={"Cookie": f"{COOKIE}={TOKEN}"})
    assert ok.status_code == 200 and "app.js" in ok.text and guarded(ok)
    script = client.get("/static/app.js", headers={"Cookie": f"{COOKIE}={TOKEN}"})
    assert script.status_code == 200 and "textContent" in script.text
    # Another page's cookie (another port: browsers share cookies across ports) is not this one.
    assert client.get("/", headers={"Cookie": f"{cookie_name(9999)}={TOKEN}"}).status_code == 401
    # Two cookies of the same name: the guard and the page read the same one (the last).
    for header, status in (
        (f"{COOKIE}=wrong; {COOKIE}={TOKEN}", 200),
        (f"{COOKIE}={TOKEN}; {COOKIE}=wrong", 401),
    ):
        assert client.get("/", headers={"Cookie": header}).status_code == status
        assert client.get("/static/app.css", headers={"Cookie": header}).status_code == status


def test_the_socket_takes_a_tab_only_with_the_token_from_the_pages_origin(
    page: tuple[TestClient, Hub, Published],
) -> None:
    client, hub, published = page
    host = {"Host": f"127.0.0.1:{PORT}"}  # the test client's websocket says "testserver"
    for headers, why in (
        ({}, "needs the page's token"),
        ({"Cookie": f"{COOKIE}=wrong"}, "needs the page's token"),
        ({"Cookie": f"{COOKIE}={TOKEN}", "Origin": "http://evil.example"}, "are refused"),
        ({"Cookie": f"{COOKIE}={TOKEN}", "Origin": "null"}, "are refused"),
    ):
        with (
            pytest.raises(WebSocketDisconnect) as refused_by,
            client.websocket_connect("/ws", headers={**host, **headers}),
        ):
            pass
        assert why in refused_by.value.reason, (headers, refused_by.value.reason)
    mine = {**host, "Cookie": f"{COOKIE}={TOKEN}", "Origin": BASE}
    with client.websocket_connect("/ws", headers=mine) as tab:
        hello = tab.receive_json()
        assert hello == {"t": "hello", "person": "owner", "owner": True, "tab": hello["tab"]}
        tab.send_json({"t": "watch", "conversation": "main"})
        assert tab.receive_json() == {"t": "watching", "conversation": "main"}
        tab.send_text("not json")
        assert tab.receive_json()["t"] == "error"
        tab.send_bytes(b"\x00\x01")
        assert tab.receive_json()["t"] == "error"
        tab.send_json({"t": "say", "conversation": "main", "text": "hi", "local": "l1"})
        assert tab.receive_json() == {"t": "sent", "local": "l1", "id": "e1"}
        # One tab is this page's limit here: the next is told why and closed.
        with client.websocket_connect("/ws", headers=mine) as second:
            refused = second.receive_json()
            assert refused["t"] == "refused" and "max_clients" in refused["text"]
    assert len(published.events) == 1
    asyncio.run(asyncio.sleep(0.1))
    assert hub.clients == set()  # the closed tab left; nothing is held for it
