"""The page's memory panel: search with each hit's score parts, review, edits, uploads, imports.

A tab sends ``{"t": "memory", "op": OP, "ref": "...", ...}`` and gets answers of type
``memory`` with the same ``op`` and ``ref`` (or ``op: "refused"`` with the reason):

* ``search``: ``text`` (empty: the newest memories), ``person``, ``kinds``, ``tags``,
  ``archived``, ``k``; answered with ``hits``, each with its score ``parts``.
* ``why``: ``ids`` (a reply's ``recalled``); the memories that went into that reply's prompt.
* ``review``: suggestions waiting for approval (with the quote and turn they came from),
  contradictions, what aging archived.
* ``add``, ``edit``, ``approve``, ``reject``, ``forget``: durable memory requests naming the
  person (``by``); the memory actor's report comes back as ``op: "changed"``.

Uploads and imports are HTTP (``POST /memory/upload`` and ``/memory/import``, the file as the
body): the browser shows the bytes going up, and the embedding's progress and the report come
over the tab's websocket (``tab`` and ``ref`` in the query). ``GET /memory/export`` downloads
every memory as JSON Lines.

The page's person is who acts. An owner may do everything; anyone else searches, adds and
forgets only memories about themselves (and sees general ones), and is refused the rest with a
reason: approvals, edits, review, uploads, imports and the export are an owner's.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import PurePath
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actors.web.checks import (
    MAX_TAGS,
    Refusal,
    hit_fields,
    json_lines,
    line_parts,
    one_of,
    short_name,
    strings,
    text_of,
    unit,
    visible,
)
from actors.web.hub import Client, Hub
from hexbus import RequestTimeout
from hexbus.codec import Envelope
from schemas import (
    DOCUMENT_SUFFIXES,
    Event,
    MemoryAdd,
    MemoryChanged,
    MemoryDocument,
    MemoryEdit,
    MemoryExport,
    MemoryExported,
    MemoryForget,
    MemoryHit,
    MemoryImportFile,
    MemoryProgress,
    MemoryQuery,
    MemoryResult,
    MemoryReview,
    MemoryReviewed,
)

__all__ = ["MemoryPanel"]

OPS = frozenset({"search", "why", "review", "add", "edit", "approve", "reject", "forget"})
OWNER_OPS = frozenset({"review", "edit", "approve", "reject"})
KINDS = ("fact", "summary", "anchor", "journal", "document", "turn")
TIMEOUT_S = 10.0
EXPORT_TIMEOUT_S = 60.0
PENDING_KEPT = 1000  # requests whose report a tab waits for
MAX_RUNNING = 8  # a tab's memory requests in flight at once


Publish = Callable[..., Awaitable[Envelope]]
Ask = Callable[..., Awaitable[Any]]


class MemoryPanel:
    def __init__(
        self,
        hub: Hub,
        *,
        request: Ask,
        request_blob: Ask,
        publish: Publish,
        new_id: Callable[[], str],
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
        max_blob_bytes: int,
        max_import_bytes: int,
    ) -> None:
        self.hub, self.request, self.publish, self.new_id = hub, request, publish, new_id
        self.request_blob = request_blob
        self.spawn = spawn
        self.running: dict[int, int] = {}  # tab id -> its requests in flight
        self.max_blob_bytes = max_blob_bytes
        self.max_import_bytes = max_import_bytes
        # request event id -> (tab, ref, what it was): where its report and progress go
        self.pending: OrderedDict[str, tuple[Client, str, str]] = OrderedDict()
        # "<tab>:<ref>" -> an import's running totals
        self.imports: dict[str, dict[str, Any]] = {}

    # -- the websocket ---------------------------------------------------------------------

    async def command(self, client: Client, message: dict[str, Any]) -> None:
        """Checked here, answered in the background: a busy memory actor (an upload embedding)
        never holds the tab's chat."""
        op, ref = message.get("op"), str(message.get("ref", ""))[:64]
        client.panels.add("memory")
        if op not in OPS:
            self._send(client, "refused", ref, text=f"unknown memory op {op!r}")
            return
        if op in OWNER_OPS and not client.owner:
            why = f"only an owner may {op} memories (this page's person is not one)"
            self._send(client, "refused", ref, text=why)
            return
        if self.running.get(client.id, 0) >= MAX_RUNNING:
            why = f"{MAX_RUNNING} memory requests of this tab are waiting: try again when they end"
            self._send(client, "refused", ref, text=why)
            return
        self.running[client.id] = self.running.get(client.id, 0) + 1
        self.spawn(self._run(client, ref, op, message), f"memory-{op}-{client.id}")

    async def _run(self, client: Client, ref: str, op: str, message: dict[str, Any]) -> None:
        try:
            await getattr(self, f"_{op}")(client, ref, message)
        except Refusal as refusal:
            self._send(client, "refused", ref, text=str(refusal))
        except RequestTimeout:
            why = "the memory actor did not answer: is it running?"
            self._send(client, "refused", ref, text=why)
        finally:
            left = self.running.get(client.id, 1) - 1
            if left > 0:
                self.running[client.id] = left
            else:
                self.running.pop(client.id, None)

    async def _search(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        text = text_of(m.get("text", ""), "text", allow_empty=True)
        person = self._scope(client, m.get("person", ""))
        query = MemoryQuery(
            text=text,
            person_id=person,
            k=one_of(m.get("k", 20), 1, 200),
            kinds=tuple(k for k in strings(m.get("kinds")) if k in KINDS),
            tags=strings(m.get("tags")),
            include_archived=bool(m.get("archived", False)),
            browse=not text.strip(),
            inspect=True,
        )
        result = await self.request(query, MemoryResult, timeout=TIMEOUT_S)
        if result.error:
            raise Refusal(f"the memory actor could not search: {result.error}")
        hits = [h for h in result.hits if visible(client, h)]
        self._send(client, "hits", ref, hits=[hit_fields(h) for h in hits], query=text)

    async def _why(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        ids = strings(m.get("ids"), 50)
        hits = await self._by_ids(client, ids)
        self._send(client, "why", ref, hits=[hit_fields(h) for h in hits], asked=len(ids))

    async def _review(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        reviewed = await self.request(
            MemoryReview(limit=one_of(m.get("limit", 50), 1, 200)),
            MemoryReviewed,
            timeout=TIMEOUT_S,
        )
        self._send(
            client,
            "review",
            ref,
            pending=[hit_fields(h) for h in reviewed.pending],
            contradictions=msgspec.to_builtins(reviewed.contradictions),
            archived=[hit_fields(h) for h in reviewed.archived],
            archived_total=reviewed.archived_total,
        )

    async def _add(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        kind = m.get("kind", "fact")
        if kind not in ("fact", "anchor"):
            raise Refusal("a memory added by hand is a fact or an anchor")
        event = MemoryAdd(
            text=text_of(m.get("text"), "the memory"),
            kind=kind,
            person_id=self._scope(client, m.get("person", client.person_id)),
            importance=unit(m.get("importance", 0.5)),
            tags=strings(m.get("tags"), MAX_TAGS),
            by=client.person_id,
        )
        await self._change(client, ref, "add", event)

    async def _edit(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        tags = m.get("tags")
        event = MemoryEdit(
            id=text_of(m.get("id"), "the memory's id"),
            text=text_of(m.get("text", ""), "the text", allow_empty=True),
            importance=unit(m["importance"]) if m.get("importance") is not None else -1.0,
            tags=None if tags is None else strings(tags, MAX_TAGS),
            by=client.person_id,
        )
        await self._change(client, ref, "edit", event)

    async def _approve(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        event = MemoryEdit(id=text_of(m.get("id"), "the id"), approve=True, by=client.person_id)
        await self._change(client, ref, "approve", event)

    async def _reject(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        event = MemoryEdit(id=text_of(m.get("id"), "the id"), approve=False, by=client.person_id)
        await self._change(client, ref, "reject", event)

    async def _forget(self, client: Client, ref: str, m: dict[str, Any]) -> None:
        ids = strings(m.get("ids"), 200)
        if not ids:
            raise Refusal("say which memories to forget (ids)")
        if not client.owner:  # only their own: general memories are the owner's to forget
            mine = {
                h.id for h in await self._by_ids(client, ids) if h.person_id == client.person_id
            }
            if set(ids) - mine:
                raise Refusal("you may forget only memories about you; ask an owner for the rest")
        await self._change(client, ref, "forget", MemoryForget(ids=ids, by=client.person_id))

    async def _by_ids(self, client: Client, ids: tuple[str, ...]) -> tuple[MemoryHit, ...]:
        if not ids:
            return ()
        person = "" if client.owner else client.person_id
        query = MemoryQuery(text="", ids=ids, person_id=person, inspect=True)
        result: MemoryResult = await self.request(query, MemoryResult, timeout=TIMEOUT_S)
        if result.error:
            raise Refusal(f"the memory actor could not look them up: {result.error}")
        return tuple(h for h in result.hits if visible(client, h))

    def _scope(self, client: Client, person: Any) -> str:
        """Whose memories a request may touch: anyone's for an owner, only theirs otherwise."""
        asked = person.strip()[:200] if isinstance(person, str) else ""
        if client.owner:
            return asked
        if asked and asked != client.person_id:
            raise Refusal("you may see and change only memories about you")
        return client.person_id

    async def _change(
        self, client: Client, ref: str, what: str, event: Event, blob: bytes | None = None
    ) -> str:
        """Publish a durable request; its report goes to this tab when it comes."""
        event_id = self.new_id()
        self.pending[event_id] = (client, ref, what)
        while len(self.pending) > PENDING_KEPT:
            self.pending.popitem(last=False)
        await self.publish(event, blob=blob, event_id=event_id)
        self._send(client, "accepted", ref, request=event_id, what=what)
        return event_id

    # -- from the bus ----------------------------------------------------------------------

    def changed(self, envelope: Envelope, event: MemoryChanged) -> None:
        waiting = self.pending.pop(envelope.causation, None)
        report = {
            "action": event.action,
            "ids": list(event.ids),
            "detail": event.detail,
            "counts": event.counts,
        }
        if waiting is not None:
            client, ref, what = waiting
            totals = self.imports.get(f"{client.id}:{ref}") if what == "import" else None
            if totals is not None:
                self._imported(client, ref, event, totals)
            else:
                self._send(client, "changed", ref, what=what, **report)
        if event.action in ("suggested", "superseded"):  # new things to review
            for tab in [c for c in self.hub.clients if c.owner and "memory" in c.panels]:
                self._send(tab, "review-changed", "", **report)

    def progress(self, event: MemoryProgress) -> None:
        waiting = self.pending.get(event.request)
        if waiting is None:
            return
        client, ref, what = waiting
        totals = self.imports.get(f"{client.id}:{ref}") if what == "import" else None
        if totals is None:
            self._send(client, "progress", ref, done=event.done, total=event.total, unit=event.unit)
            return
        totals["parts"][event.request] = (event.done, event.total)  # a file in parts: summed
        done = sum(d for d, _ in totals["parts"].values())
        total = sum(t for _, t in totals["parts"].values())
        self._send(client, "progress", ref, done=done, total=total, unit="turns")

    def _imported(
        self, client: Client, ref: str, event: MemoryChanged, totals: dict[str, Any]
    ) -> None:
        totals["reports"] += 1
        if event.action == "refused":  # a part with no usable line: its reason is a problem too
            totals["refused"].append(event.detail)
            totals["problems"].append(event.detail)
        else:
            for key, value in event.counts.items():
                totals["counts"][key] = totals["counts"].get(key, 0) + value
            totals["problems"] += [p for p in event.detail.splitlines() if p]
        if totals["reports"] < totals["batches"]:
            return
        self.imports.pop(f"{client.id}:{ref}", None)
        counts = totals["counts"]
        if not counts.get("turns") and not counts.get("already_known") and totals["refused"]:
            self._send(client, "refused", ref, text=f"nothing imported: {totals['refused'][0]}")
            return
        self._send(
            client,
            "imported",
            ref,
            counts=counts,
            problems=totals["problems"][:100],
            bad_lines=counts.get("bad_lines", 0),
            name=totals["name"],
        )

    def _send(self, client: Client, op: str, ref: str, **fields: Any) -> None:
        self.hub.send(client, {"t": "memory", "op": op, "ref": ref, **fields})

    # -- HTTP: uploads, imports, the export ------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/memory/upload", self.upload, methods=["POST"]),
            Route("/memory/import", self.import_history, methods=["POST"]),
            Route("/memory/export", self.export, methods=["GET"]),
        ]

    def _tab(self, request: Request) -> tuple[Client, str]:
        """The tab an HTTP request is from (its id in the query), which must be an owner's."""
        tab, ref = request.query_params.get("tab", ""), request.query_params.get("ref", "")[:64]
        client = next((c for c in self.hub.clients if str(c.id) == tab), None)
        if client is None:
            raise Refusal("this page is not connected: reload it, then upload again")
        if not client.owner:
            raise Refusal("only an owner may upload or import into memory")
        return client, ref

    async def _body(self, request: Request, name: str, limit: int = 0, setting: str = "") -> bytes:
        """The request's body, refused as soon as it is longer than ``limit`` (by default what
        the bus carries in one event)."""
        limit = limit or self.max_blob_bytes
        declared = request.headers.get("content-length", "")
        too_big = Refusal(
            f"{name} is over {limit / 2**20:.0f} MiB, the most the page takes "
            f"({setting} in [actors.web.config])"
            if setting
            else f"{name} is over {limit / 2**20:.0f} MiB, the most the bus carries per event "
            "(bus.max_blob_mb in supervisor.toml)"
        )
        if declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def upload(self, request: Request) -> Response:
        name = short_name(PurePath(request.query_params.get("name", "")).name)
        try:
            client, ref = self._tab(request)
            suffix = PurePath(name).suffix.lower()
            if suffix not in DOCUMENT_SUFFIXES:
                raise Refusal(
                    f"{name or 'a file without a name'} cannot be stored; supported: "
                    f"{', '.join(DOCUMENT_SUFFIXES)}; save it as one of these"
                )
            data = await self._body(request, name)
            if not data:
                raise Refusal(f"{name} is empty")
        except Refusal as refusal:
            return JSONResponse({"error": str(refusal)}, status_code=400)
        except ClientDisconnect:
            return Response(status_code=400)
        event = MemoryDocument(
            name=name,
            person_id=request.query_params.get("person", "")[:200],
            tags=strings(request.query_params.get("tags", "").split(","), MAX_TAGS),
            sha256=hashlib.sha256(data).hexdigest(),
            by=client.person_id,
        )
        event_id = await self._change(client, ref, "upload", event, blob=data)
        return JSONResponse({"request": event_id, "bytes": len(data)}, status_code=202)

    async def import_history(self, request: Request) -> Response:
        """A history file, sent to memory in parts cut at line ends (each within what the bus
        carries), parsed and imported there; bad lines come back by number."""
        name = short_name(PurePath(request.query_params.get("name", "history.jsonl")).name)
        # Room in each part's event for its envelope: the blob limit is for the whole frame.
        part_limit = max(1024, self.max_blob_bytes - (64 << 10))
        try:
            client, ref = self._tab(request)
            data = await self._body(request, name, self.max_import_bytes, "max_import_mb")
            if not data or data.isspace():
                raise Refusal(f"{name} is empty")
            in_parts = json_lines(data)
            if not in_parts and len(data) > part_limit:
                raise Refusal(
                    f"{name} is {len(data) / 2**20:.1f} MiB: a chat app's export goes to memory "
                    f"whole, and the most that can is {part_limit / 2**20:.1f} MiB; import it "
                    f"with `hexbus memory import {name}`, which has no such limit"
                )
            parts = list(line_parts(data, part_limit)) if in_parts else [(1, data)]
            for first_line, part in parts:
                if len(part) > part_limit:  # one line alone: no event carries it
                    raise Refusal(
                        f"{name}: line {first_line} is {len(part) / 2**20:.1f} MiB, more than "
                        f"one turn may be ({part_limit / 2**20:.1f} MiB): split or shorten it"
                    )
        except Refusal as refusal:
            return JSONResponse({"error": str(refusal)}, status_code=400)
        except ClientDisconnect:
            return Response(status_code=400)
        self.imports[f"{client.id}:{ref}"] = {
            "counts": {},
            "reports": 0,
            "batches": len(parts),
            "parts": {},
            "problems": [],
            "refused": [],
            "name": name,
        }
        for first_line, part in parts:
            event = MemoryImportFile(name=name, first_line=first_line, by=client.person_id)
            await self._change(client, ref, "import", event, blob=part)
        return JSONResponse({"parts": len(parts), "bytes": len(data)}, status_code=202)

    async def export(self, request: Request) -> Response:
        try:
            self._tab(request)
            exported, blob = await self.request_blob(
                MemoryExport(), MemoryExported, timeout=EXPORT_TIMEOUT_S
            )
        except Refusal as refusal:
            return JSONResponse({"error": str(refusal)}, status_code=403)
        except (TimeoutError, RequestTimeout):
            return JSONResponse({"error": "the memory actor did not answer"}, status_code=504)
        if exported.error:
            return JSONResponse({"error": exported.error}, status_code=500)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Response(
            blob or b"",
            media_type="application/x-ndjson",
            headers={
                "content-disposition": f'attachment; filename="hex-memories-{stamp}.jsonl"',
                "x-hex-count": str(exported.count),
            },
        )
