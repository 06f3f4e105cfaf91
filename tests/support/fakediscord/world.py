"""The fake Discord's world: one guild, its users (all members), channels and messages, and
their JSON as Discord sends it.

Changes that Discord announces on the gateway (a member added, a message posted, edited or
deleted) go through :attr:`World.dispatch`, which the server points at its gateway; each event
is built per session from that session's intents.

:class:`World` is one cohesive class over 500 lines, most of them the JSON shapes of Discord's
objects, which read each other (a message's author, a guild's channels and members).
"""

from __future__ import annotations

import json
import mimetypes
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.support.fakediscord.wire import (
    BOT_PERMS,
    EPHEMERAL,
    EVERYONE_PERMS,
    LOADING,
    MAX_CONTENT,
    ApiError,
    Intent,
    Json,
    Snowflakes,
    form_error,
    iso,
    not_found,
)

# Builds an event's data for a session with these intents; None: that session does not get it.
Build = Callable[[int], Json | None]


@dataclass
class User:
    id: int
    name: str
    bot: bool


@dataclass
class FakeChannel:
    id: int
    kind: str  # "text" | "voice" | "dm"
    name: str
    position: int = 0
    recipient_id: int | None = None
    messages: list[Msg] = field(default_factory=list)


@dataclass
class Msg:
    id: int
    channel_id: int
    author_id: int
    content: str
    created: float
    type: int = 0
    flags: int = 0
    embeds: list[Json] = field(default_factory=list)
    components: list[Json] = field(default_factory=list)
    attachments: list[Json] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)
    reference_id: int | None = None
    nonce: int | str | None = None
    webhook_id: int | None = None
    interaction_metadata: Json | None = None
    reactions: dict[str, set[int]] = field(default_factory=dict)
    edited: float | None = None
    edits: int = 0
    history: list[str] = field(default_factory=list)
    visible: bool = True  # False for ephemeral interaction messages: never in the channel
    deleted: bool = False


class World:
    """Everything the fake Discord knows; only ever touched on the server's loop."""

    def __init__(
        self,
        *,
        bot_id: int,
        app_id: int,
        owner_id: int,
        guild_id: int,
        bot_name: str,
        approved_intents: int,
    ) -> None:
        self.bot_id = bot_id
        self.app_id = app_id
        self.owner_id = owner_id
        self.guild_id = guild_id
        self.bot_role_id = guild_id + 1
        self.approved_intents = approved_intents
        self.port = 0  # the HTTP server's, once started: attachment URLs name it
        self.dispatch: Callable[[str, Build], None] = lambda event, build: None
        self.ids = Snowflakes()
        self.users: dict[int, User] = {}
        self.joined: dict[int, float] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.dms: dict[int, int] = {}
        self.msgs: dict[int, Msg] = {}
        self.files: dict[int, tuple[str, bytes]] = {}
        self.nonces: dict[tuple[int, int, str], int] = {}
        self.voice_states: dict[int, Json] = {}  # user id → their voice state, while in a channel
        self.commands: dict[int | None, dict[str, Json]] = {}  # scope (guild id or None) → commands
        self.add_user(owner_id, "owner", bot=False)
        self.add_user(bot_id, bot_name, bot=True)
        self.general_channel_id = self.add_channel("general", "text")

    def add_user(self, uid: int, name: str, *, bot: bool) -> int:
        self.users[uid] = User(uid, name, bot)
        self.joined[uid] = time.time()
        member = {"guild_id": str(self.guild_id), **self.member_json(uid)}
        self.dispatch(
            "GUILD_MEMBER_ADD", lambda intents: member if intents & Intent.GUILD_MEMBERS else None
        )
        return uid

    def add_channel(self, name: str, kind: str) -> int:
        cid = self.ids.next()
        position = sum(1 for c in self.channels.values() if c.kind == kind)
        self.channels[cid] = ch = FakeChannel(cid, kind, name, position)
        data = self.channel_json(ch)
        self.dispatch("CHANNEL_CREATE", lambda intents: data if intents & Intent.GUILDS else None)
        return cid

    def dm_for(self, user_id: int) -> int:
        self.user(user_id)
        if user_id not in self.dms:
            cid = self.ids.next()
            self.channels[cid] = FakeChannel(cid, "dm", "", recipient_id=user_id)
            self.dms[user_id] = cid
        return self.dms[user_id]

    def user(self, uid: int) -> User:
        try:
            return self.users[uid]
        except KeyError:
            raise not_found("User", 10013) from None

    def channel(self, cid: int) -> FakeChannel:
        try:
            return self.channels[cid]
        except KeyError:
            raise not_found("Channel", 10003) from None

    def message(self, cid: int, mid: int) -> Msg:
        m = self.msgs.get(mid)
        if m is None or m.channel_id != cid or m.deleted:
            raise not_found("Message", 10008)
        return m

    def user_json(self, uid: int) -> Json:
        u = self.user(uid)
        return {
            "id": str(u.id),
            "username": u.name,
            "discriminator": "0",
            "global_name": u.name,
            "avatar": None,
            "bot": u.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
        }

    def member_json(self, uid: int, *, with_user: bool = True) -> Json:
        member: Json = {
            "roles": [str(self.bot_role_id)] if uid == self.bot_id else [],
            "joined_at": iso(self.joined.get(uid, time.time())),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = self.user_json(uid)
        return member

    def channel_json(self, ch: FakeChannel) -> Json:
        if ch.kind == "dm":
            assert ch.recipient_id is not None
            return {
                "id": str(ch.id),
                "type": 1,
                "flags": 0,
                "last_message_id": str(ch.messages[-1].id) if ch.messages else None,
                "recipients": [self.user_json(ch.recipient_id)],
            }
        data: Json = {
            "id": str(ch.id),
            "type": 0 if ch.kind == "text" else 2,
            "guild_id": str(self.guild_id),
            "name": ch.name,
            "position": ch.position,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "rate_limit_per_user": 0,
            "last_message_id": str(ch.messages[-1].id) if ch.messages else None,
        }
        if ch.kind == "text":
            data["topic"] = None
        else:
            data.update(bitrate=64000, user_limit=0, rtc_region=None)
        return data

    def guild_json(self) -> Json:
        return {
            "id": str(self.guild_id),
            "name": "Hex Test Guild",
            "icon": None,
            "owner_id": str(self.owner_id),
            "unavailable": False,
            "large": False,
            "member_count": len(self.users),
            "joined_at": iso(self.joined[self.bot_id]),
            "preferred_locale": "en-US",
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "system_channel_id": str(self.general_channel_id),
            "roles": [
                {
                    "id": str(self.guild_id),
                    "name": "@everyone",
                    "permissions": str(EVERYONE_PERMS),
                    "position": 0,
                },
                {
                    "id": str(self.bot_role_id),
                    "name": "Hex",
                    "permissions": str(BOT_PERMS),
                    "position": 1,
                    "managed": True,
                    "tags": {"bot_id": str(self.bot_id)},
                },
            ],
            "emojis": [],
            "stickers": [],
            "channels": [self.channel_json(c) for c in self.channels.values() if c.kind != "dm"],
            "threads": [],
            "members": [self.member_json(uid) for uid in self.users],
            "voice_states": [dict(v) for v in self.voice_states.values()],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        }

    def app_json(self) -> Json:
        return {
            "id": str(self.app_id),
            "name": self.users[self.bot_id].name,
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": self.user_json(self.owner_id),
            "team": None,
            "verify_key": "0" * 64,
            "flags": self.app_flags(),
            "summary": "",
            "bot": self.user_json(self.bot_id),
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": 1,
        }

    def app_flags(self) -> int:
        # The _LIMITED gateway flags are what an unverified bot in under 100 guilds has.
        flags = 1 << 23 if self.commands else 0
        for intent, flag in (
            (Intent.GUILD_PRESENCES, 13),
            (Intent.GUILD_MEMBERS, 15),
            (Intent.MESSAGE_CONTENT, 19),
        ):
            if self.approved_intents & intent:
                flags |= 1 << flag
        return flags

    def is_guild(self, m: Msg) -> bool:
        return self.channels[m.channel_id].kind != "dm"

    def message_json(
        self,
        m: Msg,
        *,
        gateway: bool = False,
        blank: Callable[[Msg], bool] | None = None,
        nested: bool = False,
    ) -> Json:
        guild = self.is_guild(m)
        hidden = blank is not None and blank(m)
        data: Json = {
            "id": str(m.id),
            "channel_id": str(m.channel_id),
            "author": self.user_json(m.author_id),
            "content": "" if hidden else m.content,
            "timestamp": iso(m.created),
            "edited_timestamp": iso(m.edited) if m.edited else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [] if hidden else [dict(a) for a in m.attachments],
            "embeds": [] if hidden else json.loads(json.dumps(m.embeds)),
            "components": [] if hidden else json.loads(json.dumps(m.components)),
            "pinned": False,
            "type": m.type,
            "flags": m.flags,
        }
        for uid in m.mentions:
            mention = self.user_json(uid)
            if gateway and guild:
                mention["member"] = self.member_json(uid, with_user=False)
            data["mentions"].append(mention)
        if gateway and guild:
            data["guild_id"] = str(self.guild_id)
            if m.webhook_id is None:
                data["member"] = self.member_json(m.author_id, with_user=False)
        if m.nonce is not None:
            data["nonce"] = m.nonce
        if m.webhook_id is not None:
            data["webhook_id"] = str(m.webhook_id)
            data["application_id"] = str(self.app_id)
        if m.interaction_metadata is not None:
            data["interaction_metadata"] = m.interaction_metadata
        if m.reactions:
            data["reactions"] = [
                {
                    "emoji": {"id": None, "name": e},
                    "count": len(who),
                    "me": self.bot_id in who,
                    "count_details": {"burst": 0, "normal": len(who)},
                    "burst_colors": [],
                    "me_burst": False,
                }
                for e, who in m.reactions.items()
                if who
            ]
        if m.reference_id is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": str(m.reference_id),
                "channel_id": str(m.channel_id),
            }
            if guild:
                data["message_reference"]["guild_id"] = str(self.guild_id)
            if not nested:
                ref = self.msgs.get(m.reference_id)
                data["referenced_message"] = (
                    None
                    if ref is None or ref.deleted
                    else self.message_json(ref, gateway=gateway, blank=blank, nested=True)
                )
        return data

    def public(self, m: Msg) -> Json:
        data = self.message_json(m)
        data.update(edits=m.edits, history=list(m.history), ephemeral=bool(m.flags & EPHEMERAL))
        return data

    def mentions_in(self, content: str) -> list[int]:
        found = [int(x) for x in re.findall(r"<@!?(\d+)>", content)]
        return [uid for uid in dict.fromkeys(found) if uid in self.users]

    def new_message(self, ch: FakeChannel, author_id: int, content: str, **fields: Any) -> Msg:
        m = Msg(self.ids.next(), ch.id, author_id, content, time.time(), **fields)
        m.mentions = self.mentions_in(content)
        if m.reference_id is not None and m.type == 0:
            m.type = 19
        return m

    def store(self, m: Msg) -> None:
        self.msgs[m.id] = m
        if m.visible:
            self.channels[m.channel_id].messages.append(m)
            self.dispatch_message("MESSAGE_CREATE", m)

    def dispatch_message(self, event: str, m: Msg) -> None:
        dm = not self.is_guild(m)
        need = Intent.DIRECT_MESSAGES if dm else Intent.GUILD_MESSAGES

        def build(intents: int) -> Json | None:
            if not intents & need:
                return None

            # Discord's MESSAGE_CONTENT rule: DMs, mentions of the bot and its own messages keep content.
            def blank(x: Msg) -> bool:
                return (
                    not intents & Intent.MESSAGE_CONTENT
                    and not dm
                    and self.bot_id not in x.mentions
                    and x.author_id != self.bot_id
                )

            return self.message_json(m, gateway=True, blank=blank)

        self.dispatch(event, build)

    def apply_edit(self, m: Msg, body: Json, files: Iterable[tuple[str, bytes]] = ()) -> None:
        if "content" in body:
            content = body["content"] or ""
            self.check_length(content)
            if content != m.content:
                m.history.append(m.content)
                m.content = content
                m.mentions = self.mentions_in(content)
        if "embeds" in body:
            m.embeds = list(body["embeds"] or [])
        if "components" in body:
            m.components = list(body["components"] or [])
        if "attachments" in body:
            keep = {str(a.get("id")) for a in body["attachments"] or []}
            m.attachments = [a for a in m.attachments if a["id"] in keep]
        m.attachments += [self.store_attachment(m.channel_id, n, d) for n, d in files]
        m.flags &= ~LOADING
        m.edits += 1
        m.edited = time.time()
        if m.visible:
            self.dispatch_message("MESSAGE_UPDATE", m)

    def delete(self, m: Msg) -> None:
        m.deleted = True
        if m.visible:
            self.channels[m.channel_id].messages.remove(m)
            data: Json = {"id": str(m.id), "channel_id": str(m.channel_id)}
            if self.is_guild(m):
                data["guild_id"] = str(self.guild_id)
            self.dispatch("MESSAGE_DELETE", lambda intents: data)

    def check_length(self, content: str) -> None:
        if len(content) > MAX_CONTENT:
            raise form_error(
                "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )

    def store_attachment(self, cid: int, name: str, data: bytes) -> Json:
        aid = self.ids.next()
        self.files[aid] = (name, data)
        url = f"http://127.0.0.1:{self.port}/attachments/{cid}/{aid}/{name}"
        return {
            "id": str(aid),
            "filename": name,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        }

    def message_from_body(
        self, ch: FakeChannel, author_id: int, body: Json, files: list[tuple[str, bytes]]
    ) -> Msg:
        content = body.get("content") or ""
        self.check_length(content)
        embeds, components = body.get("embeds") or [], body.get("components") or []
        if not (
            content or embeds or components or files or body.get("sticker_ids") or body.get("poll")
        ):
            raise ApiError(400, 50006, "Cannot send an empty message")
        ref_id = None
        ref = body.get("message_reference")
        if ref and ref.get("message_id"):
            target = self.msgs.get(int(ref["message_id"]))
            if target is not None and not target.deleted:
                ref_id = target.id
            elif ref.get("fail_if_not_exists", True):
                raise form_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
        m = self.new_message(ch, author_id, content, reference_id=ref_id, nonce=body.get("nonce"))
        m.embeds, m.components = list(embeds), list(components)
        m.flags = int(body.get("flags") or 0) & ~(EPHEMERAL | LOADING)
        m.attachments = [self.store_attachment(ch.id, name, data) for name, data in files]
        return m

    def rest_message(self, m: Msg) -> Json:
        if self.approved_intents & Intent.MESSAGE_CONTENT:
            return self.message_json(m)
        # Without the approved intent Discord blanks content over REST too, with the same exceptions.
        return self.message_json(
            m,
            blank=lambda x: (
                self.is_guild(x) and self.bot_id not in x.mentions and x.author_id != self.bot_id
            ),
        )

    def check_guild(self, guild_id: int) -> None:
        if guild_id != self.guild_id:
            raise ApiError(403, 50001, "Missing Access")

    def perms(self, uid: int) -> int:
        return (
            BOT_PERMS
            if uid == self.bot_id
            else EVERYONE_PERMS | (1 << 3 if uid == self.owner_id else 0)
        )
