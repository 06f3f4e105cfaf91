"""The page's runtime panel: the actors' table, live, and the owner's restart and kill switch.

A tab sends ``{"t": "runtime"}`` to get the table now and whenever the supervisor's is read (as
``{"t": "actors", "rows": [...]}``), ``{"t": "runtime", "log": true}`` to get the supervisor's
log events too (the last ones kept, then each new one, as ``{"t": "log", "lines": [...]}``), and ``{"t": "control", "action": "restart", "actor": NAME}``
or ``{"t": "control", "action": "killswitch"}``. Control is for owners only; every request,
refused or done, is journaled as a durable ``sys.audit`` event naming the person, so the
journal says who restarted what.

The capabilities, too: ``{"t": "capabilities"}`` gets the switches as this tab's person has them
(and, for an owner, as everyone has them) as ``{"t": "capabilities", ...}``, again whenever one
changes; ``{"t": "capability", "name": N, "enabled": B, "everyone": B}`` switches one. The
supervisor applies its rules: anyone may switch off what concerns them, and take that back;
only an owner switches for everyone. The kill switch from the page keeps the broker and the page
itself (as Discord's keeps its responder): the owner sees what stopped and can restart it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from actors.web.hub import Client, Hub
from actors.web.metrics import Gatherer
from hexbus.codec import Envelope
from hexbus.control import ControlReply, ControlRequest
from schemas import CAPABILITIES, ControlTaken, Event

__all__ = ["RuntimePanel"]

NAMES = frozenset(c.name for c in CAPABILITIES)
LOG_KEPT = 300  # the supervisor's log events kept for a tab that opens the panel


class RuntimePanel:
    def __init__(
        self,
        hub: Hub,
        gatherer: Gatherer,
        publish: Callable[[Event], Awaitable[Envelope]],
        control: Callable[[ControlRequest], Awaitable[ControlReply]],
        *,
        me: str,
    ) -> None:
        self.hub, self.gatherer, self.publish, self.control = hub, gatherer, publish, control
        self.me = me  # this actor's name: kept running by the page's kill switch
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_KEPT)
        self.log_seq = 0  # the supervisor's last log event read

    def wants_log(self) -> bool:
        return any("log" in c.panels for c in list(self.hub.clients))

    async def read_log(self) -> None:
        """The supervisor's new log events, to the tabs that show them."""
        reply = await self.control(ControlRequest(cmd="log", after=self.log_seq))
        if not reply.ok:
            return
        lines, seq = reply.data.get("lines", []), int(reply.data.get("seq", 0))
        if seq < self.log_seq:  # a new supervisor: its numbers start again
            self.log_seq = 0
            reply = await self.control(ControlRequest(cmd="log", after=0))
            lines, seq = reply.data.get("lines", []), int(reply.data.get("seq", 0))
        self.log_seq = seq
        self.log.extend(lines)
        if lines:
            message = {"t": "log", "lines": lines}
            for client in [c for c in list(self.hub.clients) if "log" in c.panels]:
                self.hub.send(client, message)

    def rows(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        letters = self.gatherer.dead_letters()
        rows = []
        for name in sorted(set(self.gatherer.status) | set(self.gatherer.beats)):
            status = self.gatherer.status.get(name, {})
            at, beat = self.gatherer.beats.get(name, (None, None))
            if beat is not None and status and beat.pid != status.get("pid"):
                at, beat = None, None  # the last words of a process that is gone
            rows.append(
                {
                    "actor": name,
                    "state": status.get("state", "?"),
                    "pid": status.get("pid") or (beat.pid if beat else 0),
                    "uptime_s": status.get("uptime_s", 0.0),
                    "restarts": status.get("restarts", 0),
                    "rss_bytes": beat.rss_bytes if beat else status.get("rss_bytes", 0),
                    "cpu_s": beat.cpu_seconds if beat else 0.0,
                    "heartbeat_s": round(now - at, 1) if at is not None else None,
                    "events_in": beat.events_in if beat else status.get("events_in", 0),
                    "events_out": beat.events_out if beat else status.get("events_out", 0),
                    "dropped": beat.dropped if beat else status.get("dropped", 0),
                    "dead_letters": letters.get(name, 0),
                    "gpu_bytes": status.get("gpu_bytes", 0),
                    "detail": status.get("detail", "") or (beat.detail if beat else ""),
                    "reason": status.get("reason", ""),
                }
            )
        return rows

    def tick(self) -> None:
        """Send the table to every tab showing the panel."""
        watching = [c for c in list(self.hub.clients) if "runtime" in c.panels]
        if watching:
            table = {"t": "actors", "rows": self.rows()}
            for client in watching:
                self.hub.send(client, table)

    async def switches(self, client: Client) -> None:
        """The capabilities as this tab's person has them (and as everyone has, for an owner)."""
        mine = await self.control(ControlRequest(cmd="capability", person=client.person_id))
        everyone = await self.control(ControlRequest(cmd="capability")) if client.owner else None
        if not mine.ok:
            self.hub.send(client, {"t": "error", "text": mine.error})
            return
        rows = mine.data.get("capabilities", [])
        if everyone is not None and everyone.ok:
            all_on = {r["name"]: r["enabled"] for r in everyone.data.get("capabilities", [])}
            rows = [{**r, "everyone": all_on.get(r["name"])} for r in rows]
        self.hub.send(client, {"t": "capabilities", "rows": rows, "owner": client.owner})

    async def switches_changed(self) -> None:
        """A switch changed (here or anywhere): every tab showing them gets them again."""
        for client in [c for c in list(self.hub.clients) if "capabilities" in c.panels]:
            await self.switches(client)

    async def switch(self, client: Client, message: dict[str, Any]) -> None:
        name, enabled, everyone = (
            message.get("name"),
            message.get("enabled"),
            message.get("everyone"),
        )
        if name not in NAMES or not isinstance(enabled, bool) or not isinstance(everyone, bool):
            why = "a switch is a capability's name, enabled and everyone (booleans)"
            self.hub.send(client, {"t": "error", "text": why})
            self.hub.send(client, {"t": "controlled", "ok": False, "text": why, "switch": True})
            return
        target = name if everyone else f"{name} for {client.person_id}"
        action = "capability.enable" if enabled else "capability.disable"
        if everyone and not client.owner:
            why = "only an owner may switch a capability for everyone"
            await self._record(client, action, target, ok=False, message=why)
            self.hub.send(client, {"t": "controlled", "ok": False, "text": why, "switch": name})
            await self.switches(client)
            return
        reply = await self.control(
            ControlRequest(
                cmd="capability",
                capability=name,
                enabled=enabled,
                person="" if everyone else client.person_id,
                by=client.person_id,
                via=self.me,
                owner=client.owner,
            )
        )
        said = reply.message or reply.error
        await self._record(client, action, target, ok=reply.ok, message=said)
        self.hub.send(client, {"t": "controlled", "ok": reply.ok, "text": said, "switch": name})
        await self.switches(client)

    async def command(self, client: Client, message: dict[str, Any]) -> None:
        if message.get("t") == "capabilities":
            client.panels.add("capabilities")
            await self.switches(client)
            return
        if message.get("t") == "capability":
            await self.switch(client, message)
            return
        if message.get("t") == "runtime":
            client.panels.add("runtime")
            self.hub.send(client, {"t": "actors", "rows": self.rows()})
            if message.get("log") and "log" not in client.panels:
                client.panels.add("log")
                self.hub.send(client, {"t": "log", "lines": list(self.log)})
            return
        action, target = message.get("action"), message.get("actor", "")
        if action not in ("restart", "killswitch") or not isinstance(target, str):
            self.hub.send(client, {"t": "error", "text": "control is restart ACTOR or killswitch"})
            return
        if action == "restart" and target not in self.gatherer.status:
            self.hub.send(client, {"t": "error", "text": f"no actor named {target!r}"})
            return
        if not client.owner:
            why = f"only an owner may {action} (this page's person is not one: owner = false)"
            await self._record(client, action, target, ok=False, message=why)
            self.hub.send(client, {"t": "controlled", "ok": False, "text": why})
            return
        if action == "restart":
            request = ControlRequest(cmd="restart", name=target)
        else:
            request = ControlRequest(
                cmd="killswitch", name=f"the page, by {client.person_id}", keep=(self.me,)
            )
            target = self.me
        reply = await self.control(request)
        said = reply.message or reply.error
        await self._record(client, action, target, ok=reply.ok, message=said)
        self.hub.send(client, {"t": "controlled", "ok": reply.ok, "text": said})
        self.tick()

    async def _record(
        self, client: Client, action: Any, target: str, *, ok: bool, message: str
    ) -> None:
        await self.publish(
            ControlTaken(
                action=action,
                target=target,
                by=client.person_id,
                via=self.me,
                ok=ok,
                message=message[:500],
            )
        )
