"""The memory actor: conversation turns, memories and profiles in DuckDB, found by meaning and
by words.

A thin dispatcher: each handler turns its event into one call on a plain class
(:class:`~actors.memory.ingest.Ingest`, :class:`~actors.memory.edits.Edits`,
:class:`~actors.memory.curation.Curation`, :class:`~actors.memory.search.Search`,
:func:`~actors.memory.export.export_lines`), run off the event loop, and publishes what
people are told. Every durable event's effects are committed in one DuckDB transaction
together with its journal offset, and :meth:`MemoryActor.resume_offset` hands that offset
to the runtime, which resumes after it: a SIGKILL at any point neither loses nor doubles
anything. A handler the runtime retries simply calls again: a rolled-back transaction is
redone, and a committed one finds its rows by their derived ids. The vector and keyword indexes are derived from DuckDB: updated after each
commit and rebuilt from it when missing, corrupt or behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, ParamSpec, TypeVar

import structlog

from actors.memory.bank import MemoryBank, Refused
from actors.memory.config import MemoryConfig
from actors.memory.curation import Curation
from actors.memory.edits import Edits
from actors.memory.embed import PACKAGED_MODEL, embedding_model
from actors.memory.export import export_lines
from actors.memory.ingest import Ingest
from actors.memory.reindex import Reindex
from actors.memory.search import Search
from actors.memory.store import Memory, StoreError
from hexbus import Actor, ActorUnusable, NoState, RequestTimeout, on
from hexbus.codec import Envelope
from schemas import (
    BrainTask,
    BrainTaskResult,
    ChatMessage,
    MemoryAdd,
    MemoryChanged,
    MemoryCorrect,
    MemoryDocument,
    MemoryEdit,
    MemoryExport,
    MemoryExported,
    MemoryForget,
    MemoryHistory,
    MemoryHistoryResult,
    MemoryImport,
    MemoryImportFile,
    MemoryProgress,
    MemoryQuery,
    MemoryResult,
    MemoryReview,
    Reply,
    ReplyMeta,
)
from schemas.memory import MemoryAction

__all__ = ["MemoryActor", "MemoryConfig"]

log = structlog.get_logger("actors.memory")

P = ParamSpec("P")
T = TypeVar("T")


class MemoryActor(Actor[MemoryConfig, NoState]):
    """Long-term memory. Its state lives in DuckDB (with the applied offset), not in a snapshot.

    Applies chat turns, the brain's notes and people's memory requests once each, answers
    queries, and in the background ages memories, asks the brain to judge contradictions
    and summarise old turns, and follows people's edits of the diary folder.
    """

    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.message",
        "chat.reply",
        "chat.meta",
        "memory",
        "capability.changed",  # "remember" (the base class applies the switches)
    )
    config_type = MemoryConfig

    async def setup(self) -> None:
        path = self._path(self.config.path, "memory.duckdb")
        embedder = await self.load_model(embedding_model(self.config.embedder))
        try:
            self.bank = await self.offload(
                MemoryBank.open,
                path,
                embedder,
                self._path(self.config.diary_dir, "journals"),
                duplicate_similarity=self.config.duplicate_similarity,
            )
        except StoreError as exc:
            raise ActorUnusable(str(exc)) from None
        self.store = self.bank.store
        self.ingest = Ingest(self.bank, self.config)
        self.edits = Edits(self.bank, self.config)
        self.curation = Curation(self.bank, self.config)
        self.search = Search(self.bank, self.config)
        model = self.config.embedder or PACKAGED_MODEL
        self.reindex = await self.offload(Reindex, self.bank, f"{model}:{embedder.dim}")
        self.wake = asyncio.Event()  # new turns or facts: the hygiene task looks at once
        self.brain_down_until = 0.0
        log.info(
            "memory.ready",
            path=str(path),
            memories=len(self.bank.indexes.keywords),
            applied_offset=self.store.applied_offset,
        )

    def _path(self, configured: str, default: str) -> Path:
        """A configured path (relative to supervisor.toml), or ``default`` in the data folder."""
        if not configured:
            return self.data_dir / default
        path = Path(configured).expanduser()
        return path if path.is_absolute() else self.config_dir / path

    def resume_offset(self) -> int:
        return self.store.applied_offset

    async def on_journal_rewind(self, after: int) -> None:
        await self.offload(self.store.rewind_offset, after)

    async def on_live(self) -> None:
        # After replay: what the replay re-wrote is in place before the folder is compared.
        if self.config.aging_interval_s > 0:
            self.spawn(self._age(), name="aging")
        if self.config.diary_scan_s > 0:
            self.spawn(self._watch_diaries(), name="diaries")
        self.spawn(self._hygiene(), name="hygiene")
        self.spawn(self._reindex(), name="reindex")

    async def teardown(self) -> None:
        await self.offload(self.bank.close)

    # -- durable events: each applied in one transaction with its offset ------------------

    def _event(self) -> tuple[Envelope, int | None]:
        envelope = self.envelope
        if envelope is None:
            raise RuntimeError("memory handlers run for an event")
        return envelope, envelope.offset or None

    async def _apply(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        """Run a blocking request off the loop; a refusal is reported and gives None."""
        try:
            return await self.offload(fn, *args, **kwargs)
        except Refused as refused:
            await self.changed("refused", refused.ids, refused.detail)
            return None

    async def changed(
        self,
        action: MemoryAction,
        ids: tuple[str, ...] = (),
        detail: str = "",
        counts: dict[str, int] | None = None,
    ) -> None:
        """Report a request's outcome; its causation is the request, which is how callers find it."""
        envelope = self.envelope
        await self.publish(
            MemoryChanged(action=action, ids=ids, detail=detail, counts=counts or {}),
            causation=envelope.id if envelope else "",
        )

    @on(ChatMessage)
    async def on_message(self, event: ChatMessage) -> None:
        envelope, offset = self._event()
        await self.offload(
            self.ingest.message,
            event,
            event_id=envelope.id,
            at=envelope.wall,
            offset=offset,
            remember=self.capabilities.allowed("remember", event.person_id),
        )
        self.wake.set()

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        envelope, offset = self._event()
        if await self.offload(
            self.ingest.reply, event, event_id=envelope.id, at=envelope.wall, offset=offset
        ):
            self.wake.set()

    @on(ReplyMeta)
    async def on_meta(self, event: ReplyMeta) -> None:
        envelope, offset = self._event()
        stored = await self.offload(
            self.ingest.meta,
            event,
            at=envelope.wall,
            offset=offset,
            remember=self.capabilities.allowed("remember", event.person_id),
        )
        self.wake.set()
        for memory in stored if self.config.suggestions else []:
            if memory.kind == "fact":
                # What the Discord and web buttons (and `hexbus memory edit ID --approve`) act on.
                await self.publish(
                    MemoryChanged(action="suggested", ids=(memory.id,), detail=memory.text),
                    causation=envelope.id,
                )

    @on(MemoryImport)
    async def on_import(self, event: MemoryImport) -> None:
        _, offset = self._event()
        counts = await self.offload(self.ingest.history, event, offset=offset)
        self.wake.set()
        await self.changed("imported", (), event.source, counts=counts)

    @on(MemoryImportFile)
    async def on_import_file(self, event: MemoryImportFile) -> None:
        envelope, offset = self._event()
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:  # on the worker thread
            progress = MemoryProgress(request=envelope.id, done=done, total=total, unit="turns")
            loop.call_soon_threadsafe(self.bus.publish_volatile, progress)

        imported = await self._apply(
            self.ingest.history_file, event, self.blob or b"", offset=offset, progress=report
        )
        self.wake.set()
        if imported is not None:
            counts, problems = imported
            await self.changed("imported", (), "\n".join(problems[:100]), counts=counts)

    @on(MemoryDocument)
    async def on_document(self, event: MemoryDocument) -> None:
        envelope, offset = self._event()
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:  # on the worker thread
            progress = MemoryProgress(request=envelope.id, done=done, total=total)
            loop.call_soon_threadsafe(self.bus.publish_volatile, progress)

        stored = await self._apply(
            self.ingest.document,
            event,
            self.blob or b"",
            event_id=envelope.id,
            at=envelope.wall,
            offset=offset,
            progress=report,
        )
        if stored is not None:
            ids = tuple(m.id for m in stored)
            await self.changed("stored", ids, event.name, counts={"chunks": len(stored)})

    @on(MemoryAdd)
    async def on_add(self, event: MemoryAdd) -> None:
        envelope, offset = self._event()
        stored = await self._apply(
            self.edits.add, event, event_id=envelope.id, at=envelope.wall, offset=offset
        )
        if stored is not None:
            await self.changed("added", (stored.id,))

    @on(MemoryEdit)
    async def on_edit(self, event: MemoryEdit) -> None:
        _, offset = self._event()
        action = await self._apply(self.edits.edit, event, offset=offset)
        if action is not None:
            await self.changed(action, (event.id,))

    @on(MemoryCorrect)
    async def on_correct(self, event: MemoryCorrect) -> None:
        envelope, offset = self._event()
        confidences = await self._apply(self.edits.correct, event, at=envelope.wall, offset=offset)
        if confidences is not None:
            old, new = confidences
            await self.changed("corrected", (event.id,), f"confidence {old:g} -> {new:g}")

    @on(MemoryForget)
    async def on_forget(self, event: MemoryForget) -> None:
        _, offset = self._event()
        found: list[str] = []
        if event.query:
            query = MemoryQuery(text=event.query, k=10)
            hits = await self.offload(self.search.query, query, touch=False)
            found = [h.id for h in hits if h.score > 0]
        forgotten = await self._apply(self.edits.forget, event, found=found, offset=offset)
        if forgotten is not None:
            ids, counts = forgotten
            await self.changed("forgotten", ids, counts=counts)

    # -- requests (volatile, answered to the asker) ---------------------------------------

    @on(MemoryQuery)
    async def on_query(self, event: MemoryQuery) -> None:
        try:
            result = await self.offload(self.search.answer, event)
        except Exception as exc:
            log.exception("memory.query_failed")
            result = MemoryResult(error=f"{type(exc).__name__}: {exc}")
        await self.respond(result)

    @on(MemoryReview)
    async def on_review(self, event: MemoryReview) -> None:
        await self.respond(await self.offload(self.search.review, event.limit))

    @on(MemoryHistory)
    async def on_history(self, event: MemoryHistory) -> None:
        try:
            result = await self.offload(self.search.history, event)
        except Exception as exc:
            log.exception("memory.history_failed")
            result = MemoryHistoryResult(error=f"{type(exc).__name__}: {exc}")
        await self.respond(result)

    @on(MemoryExport)
    async def on_export(self, event: MemoryExport) -> None:
        count, lines = await self.offload(
            export_lines, self.store, include_archived=event.include_archived
        )
        await self.respond(MemoryExported(count=count), blob=lines)

    # -- background tasks (started by on_live with spawn) ---------------------------------

    async def _age(self) -> None:
        while True:
            await asyncio.sleep(self.config.aging_interval_s)
            try:
                await self.offload(self.curation.age, time.time())
            except Exception:
                log.exception("memory.aging_failed")

    async def _reindex(self) -> None:
        """Old memories brought up to date a batch at a time; ``hexbus status`` shows how far."""
        shown = self.detail
        try:
            while progress := await self.offload(self.reindex.progress):
                self.detail = progress
                if not await self.offload(self.reindex.step):
                    break
        except Exception:
            log.exception("memory.reindex_failed")
        self.detail = shown

    async def _watch_diaries(self) -> None:
        while True:
            try:
                await self.offload(self.curation.sync_diaries)
            except Exception:
                log.exception("memory.journal_scan_failed")
            await asyncio.sleep(self.config.diary_scan_s)

    async def _hygiene(self) -> None:
        """Contradiction checks and summaries, one step at a time while any is due; when the
        brain does not answer, both wait ``brain_retry_s``."""
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), self.config.hygiene_interval_s)
            except TimeoutError:
                pass
            self.wake.clear()
            if time.monotonic() < self.brain_down_until:
                continue
            try:
                while await self.check_contradiction() or await self.summarize():
                    pass
            except RequestTimeout:
                self.brain_down_until = time.monotonic() + self.config.brain_retry_s
                log.info(
                    "memory.brain_unavailable",
                    retry_in_s=self.config.brain_retry_s,
                    hint="summaries and contradiction checks wait for the brain",
                )
            except Exception:
                log.exception("memory.hygiene_failed")

    async def _ask_brain(self, task: BrainTask) -> BrainTaskResult:
        return await self.request(task, BrainTaskResult, timeout=self.config.brain_timeout_s)

    async def check_contradiction(self) -> bool:
        """Have the brain compare one new fact with its rivals; False when none is waiting."""
        check = await self.offload(self.curation.next_check)
        if check is None:
            return False
        contradicted: list[Memory] = []
        for older in check.rivals:
            verdict = await self._ask_brain(
                BrainTask(kind="contradiction", text=older.text, other=check.fact.text)
            )
            if verdict.error:
                log.info(
                    "memory.contradiction_unjudged",
                    older=older.id,
                    newer=check.fact.id,
                    error=verdict.error,
                )
            elif verdict.contradicts:
                contradicted.append(older)
        superseded = await self.offload(self.curation.settle, check, contradicted, at=time.time())
        for older in superseded:
            await self.publish(
                MemoryChanged(
                    action="superseded",
                    ids=(older.id, check.fact.id),
                    detail=f"{older.text!r} -> {check.fact.text!r}",
                )
            )
        return True

    async def summarize(self) -> bool:
        """Have the brain summarise one batch of old turns; False when none is due."""
        turns = await self.offload(self.curation.next_batch)
        if not turns:
            return False
        transcript = "\n".join(f"{t.speaker or t.role}: {t.text}" for t in turns)
        result = await self._ask_brain(BrainTask(kind="summarize", text=transcript))
        stored = await self.offload(self.curation.fold, turns, result)
        if stored:
            await self.publish(
                MemoryChanged(
                    action="summarized",
                    ids=tuple(m.id for m in stored),
                    counts={"turns": len(turns)},
                )
            )
        return True
