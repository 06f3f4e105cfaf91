"""The page's HTTP and websocket surface (Starlette), behind one guard.

``/`` is the page (``/?token=...`` sets the cookie and redirects to ``/``, so the token leaves
the address bar and the history), ``/static/`` its script and style, ``/ws`` the websocket that
carries chat both ways, ``/metrics`` the Prometheus exposition (the token as a bearer token:
Prometheus' ``bearer_token``). :class:`Guard` wraps all of it: Host, Origin and the token are checked
before any route runs (see :mod:`actors.web.auth`), and every response carries a
Content-Security-Policy that allows only the page's own script: even markup that slipped into the
page could not run a script.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from actors.web.auth import cookie_of, host_allowed, origin_allowed, token_matches
from actors.web.hub import Client, Hub
from actors.web.metrics import CONTENT_TYPE

__all__ = ["STATIC", "Guard", "build_app"]

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]

NO_TOKEN = """<!doctype html><meta charset="utf-8"><title>Hex</title>
<p>This page needs its token. Run <code>hexbus web</code> on the machine Hex runs on: it prints
the page's address with the token (and opens it where there is a browser).</p>"""

Spawn = Callable[..., "asyncio.Task[Any]"]


class Guard:
    """Refuses what is not for this page before any route sees it, and adds the security headers."""

    def __init__(
        self, app: ASGIApp, *, token: str, cookie: str, allowed: frozenset[str], url: str
    ) -> None:
        self.app, self.token, self.cookie, self.allowed, self.url = app, token, cookie, allowed, url

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        if not host_allowed(headers.get("host"), self.allowed):
            return 421, f"this page is served as {self.url} (Host {headers.get('host')!r} refused)"
        if (scope["type"] == "websocket" or scope.get("method") not in ("GET", "HEAD")) and (
            not origin_allowed(headers.get("origin"), self.allowed)
        ):
            return 403, f"requests from {headers.get('origin')!r} are refused"
        if scope["type"] == "http" and scope["path"] == "/":
            return None  # the page route reads the token itself
        cookie = cookie_of(headers.get("cookie", ""), self.cookie)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [None])[-1]
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token_matches(bearer.strip(), self.token):
            return None  # a scraper (Prometheus' bearer_token) or a script
        if not (token_matches(cookie, self.token) or token_matches(given, self.token)):
            return 401, "this needs the page's token: run `hexbus web`"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        refused = self.refusal(scope)
        if refused is not None:
            status, why = refused
            if scope["type"] == "websocket":
                # Before the handshake is accepted a close is an HTTP 403: the tab learns nothing.
                await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
            else:
                await PlainTextResponse(why, status_code=status)(scope, receive, send_guarded)
            return
        await self.app(scope, receive, send_guarded)


def build_app(
    *,
    token: str,
    cookie: str,
    allowed: frozenset[str],
    url: str,
    secure: bool,
    hub: Hub,
    commands: Callable[[Client, Any], Awaitable[None]],
    person: tuple[str, bool],
    spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    metrics: Callable[[], bytes] | None = None,
    routes: list[Route] | None = None,
) -> ASGIApp:
    """The page's application; ``commands(client, message)`` takes what a tab sends (chat, the
    runtime panel); ``spawn(coro, name)`` runs a tab's reader and writer as the actor's tasks
    (cancelled when the actor stops)."""

    async def page(request: Request) -> Any:
        given = request.query_params.get("token")
        if given is not None:
            if not token_matches(given, token):
                return HTMLResponse(NO_TOKEN, status_code=401)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(
                cookie, token, httponly=True, samesite="strict", secure=secure, path="/"
            )
            return response
        if not token_matches(cookie_of(request.headers.get("cookie", ""), cookie), token):
            return HTMLResponse(NO_TOKEN, status_code=401)
        return FileResponse(STATIC / "index.html")

    async def socket(websocket: WebSocket) -> None:
        try:
            await websocket.accept()
        except (WebSocketDisconnect, OSError):
            return  # gone during the handshake: nothing was taken
        joined = hub.join(*person)
        if isinstance(joined, str):
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.send_json({"t": "refused", "text": joined})
                await websocket.close(code=1013)
            return
        client = joined
        tasks: list[asyncio.Task[Any]] = []
        try:
            tasks.append(spawn(_read(websocket, client, hub, commands), f"tab-{client.id}-read"))
            tasks.append(spawn(_write(websocket, client), f"tab-{client.id}-write"))
            client.on_drop = tasks[1].cancel
            hub.send(
                client, {"t": "hello", "person": person[0], "owner": person[1], "tab": client.id}
            )
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hub.leave(client)
            for task in tasks:
                task.cancel()

    async def exposition(request: Request) -> Response:
        if metrics is None:
            return PlainTextResponse("no metrics here", status_code=404)
        return Response(metrics(), media_type=CONTENT_TYPE)

    served: list[Any] = [
        Route("/", page),
        Route("/metrics", exposition),
        WebSocketRoute("/ws", socket),
        *(routes or []),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Guard(Starlette(routes=served), token=token, cookie=cookie, allowed=allowed, url=url)


async def _read(
    websocket: WebSocket,
    client: Client,
    hub: Hub,
    commands: Callable[[Client, Any], Awaitable[None]],
) -> None:
    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text")
            if text is None:
                hub.send(client, {"t": "error", "text": "send JSON text frames"})
                continue
            try:
                message = json.loads(text)
            except ValueError:
                hub.send(client, {"t": "error", "text": "that was not JSON"})
                continue
            await commands(client, message)
    except (WebSocketDisconnect, RuntimeError):
        return  # the tab closed (RuntimeError: a receive after the close)


async def _write(websocket: WebSocket, client: Client) -> None:
    try:
        while True:
            text = await client.queue.get()
            await websocket.send_text(text)
            if client.dropped and client.queue.empty():  # the notice went: that was the last
                await websocket.close(code=1013)
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
