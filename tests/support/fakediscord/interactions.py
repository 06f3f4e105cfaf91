"""The fake Discord's application commands and interactions: registering commands, slash
commands and button clicks dispatched as INTERACTION_CREATE, and the callback and webhook routes
a bot answers them through (Discord's 3 s deadline, deferrals, followups, ephemeral messages).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.support.fakediscord.wire import (
    BOT_PERMS,
    EPHEMERAL,
    LOADING,
    ApiError,
    Json,
    Reply,
    Req,
    form_error,
    not_found,
)
from tests.support.fakediscord.world import FakeChannel, Msg, World


@dataclass
class Interaction:
    id: int
    token: str
    type: int  # 2 application command, 3 component
    created: float
    user_id: int
    channel_id: int
    payload: Json
    name: str | None = None
    custom_id: str | None = None
    clicked_id: int | None = None
    callbacks: list[Json] = field(default_factory=list)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)


class Interactions:
    """Commands the bot registered (kept in the world) and the interactions it was sent."""

    def __init__(self, world: World, *, interaction_deadline_s: float) -> None:
        self.world = world
        self.interaction_deadline_s = interaction_deadline_s
        self.by_id: dict[int, Interaction] = {}
        self.by_token: dict[str, Interaction] = {}

    def command_scope(self, req: Req) -> int | None:
        if int(req.params["app_id"]) != self.world.app_id:
            raise ApiError(403, 50001, "Missing Access")
        if "guild_id" in req.params:
            self.world.check_guild(int(req.params["guild_id"]))
            return self.world.guild_id
        return None

    def register(self, scope: int | None, body: Json) -> Json:
        if not isinstance(body, dict) or not body.get("name"):
            raise form_error()
        cmd: Json = json.loads(json.dumps(body))
        cmd.setdefault("type", 1)
        key = f"{cmd['type']}:{cmd['name']}"
        earlier = self.world.commands.get(scope, {}).get(key)
        # Discord keeps a command's id when it is overwritten by name.
        cmd["id"] = earlier["id"] if earlier else str(self.world.ids.next())
        cmd["application_id"] = str(self.world.app_id)
        cmd["version"] = str(self.world.ids.next())
        cmd.setdefault("description", "")
        cmd.setdefault("options", [])
        cmd.setdefault("default_member_permissions", None)
        cmd.setdefault("nsfw", False)
        if scope is not None:
            cmd["guild_id"] = str(scope)
        self.world.commands.setdefault(scope, {})[key] = cmd
        return cmd

    async def r_commands(self, req: Req) -> Reply:
        return 200, list(self.world.commands.get(self.command_scope(req), {}).values())

    async def r_put_commands(self, req: Req) -> Reply:
        scope = self.command_scope(req)
        if not isinstance(req.body, list):
            raise form_error()
        earlier = self.world.commands.get(scope, {})
        fresh: dict[str, Json] = {}
        self.world.commands[scope] = dict(earlier)
        for body in req.body:
            cmd = self.register(scope, body)
            fresh[f"{cmd['type']}:{cmd['name']}"] = cmd
        self.world.commands[scope] = fresh
        return 200, list(fresh.values())

    async def r_post_command(self, req: Req) -> Reply:
        scope = self.command_scope(req)
        return 201, self.register(scope, req.body or {})

    async def r_delete_command(self, req: Req) -> Reply:
        scope = self.command_scope(req)
        cmds = self.world.commands.get(scope, {})
        for key, cmd in list(cmds.items()):
            if cmd["id"] == req.params["command_id"]:
                del cmds[key]
                return 204, None
        raise not_found("application command", 10063)

    def interact(
        self,
        name: str,
        user_id: int,
        channel_id: int,
        values: dict[str, Any],
        subcommand: str | None,
        guild: bool,
    ) -> str:
        self.world.user(user_id)
        ch = self.world.channel(channel_id)
        if guild and ch.kind == "dm":
            raise ValueError(f"channel {channel_id} is a DM: pass guild=False")
        if not guild and (ch.kind != "dm" or ch.recipient_id != user_id):
            raise ValueError(
                f"guild=False needs the DM channel of user {user_id} (see dm_channel())"
            )
        cmd = self.world.commands.get(self.world.guild_id, {}).get(f"1:{name}") if guild else None
        cmd = cmd or self.world.commands.get(None, {}).get(f"1:{name}")
        if cmd is None:
            known = sorted(
                c["name"] for scope in self.world.commands.values() for c in scope.values()
            )
            raise LookupError(
                f"/{name} is not registered with the fake Discord (registered: {known}); "
                "has the bot synced its command tree?"
            )
        if not guild and (
            cmd.get("dm_permission") is False or 1 not in (cmd.get("contexts") or [1])
        ):
            raise ValueError(f"/{name} is not available in DMs")
        options, resolved = self.build_options(cmd, subcommand, values, guild)
        data: Json = {"id": cmd["id"], "name": name, "type": 1}
        if options:
            data["options"] = options
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in cmd:
            data["guild_id"] = cmd["guild_id"]
        it = self.new_interaction(2, user_id, ch, data, name=name)
        self.world.dispatch("INTERACTION_CREATE", lambda intents: it.payload)
        return str(it.id)

    def build_options(
        self, cmd: Json, subcommand: str | None, values: dict[str, Any], guild: bool
    ) -> tuple[list[Json], Json]:
        path: list[Json] = []
        defs: list[Json] = cmd.get("options") or []
        for part in (subcommand or "").split():
            node = next((o for o in defs if o["name"] == part and o["type"] in (1, 2)), None)
            if node is None:
                names = [o["name"] for o in defs if o["type"] in (1, 2)]
                raise ValueError(
                    f"/{cmd['name']} has no subcommand or group {part!r} here (has: {names})"
                )
            path.append(node)
            defs = node.get("options") or []
        if any(o["type"] in (1, 2) for o in defs):
            names = [o["name"] for o in defs if o["type"] in (1, 2)]
            raise ValueError(f"/{cmd['name']} needs a subcommand: one of {names}")
        resolved: Json = {}
        leaf: list[Json] = []
        for key, value in values.items():
            spec = next((o for o in defs if o["name"] == key), None)
            if spec is None:
                raise ValueError(
                    f"/{cmd['name']} has no option {key!r} (has: {[o['name'] for o in defs]})"
                )
            leaf.append(
                {
                    "name": key,
                    "type": spec["type"],
                    "value": self.option_value(spec["type"], value, resolved, guild),
                }
            )
        missing = [o["name"] for o in defs if o.get("required") and o["name"] not in values]
        if missing:
            raise ValueError(f"/{cmd['name']} is missing required options {missing}")
        options = leaf
        for node in reversed(path):
            options = [{"name": node["name"], "type": node["type"], "options": options}]
        return options, resolved

    def option_value(self, kind: int, value: Any, resolved: Json, guild: bool) -> Any:
        if kind in (6, 9) and int(value) in self.world.users:
            uid = int(value)
            resolved.setdefault("users", {})[str(uid)] = self.world.user_json(uid)
            if guild:
                member = {
                    **self.world.member_json(uid, with_user=False),
                    "permissions": str(self.world.perms(uid)),
                }
                resolved.setdefault("members", {})[str(uid)] = member
            return str(uid)
        if kind == 7:
            ch = self.world.channel(int(value))
            resolved.setdefault("channels", {})[str(ch.id)] = {
                "id": str(ch.id),
                "name": ch.name,
                "type": {"text": 0, "voice": 2, "dm": 1}[ch.kind],
                "permissions": str(BOT_PERMS),
                "parent_id": None,
            }
            return str(ch.id)
        if kind in (8, 9):
            role = next(r for r in self.world.guild_json()["roles"] if r["id"] == str(value))
            resolved.setdefault("roles", {})[str(value)] = role
            return str(value)
        return {4: int, 10: float, 5: bool}.get(kind, str)(value)

    def new_interaction(
        self, kind: int, user_id: int, ch: FakeChannel, data: Json, **fields: Any
    ) -> Interaction:
        iid = self.world.ids.next()
        token = secrets.token_urlsafe(64)
        guild = ch.kind != "dm"
        channel = self.world.channel_json(ch)
        payload: Json = {
            "id": str(iid),
            "application_id": str(self.world.app_id),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(ch.id),
            "channel": {**channel, "permissions": str(BOT_PERMS)} if guild else channel,
            "app_permissions": str(BOT_PERMS),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(self.world.guild_id) if guild else "0"},
            "context": 0 if guild else 1,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if guild:
            payload.update(
                guild_id=str(self.world.guild_id),
                guild_locale="en-US",
                guild={"id": str(self.world.guild_id), "locale": "en-US", "features": []},
                member={
                    **self.world.member_json(user_id),
                    "permissions": str(self.world.perms(user_id)),
                },
            )
        else:
            payload["user"] = self.world.user_json(user_id)
        it = Interaction(iid, token, kind, time.monotonic(), user_id, ch.id, payload, **fields)
        self.by_id[iid] = it
        self.by_token[token] = it
        return it

    def click(self, message_id: int, custom_id: str, user_id: int, values: list[str] | None) -> str:
        self.world.user(user_id)
        m = self.world.msgs.get(message_id)
        if m is None or m.deleted:
            raise KeyError(f"no message {message_id}")
        if m.author_id != self.world.bot_id:
            raise ValueError("only the bot's messages carry components")
        found = [c for c in _walk_components(m.components) if c.get("custom_id") == custom_id]
        if not found:
            ids = [c["custom_id"] for c in _walk_components(m.components) if "custom_id" in c]
            raise ValueError(f"message {message_id} has no component {custom_id!r} (has: {ids})")
        if found[0].get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        ctype = int(found[0]["type"])
        data: Json = {"custom_id": custom_id, "component_type": ctype}
        if ctype in (3, 5, 6, 7, 8):
            data["values"] = list(values or [])
        ch = self.world.channels[m.channel_id]
        it = self.new_interaction(3, user_id, ch, data, custom_id=custom_id, clicked_id=m.id)
        it.payload["message"] = self.world.message_json(m, gateway=True)
        self.world.dispatch("INTERACTION_CREATE", lambda intents: it.payload)
        return str(it.id)

    def view(self, iid: int) -> Json:
        it = self.by_id.get(iid)
        if it is None:
            raise KeyError(f"no interaction {iid}")
        original = self.world.msgs.get(it.original_id) if it.original_id else None
        first = it.callbacks[0]["type"] if it.callbacks else None
        return {
            "id": str(it.id),
            "type": it.type,
            "name": it.name,
            "custom_id": it.custom_id,
            "user_id": it.user_id,
            "channel_id": it.channel_id,
            "callbacks": json.loads(json.dumps(it.callbacks)),
            "response_type": first,
            "deferred": first in (5, 6),
            "ephemeral": bool(
                first in (4, 5) and original is not None and original.flags & EPHEMERAL
            ),
            "original": self.world.public(original)
            if original is not None and not original.deleted
            else None,
            "followups": [
                self.world.public(self.world.msgs[f])
                for f in it.followup_ids
                if not self.world.msgs[f].deleted
            ],
        }

    def interaction_message(
        self,
        it: Interaction,
        body: Json,
        files: list[tuple[str, bytes]],
        *,
        loading: bool = False,
        followup: bool = False,
    ) -> Msg:
        ch = self.world.channels[it.channel_id]
        flags = int(body.get("flags") or 0)
        if loading:
            m = Msg(self.world.ids.next(), ch.id, self.world.bot_id, "", time.time())
        else:
            m = self.world.message_from_body(ch, self.world.bot_id, body, files)
        m.flags = (flags & ~LOADING) | (LOADING if loading else 0)
        m.type = 20 if it.type == 2 and not followup else 0
        m.webhook_id = self.world.app_id
        m.visible = not m.flags & EPHEMERAL
        meta: Json = {
            "id": str(it.id),
            "type": it.type,
            "user": self.world.user_json(it.user_id),
            "authorizing_integration_owners": it.payload["authorizing_integration_owners"],
        }
        if it.name:
            meta.update(name=it.name, command_type=1)
        if it.clicked_id:
            meta["interacted_message_id"] = str(it.clicked_id)
        if followup and it.original_id:
            meta["original_response_message_id"] = str(it.original_id)
        m.interaction_metadata = meta
        return m

    async def r_callback(self, req: Req) -> Reply:
        it = self.by_id.get(int(req.params["interaction_id"]))
        if it is None or it.token != req.params["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if it.callbacks:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if time.monotonic() - it.created > self.interaction_deadline_s:
            # Discord's 3 s rule: an interaction not answered in time is gone.
            raise ApiError(404, 10062, "Unknown interaction")
        body = req.body or {}
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        if kind not in (1, 4, 5, 6, 7, 8, 9) or (kind in (6, 7) and it.type != 3):
            raise form_error(
                "type", "INTERACTION_RESPONSE_TYPE_INVALID", f"Invalid response type {kind}"
            )
        message: Msg | None = None
        if kind in (4, 5):
            message = self.interaction_message(it, data, req.files, loading=kind == 5)
            self.world.store(message)
            it.original_id = message.id
        elif kind in (6, 7) and it.clicked_id is not None:
            it.original_id = it.clicked_id
            if kind == 7:
                message = self.world.msgs[it.clicked_id]
                self.world.apply_edit(message, data, req.files)
        it.callbacks.append({"type": kind, "data": data})
        if req.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        inter: Json = {"id": str(it.id), "type": it.type}
        resource: Json = {"type": kind}
        if message is not None:
            inter.update(
                response_message_id=str(message.id),
                response_message_loading=bool(message.flags & LOADING),
                response_message_ephemeral=bool(message.flags & EPHEMERAL),
            )
            resource["message"] = self.world.message_json(message)
        return 200, {"interaction": inter, "resource": resource}

    def hook(self, req: Req) -> Interaction:
        it = self.by_token.get(req.params["token"])
        if (
            it is None
            or int(req.params["webhook_id"]) != self.world.app_id
            or time.monotonic() - it.created > 900
        ):
            raise ApiError(404, 10015, "Unknown Webhook")
        return it

    def hook_message(self, req: Req) -> Msg:
        it = self.hook(req)
        ref = req.params["message_id"]
        mid = it.original_id if ref == "@original" else int(ref)
        if mid is None or (mid != it.original_id and mid not in it.followup_ids):
            raise not_found("Message", 10008)
        m = self.world.msgs[mid]
        if m.deleted:
            raise not_found("Message", 10008)
        return m

    async def r_hook_get(self, req: Req) -> Reply:
        return 200, self.world.message_json(self.hook_message(req))

    async def r_hook_edit(self, req: Req) -> Reply:
        m = self.hook_message(req)
        self.world.apply_edit(m, req.body or {}, req.files)
        return 200, self.world.message_json(m)

    async def r_hook_delete(self, req: Req) -> Reply:
        self.world.delete(self.hook_message(req))
        return 204, None

    async def r_followup(self, req: Req) -> Reply:
        it = self.hook(req)
        if not it.callbacks:
            # Followups need an acknowledged interaction.
            raise ApiError(404, 10015, "Unknown Webhook")
        body = req.body or {}
        original = self.world.msgs.get(it.original_id) if it.original_id else None
        if original is not None and original.flags & LOADING and not original.deleted:
            # Discord's rule: the first followup after a deferral replaces the "thinking" message.
            self.world.apply_edit(original, body, req.files)
            m = original
        else:
            m = self.interaction_message(it, body, req.files, followup=True)
            self.world.store(m)
            it.followup_ids.append(m.id)
        if req.query.get("wait") in ("1", "true", "True"):
            return 200, self.world.message_json(m)
        return 204, None


def _walk_components(components: list[Json]) -> Iterable[Json]:
    for comp in components:
        yield comp
        yield from _walk_components(comp.get("components") or [])
        if isinstance(comp.get("accessory"), dict):
            yield comp["accessory"]
