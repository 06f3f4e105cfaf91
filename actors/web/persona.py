"""The page's persona panel: the document and its versions, diffs, an owner's edits and
rollbacks, and the consistency audit with its drift against the run before.

A tab sends ``{"t": "persona", "op": OP, "ref": "...", ...}``:

* ``get`` (``version``, 0 = the active one): answered with ``state`` (text, versions, the path,
  the latest audit's summary).
* ``diff`` (``a``, ``b``): a unified diff between two versions.
* ``save`` (``text``, ``note``), ``rollback`` (``version``): durable requests to the brain, which
  checks and records them; the answer is ``changed`` with the new version, or the error and the
  document's line it is about.
* ``audit`` (``limit``, 0 = every scenario): the brain runs it between replies; progress goes to
  every tab showing the panel, the end (summary, drift) to the tab that asked.

Edits, rollbacks and audits are an owner's; each request, done or refused, is journaled as a
``sys.audit`` record naming the person.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec

from actors.web.hub import Client, Hub
from hexbus import RequestTimeout
from hexbus.codec import Envelope
from schemas import (
    ControlTaken,
    PersonaAudit,
    PersonaAudited,
    PersonaAuditProgress,
    PersonaChanged,
    PersonaEdit,
    PersonaGet,
    PersonaRollback,
    PersonaState,
)

__all__ = ["PersonaPanel"]

OPS = frozenset({"get", "diff", "save", "rollback", "audit"})
OWNER_OPS = frozenset({"save", "rollback", "audit"})
TIMEOUT_S = 10.0
AUDIT_TIMEOUT_S = 4 * 3600.0  # a full audit on a slow backend: hundreds of replies
STALL_S = 300.0  # an audit with no progress this long has stopped (one reply takes far less)
MAX_TEXT = 256 << 10
PENDING_KEPT = 100


class PersonaPanel:
    def __init__(
        self,
        hub: Hub,
        *,
        request: Callable[..., Awaitable[Any]],
        publish: Callable[..., Awaitable[Envelope]],
        new_id: Callable[[], str],
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
        me: str,
    ) -> None:
        self.hub, self.request, self.publish, self.new_id = hub, request, publish, new_id
        self.spawn, self.me = spawn, me
        # request event id -> (tab, ref, op): where the brain's report goes
        self.pending: OrderedDict[str, tuple[Client, str, str]] = OrderedDict()
        self.deadlines: set[asyncio.Timeout] = set()  # audits waiting: each moved on by progress

    async def command(self, client: Client, message: dict[str, Any]) -> None:
        op, ref = message.get("op"), str(message.get("ref", ""))[:64]
        client.panels.add("persona")
        if op not in OPS:
            self._send(client, "refused", ref, text=f"unknown persona op {op!r}")
            return
        if op in OWNER_OPS and not client.owner:
            why = f"only an owner may {op} the persona (this page's person is not one)"
            await self._record(client, op, ok=False, message=why)
            self._send(client, "refused", ref, text=why)
            return
        try:
            await getattr(self, f"_{op}")(client, ref, message)
        except RequestTimeout:
            self._send(client, "refused", ref, text="the brain did not answer: is it running?")

    async def _state(self, version: Any) -> PersonaState:
        wanted = version if isinstance(version, int) and version >= 0 else 0
        state: PersonaState = await self.request(
            PersonaGet(version=wanted), PersonaState, timeout=TIMEOUT_S
        )
        return state

    async def _get(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        state = await self._state(m.get("version", 0))
        fields = msgspec.to_builtins(state)
        fields["last_audit"] = json.loads(state.last_audit) if state.last_audit else {}
        self._send(client, "state", ref, **fields)

    async def _diff(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        a, b = await self._state(m.get("a", 0)), await self._state(m.get("b", 0))
        if a.error or b.error:
            self._send(client, "refused", ref, text=a.error or b.error)
            return
        lines = difflib.unified_diff(
            a.text.splitlines(),
            b.text.splitlines(),
            f"version {a.version}",
            f"version {b.version}",
            lineterm="",
        )
        self._send(client, "diff", ref, a=a.version, b=b.version, lines=list(lines))

    async def _save(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        text, note = m.get("text"), m.get("note", "")
        if not isinstance(text, str) or not text.strip():
            self._send(client, "refused", ref, text="the persona document is empty")
            return
        if len(text) > MAX_TEXT:
            self._send(client, "refused", ref, text=f"the document is over {MAX_TEXT >> 10} KiB")
            return
        note = note[:200] if isinstance(note, str) else ""
        await self._change(
            client, ref, "save", PersonaEdit(text=text, note=note, by=client.person_id)
        )

    async def _rollback(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        version = m.get("version")
        if not isinstance(version, int) or not 1 <= version < 1 << 31:
            self._send(client, "refused", ref, text="say which version to roll back to")
            return
        await self._change(
            client, ref, "rollback", PersonaRollback(version=version, by=client.person_id)
        )

    async def _audit(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        limit = m.get("limit", 0)
        limit = limit if isinstance(limit, int) and 0 <= limit < 1 << 31 else 0
        await self._record(client, "audit", ok=True, message=f"limit {limit or 'all'}")
        self._send(client, "auditing", ref, limit=limit)
        self.spawn(self._run_audit(client, ref, limit), f"persona-audit-{client.id}")

    async def _run_audit(self, client: Client, ref: str, limit: int) -> None:
        """Wait for the brain's answer; an audit that makes no progress for STALL_S (the brain
        killed mid-audit: its answer will never come) is reported as stopped."""
        try:
            async with asyncio.timeout(STALL_S) as deadline:
                self.deadlines.add(deadline)  # each progress event moves it on
                done: PersonaAudited = await self.request(
                    PersonaAudit(limit=limit, by=client.person_id),
                    PersonaAudited,
                    timeout=AUDIT_TIMEOUT_S,
                )
        except (TimeoutError, RequestTimeout):
            why = f"the audit stopped: no progress for {STALL_S:.0f}s (did the brain restart?)"
            self._send(client, "refused", ref, text=why)
            return
        finally:
            self.deadlines.discard(deadline)
        fields = msgspec.to_builtins(done)
        for key in ("summary", "drift"):
            fields[key] = json.loads(fields[key]) if fields[key] else {}
        self._send(client, "audited", ref, **fields)

    async def _change(self, client: Client, ref: str, op: str, event: Any) -> None:
        """Send an edit or rollback; the brain's report answers the tab and is journaled."""
        event_id = self.new_id()
        self.pending[event_id] = (client, ref, op)
        while len(self.pending) > PENDING_KEPT:
            self.pending.popitem(last=False)
        await self.publish(event, event_id=event_id)

    async def _record(self, client: Client, op: str, *, ok: bool, message: str) -> None:
        await self.publish(
            ControlTaken(
                action=f"persona.{'edit' if op == 'save' else op}",  # type: ignore[arg-type]
                target="persona",
                by=client.person_id,
                via=self.me,
                ok=ok,
                message=message[:500],
            )
        )

    # -- from the bus ----------------------------------------------------------------------

    async def changed(self, envelope: Envelope, event: PersonaChanged) -> None:
        waiting = self.pending.pop(envelope.causation, None)
        report = msgspec.to_builtins(event)
        if waiting is not None:
            client, ref, op = waiting
            self._send(client, "changed", ref, **report)
            # Journaled as it went: a refused edit is recorded as refused, with the reason.
            await self._record(
                client, op, ok=not event.error, message=event.error or event.note or op
            )
        for tab in [c for c in self.hub.clients if "persona" in c.panels]:
            if waiting is None or tab is not waiting[0]:
                self._send(tab, "version", "", **report)  # another tab, or persona.toml edited

    def progress(self, event: PersonaAuditProgress) -> None:
        for deadline in self.deadlines:
            deadline.reschedule(asyncio.get_running_loop().time() + STALL_S)
        for tab in [c for c in self.hub.clients if "persona" in c.panels]:
            self._send(tab, "audit-progress", "", done=event.done, total=event.total)

    def _send(self, client: Client, op: str, ref: str, **fields: Any) -> None:
        self.hub.send(client, {"t": "persona", "op": op, "ref": ref, **fields})
