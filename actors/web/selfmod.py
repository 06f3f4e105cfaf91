"""The page's approval panel for her proposals to change herself (issue 17: Discord, the page
and ``hexbus selfmod`` are the three places an owner decides).

A tab sends ``{"t": "selfmod", "op": OP, "ref": "...", ...}``:

* ``list``: her proposals, newest first (``selfmod.ask``), answered with ``list``.
* ``show`` (``id``): one, with its diff, reason, flags and the audit before and after.
* ``request`` (``text``, ``key``): an owner's wish in plain words ("be less sarcastic";
  ``selfmod.request``), which the brain drafts into a proposal; the selfmod actor's answer
  ("drafting a change to ...", or why not) comes back as ``changed``.
* ``approve``, ``reject`` (``id``, ``note``), ``rollback`` (``id``, 0 = the latest): an
  owner's decision (``selfmod.decide``, durable, naming the person). The selfmod actor checks it
  again (owner, level switches, ``selfmod.apply``, expiry, stale files) and its answer
  (``selfmod.changed``) goes to the tab that asked as ``changed``.

Every ``selfmod.changed`` also reaches each tab showing the panel (``update``): a proposal
ready after its sandbox run, an outcome decided elsewhere (Discord, a terminal), a rollback in
its trial. Decisions are an owner's: a guest's are refused here and, were one sent, refused
again by the selfmod actor (the page's person is not an owner).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from actors.web.hub import Client, Hub
from hexbus import RequestTimeout
from hexbus.codec import Envelope
from schemas import SelfmodAsk, SelfmodChanged, SelfmodDecide, SelfmodReport, SelfmodRequest

__all__ = ["SelfmodPanel"]

OPS = frozenset({"list", "show", "approve", "reject", "rollback", "request"})
DECISIONS = frozenset({"approve", "reject", "rollback"})
OWNERS_ONLY = DECISIONS | {"request"}
TIMEOUT_S = 10.0
PENDING_KEPT = 100


class SelfmodPanel:
    def __init__(
        self,
        hub: Hub,
        *,
        request: Callable[..., Awaitable[Any]],
        publish: Callable[..., Awaitable[Envelope]],
        new_id: Callable[[], str],
    ) -> None:
        self.hub, self.request, self.publish, self.new_id = hub, request, publish, new_id
        # decision event id -> (tab, ref): where the selfmod actor's answer goes
        self.pending: OrderedDict[str, tuple[Client, str]] = OrderedDict()

    async def command(self, client: Client, message: dict[str, Any]) -> None:
        op, ref = message.get("op"), str(message.get("ref", ""))[:64]
        client.panels.add("selfmod")
        if op not in OPS:
            self._send(client, "refused", ref, text=f"unknown selfmod op {op!r}")
            return
        number = message.get("id", 0)
        if not isinstance(number, int) or not 0 <= number < 1 << 31:
            self._send(client, "refused", ref, text="a proposal is named by its number")
            return
        if op in OWNERS_ONLY and not client.owner:
            why = f"only an owner may {op} her changes (this page's person is not one)"
            self._send(client, "refused", ref, text=why)
            return
        try:
            if op == "request":
                await self._request(client, ref, message.get("text"), message.get("key", ""))
            elif op in DECISIONS:
                await self._decide(client, ref, op, number, message.get("note", ""))
            else:
                await self._ask(client, ref, op, number)
        except RequestTimeout:
            why = "selfmod did not answer: is [actors.selfmod] enabled and running?"
            self._send(client, "refused", ref, text=why)

    async def _ask(self, client: Client, ref: str, op: str, number: int) -> None:
        if op == "show" and number < 1:
            self._send(client, "refused", ref, text="say which proposal to show")
            return
        ask = SelfmodAsk(what="show", id=number) if op == "show" else SelfmodAsk(what="list")
        report: SelfmodReport = await self.request(ask, SelfmodReport, timeout=TIMEOUT_S)
        if report.error:
            self._send(client, "refused", ref, text=report.error)
            return
        self._send(client, op, ref, proposals=msgspec.to_builtins(report.proposals))

    async def _decide(self, client: Client, ref: str, op: str, number: int, note: Any) -> None:
        if op != "rollback" and number < 1:
            self._send(client, "refused", ref, text=f"say which proposal to {op}")
            return
        event = SelfmodDecide(
            action=op,  # type: ignore[arg-type]
            id=number,
            by=client.person_id,
            owner=client.owner,
            note=note[:500] if isinstance(note, str) else "",
        )
        await self._publish(client, ref, event, number, op)

    async def _request(self, client: Client, ref: str, text: Any, key: Any) -> None:
        """An owner's wish in plain words ("be less sarcastic"): the brain drafts the proposal."""
        if not isinstance(text, str) or not 0 < len(text.strip()) <= 500:
            self._send(client, "refused", ref, text="say what to change, in at most 500 characters")
            return
        if not isinstance(key, str) or len(key) > 80:
            self._send(client, "refused", ref, text="a persona setting is a short dotted name")
            return
        event = SelfmodRequest(
            text=text.strip(),
            by=client.person_id,
            owner=client.owner,
            key=key.strip(),
            conversation="web",
        )
        await self._publish(client, ref, event, 0, "request")

    async def _publish(
        self, client: Client, ref: str, event: SelfmodDecide | SelfmodRequest, number: int, op: str
    ) -> None:
        """Publish ``event`` with the tab waiting for its answer (``changed``), and say it went."""
        event_id = self.new_id()
        self.pending[event_id] = (client, ref)
        while len(self.pending) > PENDING_KEPT:
            self.pending.popitem(last=False)
        await self.publish(event, event_id=event_id)
        self._send(client, "sent", ref, id=number, action=op)

    # -- from the bus ----------------------------------------------------------------------

    def changed(self, envelope: Envelope, event: SelfmodChanged) -> None:
        waiting = self.pending.pop(envelope.causation, None)
        report = msgspec.to_builtins(event)
        if waiting is not None:
            self._send(waiting[0], "changed", waiting[1], **report)
        for tab in [c for c in self.hub.clients if "selfmod" in c.panels]:
            if waiting is None or tab is not waiting[0]:
                self._send(tab, "update", "", **report)

    def _send(self, client: Client, op: str, ref: str, **fields: Any) -> None:
        self.hub.send(client, {"t": "selfmod", "op": op, "ref": ref, **fields})
