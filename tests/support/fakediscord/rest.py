"""The fake Discord's REST API: the routes discord.py 2.7 calls, with Discord's rate-limit headers,
a real per-channel message bucket, and failure injection (429s, 5xx, HTML error pages).

Application commands, interaction callbacks and webhooks are routed here too; their handlers
live in :mod:`tests.support.fakediscord.interactions`.
"""

from __future__ import annotations

import hashlib
import json
import math
import mimetypes
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import BodyPartReader, web

from tests.support.fakediscord.gateway import Gateway
from tests.support.fakediscord.interactions import Interactions
from tests.support.fakediscord.wire import (
    API_PREFIX,
    ApiError,
    Handler,
    Json,
    Records,
    Reply,
    Req,
    RequestRecord,
    form_error,
    not_found,
)
from tests.support.fakediscord.world import World


@dataclass
class Bucket:
    """Discord's fixed window: the first request opens it, ``limit`` requests fit in it."""

    name: str
    limit: int
    window: float
    count: int = 0
    reset_at: float = 0.0

    def take(self, now: float) -> float | None:
        if now >= self.reset_at:
            self.count, self.reset_at = 0, now + self.window
        if self.count >= self.limit:
            return self.reset_at - now
        self.count += 1
        return None

    def headers(self, now: float) -> dict[str, str]:
        remaining = self.limit - self.count if now < self.reset_at else self.limit
        reset_after = max(0.0, self.reset_at - now) if now < self.reset_at else self.window
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.md5(self.name.encode()).hexdigest()[:16],
        }


@dataclass
class Injection:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float
    html: bool


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    bucket: str
    auth: bool


class Rest:
    """HTTP under ``/api/v10``, and attachments under ``/attachments``."""

    def __init__(
        self,
        world: World,
        gateway: Gateway,
        interactions: Interactions,
        records: Records,
        *,
        token: str,
        message_rate: tuple[int, float],
    ) -> None:
        self.world = world
        self.gateway = gateway
        self.interactions = interactions
        self.records = records
        self.token = token
        self.message_rate = message_rate
        self.buckets: dict[str, Bucket] = {}
        self.injections: list[Injection] = []
        self.routes = self.build_routes()

    def build_routes(self) -> list[Route]:
        ch = r"/channels/(?P<channel_id>\d+)"
        msg = ch + r"/messages/(?P<message_id>\d+)"
        react = msg + r"/reactions/(?P<emoji>[^/]+)/@me"
        guild = r"/guilds/(?P<guild_id>\d+)"
        cmds = r"/applications/(?P<app_id>\d+)(?:/guilds/(?P<guild_id>\d+))?/commands"
        hook = r"/webhooks/(?P<webhook_id>\d+)/(?P<token>[^/]+)"
        hook_msg = hook + r"/messages/(?P<message_id>@original|\d+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", r"/users/@me", self.r_me),
            ("GET", r"/users/(?P<user_id>\d+)", self.r_user),
            ("POST", r"/users/@me/channels", self.r_create_dm),
            ("GET", r"/gateway", self.r_gateway),
            ("GET", r"/gateway/bot", self.r_gateway_bot),
            ("GET", r"/oauth2/applications/@me", self.r_app),
            ("GET", r"/applications/@me", self.r_app),
            ("GET", ch, self.r_channel),
            ("POST", ch + r"/typing", self.r_typing),
            ("GET", ch + r"/messages", self.r_history),
            ("POST", ch + r"/messages", self.r_send),
            ("GET", msg, self.r_get_message),
            ("PATCH", msg, self.r_edit),
            ("DELETE", msg, self.r_delete),
            ("PUT", react, self.r_react),
            ("DELETE", react, self.r_unreact),
            ("GET", guild, self.r_guild),
            ("GET", guild + r"/channels", self.r_guild_channels),
            ("GET", guild + r"/members/(?P<user_id>\d+)", self.r_member),
            ("GET", cmds, self.interactions.r_commands),
            ("PUT", cmds, self.interactions.r_put_commands),
            ("POST", cmds, self.interactions.r_post_command),
            ("DELETE", cmds + r"/(?P<command_id>\d+)", self.interactions.r_delete_command),
            (
                "POST",
                r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback",
                self.interactions.r_callback,
            ),
            ("GET", hook_msg, self.interactions.r_hook_get),
            ("PATCH", hook_msg, self.interactions.r_hook_edit),
            ("DELETE", hook_msg, self.interactions.r_hook_delete),
            ("POST", hook, self.interactions.r_followup),
        ]
        # Interaction callbacks and webhooks authenticate by the token in their path; GET /gateway
        # needs no token at all.
        token_paths = ("/interactions/", "/webhooks/")
        return [
            Route(
                m, re.compile(p), h, f"{m} {p}", p != "/gateway" and not p.startswith(token_paths)
            )
            for m, p, h in table
        ]

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method == method and (found := route.pattern.fullmatch(path)):
                return route, {k: v for k, v in found.groupdict().items() if v is not None}
        return None, {}

    def bucket(self, route: Route | None, params: dict[str, str]) -> Bucket:
        """Per route and per major parameter (channel, guild, webhook), as Discord buckets them."""
        name = route.bucket if route is not None else "unrouted"
        majors = ("channel_id", "guild_id", "webhook_id", "interaction_id", "token")
        key = name + ":" + ":".join(params.get(k, "") for k in majors)
        if key not in self.buckets:
            messages = route is not None and route.handler in (self.r_send, self.r_edit)
            limit, window = self.message_rate if messages else (50, 1.0)
            self.buckets[key] = Bucket(name, limit, window)
        return self.buckets[key]

    def take_injection(self, method: str, path: str) -> Injection | None:
        for inj in self.injections:
            if inj.method == method and inj.pattern.fullmatch(path):
                inj.times -= 1
                if inj.times <= 0:
                    self.injections.remove(inj)
                return inj
        return None

    async def read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            files: list[tuple[str, bytes]] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                elif part.filename:
                    files.append((part.filename, bytes(await part.read())))
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "GET" and path.startswith("/attachments/"):
            return self.serve_attachment(path)
        rel = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else path
        now = time.monotonic()
        headers = {"Via": "1.1 google"}
        body: Any = None
        text: str | None = None
        payload: Any = None
        try:
            body, files = await self.read_body(request)
            route, params = self.match(request.method, rel) if rel != path else (None, {})
            bucket = self.bucket(route, params)
            headers.update(bucket.headers(now))
            if route is None:
                raise ApiError(404, 0, "404: Not Found")
            if route.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise ApiError(401, 0, "401: Unauthorized")
            injected = self.take_injection(request.method, rel)
            retry = None if injected else bucket.take(now)
            if injected is not None:
                status = injected.status
                if status == 429:
                    payload, text = self.limited(headers, injected.retry_after, injected.html)
                else:
                    phrase = f"{status}: {HTTPStatus(status).phrase}"
                    payload = {"message": phrase, "code": 0}
                    if injected.html:
                        text = f"<html><head><title>{phrase}</title></head><body><h1>{phrase}</h1></body></html>"
            elif retry is not None:
                status = 429
                payload, text = self.limited(headers, retry, False)
                headers.update(
                    {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": f"{retry:.3f}"}
                )
            else:
                headers.update(bucket.headers(now))
                status, payload = await route.handler(Req(params, dict(request.query), body, files))
        except ApiError as e:
            status, payload = e.status, e.body
        except Exception:
            self.records.error()
            status, payload = 500, {"message": "500: fakediscord internal error", "code": 0}
        self.records.requests.append(RequestRecord(now, request.method, rel, body, status))
        if status == 429:
            self.records.counts["rate_limited"] += 1
        if text is not None:
            return web.Response(status=status, text=text, content_type="text/html", headers=headers)
        if status == 204 or payload is None:
            return web.Response(status=status, headers=headers)
        # Exactly "application/json": discord.py compares the header verbatim, and aiohttp's
        # content_type= would append "; charset=utf-8", turning every answer into a string.
        headers["Content-Type"] = "application/json"
        return web.Response(status=status, body=json.dumps(payload).encode(), headers=headers)

    def limited(self, headers: dict[str, str], retry: float, html: bool) -> tuple[Json, str | None]:
        headers.update({"Retry-After": str(max(1, math.ceil(retry))), "X-RateLimit-Scope": "user"})
        payload = {
            "message": "You are being rate limited.",
            "retry_after": round(retry, 3),
            "global": False,
        }
        if html:  # what a Cloudflare ban looks like; discord.py refuses to retry it
            return (
                payload,
                "<html><head><title>Error 1015</title></head><body>You are being rate limited.</body></html>",
            )
        return payload, None

    def serve_attachment(self, path: str) -> web.Response:
        parts = path.split("/")
        try:
            name, data = self.world.files[int(parts[3])]
        except (IndexError, ValueError, KeyError):
            return web.Response(status=404, text="Not Found")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return web.Response(body=data, content_type=ctype)

    async def r_me(self, req: Req) -> Reply:
        return 200, {
            **self.world.user_json(self.world.bot_id),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
            "email": None,
        }

    async def r_user(self, req: Req) -> Reply:
        return 200, self.world.user_json(int(req.params["user_id"]))

    async def r_create_dm(self, req: Req) -> Reply:
        rid = (req.body or {}).get("recipient_id")
        if rid is None:
            raise form_error()
        return 200, self.world.channel_json(self.world.channels[self.world.dm_for(int(rid))])

    async def r_gateway(self, req: Req) -> Reply:
        return 200, {"url": self.gateway.url}

    async def r_gateway_bot(self, req: Req) -> Reply:
        limit = {
            "total": 1000,
            "remaining": max(0, 1000 - self.records.counts["identify"]),
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        }
        return 200, {"url": self.gateway.url, "shards": 1, "session_start_limit": limit}

    async def r_app(self, req: Req) -> Reply:
        return 200, self.world.app_json()

    async def r_channel(self, req: Req) -> Reply:
        return 200, self.world.channel_json(self.world.channel(int(req.params["channel_id"])))

    async def r_typing(self, req: Req) -> Reply:
        self.world.channel(int(req.params["channel_id"]))
        return 204, None

    async def r_history(self, req: Req) -> Reply:
        msgs = self.world.channel(int(req.params["channel_id"])).messages
        q = req.query
        try:
            limit = int(q.get("limit", 50))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise form_error("limit", "NUMBER_TYPE_MAX", "int value should be between 1 and 100.")
        if "around" in q:
            pivot = int(q["around"])
            idx = next((i for i, m in enumerate(msgs) if m.id >= pivot), len(msgs))
            start = max(0, idx - limit // 2)
            selected = msgs[start : start + limit]
        elif "before" in q:
            selected = [m for m in msgs if m.id < int(q["before"])][-limit:]
        elif "after" in q:
            selected = [m for m in msgs if m.id > int(q["after"])][:limit]
        else:
            selected = msgs[-limit:]
        # Newest first, as Discord does, whichever of before/after/around was asked.
        return 200, [self.world.rest_message(m) for m in reversed(selected)]

    async def r_get_message(self, req: Req) -> Reply:
        return 200, self.world.rest_message(
            self.world.message(int(req.params["channel_id"]), int(req.params["message_id"]))
        )

    async def r_send(self, req: Req) -> Reply:
        ch = self.world.channel(int(req.params["channel_id"]))
        body = req.body or {}
        nonce = body.get("nonce")
        key = (ch.id, self.world.bot_id, str(nonce))
        if nonce is not None and body.get("enforce_nonce") and key in self.world.nonces:
            earlier = self.world.msgs.get(self.world.nonces[key])
            if earlier is not None and not earlier.deleted:
                return 200, self.world.message_json(earlier)
        m = self.world.message_from_body(ch, self.world.bot_id, body, req.files)
        if nonce is not None:
            self.world.nonces[key] = m.id
        self.world.store(m)
        return 200, self.world.message_json(m)

    async def r_edit(self, req: Req) -> Reply:
        m = self.world.message(int(req.params["channel_id"]), int(req.params["message_id"]))
        if m.author_id != self.world.bot_id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self.world.apply_edit(m, req.body or {}, req.files)
        return 200, self.world.message_json(m)

    async def r_delete(self, req: Req) -> Reply:
        m = self.world.message(int(req.params["channel_id"]), int(req.params["message_id"]))
        if m.author_id != self.world.bot_id and not self.world.is_guild(m):
            raise ApiError(403, 50003, "Cannot execute action on a DM channel")
        self.world.delete(m)
        return 204, None

    async def r_react(self, req: Req) -> Reply:
        m = self.world.message(int(req.params["channel_id"]), int(req.params["message_id"]))
        m.reactions.setdefault(req.params["emoji"], set()).add(self.world.bot_id)
        return 204, None

    async def r_unreact(self, req: Req) -> Reply:
        m = self.world.message(int(req.params["channel_id"]), int(req.params["message_id"]))
        m.reactions.get(req.params["emoji"], set()).discard(self.world.bot_id)
        return 204, None

    async def r_guild(self, req: Req) -> Reply:
        self.world.check_guild(int(req.params["guild_id"]))
        data = self.world.guild_json()
        for key in (
            "channels",
            "members",
            "voice_states",
            "threads",
            "presences",
            "joined_at",
            "large",
        ):
            data.pop(key, None)
        return 200, data

    async def r_guild_channels(self, req: Req) -> Reply:
        self.world.check_guild(int(req.params["guild_id"]))
        return 200, [
            self.world.channel_json(c) for c in self.world.channels.values() if c.kind != "dm"
        ]

    async def r_member(self, req: Req) -> Reply:
        self.world.check_guild(int(req.params["guild_id"]))
        uid = int(req.params["user_id"])
        if uid not in self.world.users:
            raise not_found("Member", 10007)
        return 200, self.world.member_json(uid)
