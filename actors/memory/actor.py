"""The memory actor: conversation turns, memories and profiles in DuckDB, found by meaning and by words.

Every durable event it applies is written in one DuckDB transaction together with
that event's journal offset, so a SIGKILL at any point neither loses nor doubles
anything: on restart, events at or below the committed offset are skipped and the
rest are applied again (ids are derived from event ids, so a half-seen event is
idempotent too). The vector index (hnswlib) and the keyword index (BM25) are
derived from DuckDB: they are updated after each commit and rebuilt from it when
missing, corrupt or behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import ClassVar, Literal

import msgspec
import numpy as np
import structlog

from actors.memory.documents import DocumentError, Limits, read_document
from actors.memory.embed import Embedder, EmbedderMissing
from actors.memory.journals import Entry, JournalError, Journals, derived_id
from actors.memory.keyword import KeywordIndex
from actors.memory.rank import Candidate, Weights, rank
from actors.memory.store import Memory, MemoryStore, StoreError, Turn
from actors.memory.vectors import VectorIndex
from hexbus import Actor, ActorUnusable, NoState, RequestTimeout, on
from hexbus.codec import Envelope
from schemas import (
    BrainTask,
    BrainTaskResult,
    ChatMessage,
    Contradiction,
    Fact,
    MemoryAdd,
    MemoryChanged,
    MemoryCorrect,
    MemoryDocument,
    MemoryEdit,
    MemoryExport,
    MemoryExported,
    MemoryForget,
    MemoryHit,
    MemoryImport,
    MemoryQuery,
    MemoryResult,
    MemoryReview,
    MemoryReviewed,
    PersonProfile,
    Reply,
    ReplyMeta,
)

log = structlog.get_logger("actors.memory")

Action = Literal[
    "added",
    "suggested",
    "edited",
    "approved",
    "rejected",
    "corrected",
    "forgotten",
    "refused",
    "imported",
    "stored",
    "superseded",
    "summarized",
]


class MemoryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str = ""  # the DuckDB file; empty = memory.duckdb in the actor's data folder
    embedder: str = ""  # a sentence-transformers folder; empty = the packaged all-MiniLM-L6-v2
    weights: Weights = Weights()
    candidates: int = (
        50  # taken from each of the vector and keyword searches before ranking (at least 3 k)
    )
    anchors: int = 2  # anchors about the person always offered beside the hits
    suggestions: bool = (
        False  # facts from replies wait for approval instead of being stored at once
    )
    owners: tuple[str, ...] = ()  # person ids allowed to forget everything about a person
    duplicate_similarity: float = (
        0.92  # a new fact this close to one about the same person merges into it
    )
    correction_factor: float = (
        0.4  # a "that's wrong" multiplies confidence by this: below low_confidence, so hedged
    )
    archive_after_days: float = (
        180.0  # older than this and below the importance: archived, not deleted
    )
    archive_below_importance: float = 0.3
    aging_interval_s: float = 3600.0  # how often aging runs (0: never)
    # Episodic memory: a person's own turns are searchable verbatim (Hex's own words are not: a
    # reply indexed as memory is how a bot comes to "remember" what it made up).
    turn_min_words: int = 3  # shorter turns ("ok", "lol") are kept in the history but not indexed
    turn_importance: float = 0.2  # low: old turns age into the archive unless a summary keeps them
    # Rolling summaries and contradiction checks, asked of the brain's model over the bus.
    recent_turns: int = 30  # per conversation, never summarised (the brain has them whole)
    summary_batch: int = 20  # turns folded into one summary
    summaries: bool = True
    contradiction_similarity: float = (
        0.6  # facts about one person this close (not duplicates) are checked
    )
    brain_timeout_s: float = 120.0  # a summary waits behind people's replies; generous on CPU
    brain_retry_s: float = (
        60.0  # after a timeout (no brain running), wait this long before asking again
    )
    hygiene_interval_s: float = 2.0
    # Markdown journals: a file per notable moment, re-read when a person edits or deletes one.
    journal_dir: str = ""  # empty = journals/ in the actor's data folder
    journal_importance: float = (
        0.7  # an exchange the brain rates at least this becomes a journal entry
    )
    journal_scan_s: float = 5.0  # how often the folder is checked for people's edits (0: never)
    documents: Limits = Limits()


def _cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x, y = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return float(x @ y / max(1e-9, float(np.linalg.norm(x) * np.linalg.norm(y))))


def person_of(speaker: str) -> str:
    """The person id of an imported speaker who came without one."""
    return "import:" + "-".join(speaker.casefold().split())


def _quoted_in(fact: Fact, turns: list[Turn]) -> Turn | None:
    """The turn a fact's quote comes from (whitespace and case aside)."""
    quote = " ".join(fact.quote.split()).casefold()
    return next((t for t in turns if quote and quote in " ".join(t.text.split()).casefold()), None)


def _live_turn(
    envelope: Envelope,
    event: ChatMessage | Reply,
    *,
    speaker: str,
    role: Literal["user", "assistant"],
    meta: dict[str, str] | None = None,
) -> Turn:
    """The stored turn of a live chat message or reply."""
    return Turn(
        id=envelope.id,
        conversation=f"{event.platform}:{event.channel}",
        platform=event.platform,
        channel=event.channel,
        person_id=event.person_id,
        speaker=speaker,
        role=role,
        text=event.text,
        at=envelope.wall,
        meta=meta or {},
    )


def memory_id(*parts: str) -> str:
    return "m_" + hashlib.blake2b("/".join(parts).encode(), digest_size=8).hexdigest()


class MemoryActor(Actor[MemoryConfig, NoState]):
    """Long-term memory. Its state lives in DuckDB (with the applied offset), not in a snapshot."""

    subscribes: ClassVar[tuple[str, ...]] = ("chat.message", "chat.reply", "chat.meta", "memory")
    config_type = MemoryConfig

    async def setup(self) -> None:
        path = (
            Path(self.config.path).expanduser()
            if self.config.path
            else self.data_dir / "memory.duckdb"
        )
        if not path.is_absolute():
            path = self.config_dir / path
        self.db_path = path
        try:
            self.store = await self.offload(MemoryStore, path)
        except StoreError as exc:
            raise ActorUnusable(str(exc)) from None
        self.embedder = Embedder(self.config.embedder)
        try:
            await self.offload(self.embedder.load)
        except EmbedderMissing as exc:
            raise ActorUnusable(str(exc)) from None
        journal_dir = (
            Path(self.config.journal_dir).expanduser()
            if self.config.journal_dir
            else (self.data_dir / "journals")
        )
        self.journals = Journals(
            journal_dir if journal_dir.is_absolute() else self.config_dir / journal_dir
        )
        self.wake = asyncio.Event()  # new turns or facts: the hygiene loop looks at once
        self.brain_down_until = 0.0
        self.loops: list[asyncio.Task[None]] = []
        self.journal_errors: dict[
            str, str
        ] = {}  # file -> hash of the broken version already reported
        # Held from writing a journal file until its row is committed, and by each folder scan: a scan
        # between the two would adopt the new file as a person's own.
        self.journal_lock = asyncio.Lock()
        rows = await self.offload(lambda: list(self.store.all_for_index()))
        self.vectors = await self.offload(self._open_vectors, rows)
        self.keywords = await self.offload(self._keyword_index, rows)
        log.info(
            "memory.ready",
            path=str(path),
            memories=len(rows),
            applied_offset=self.store.applied_offset,
        )

    def _open_vectors(
        self, rows: list[tuple[int, str, tuple[float, ...] | None, bool]]
    ) -> VectorIndex:
        """The saved index if it holds exactly DuckDB's vectors; else (a crash after a commit, a missing
        or damaged file) rebuilt from the embeddings DuckDB keeps."""
        vectors = [(label, vector) for label, _, vector, _ in rows if vector is not None]
        return VectorIndex.open(
            self.db_path.with_suffix(".hnsw"),
            self.embedder.dim,
            lambda: vectors,
            expected_labels={label for label, _ in vectors},
        )

    @staticmethod
    def _keyword_index(rows: list[tuple[int, str, tuple[float, ...] | None, bool]]) -> KeywordIndex:
        index = KeywordIndex()
        for label, text, _, _archived in rows:
            index.add(label, text)
        return index

    async def on_live(self) -> None:
        # After replay: whatever the journal replay re-wrote is in place before the folder is compared.
        loop = asyncio.get_running_loop()
        if self.config.aging_interval_s > 0:
            self.loops.append(loop.create_task(self._age(), name="memory-aging"))
        if self.config.journal_scan_s > 0:
            self.loops.append(loop.create_task(self._watch_journals(), name="memory-journals"))
        self.loops.append(loop.create_task(self._hygiene(), name="memory-hygiene"))

    async def _age(self) -> None:
        """Archive what is old and unimportant (never anchors); archived memories stay searchable on request."""
        while True:
            await asyncio.sleep(self.config.aging_interval_s)

            def archive() -> list[str]:
                with self.store.transaction():
                    return self.store.archive_older_than(
                        self.config.archive_after_days * 86400,
                        self.config.archive_below_importance,
                        time.time(),
                    )

            try:
                archived = await self.offload(archive)
            except Exception:
                log.exception("memory.aging_failed")
                continue
            if archived:
                log.info("memory.archived", count=len(archived), ids=archived[:20])

    async def teardown(self) -> None:
        for task in getattr(self, "loops", ()):
            task.cancel()
        await asyncio.gather(*getattr(self, "loops", ()), return_exceptions=True)
        await self.offload(self.vectors.save)
        self.store.close()

    # -- applying durable events, once each ----------------------------------------

    def _fresh(self) -> int | None:
        """The offset of the event being handled, or None when DuckDB already has its effects."""
        envelope = self.envelope
        if envelope is None or (envelope.offset and envelope.offset <= self.store.applied_offset):
            return None
        return envelope.offset or None

    @on(ChatMessage)
    async def on_message(self, event: ChatMessage) -> None:
        offset, envelope = self._fresh(), self.envelope
        if offset is None or envelope is None:
            return
        turn = _live_turn(envelope, event, speaker=event.display_name, role="user")

        episodes = await self._episodes([turn])

        def write() -> list[Memory]:
            with self.store.transaction(offset):
                self.store.add_turn(turn)
                self.store.upsert_person(
                    event.person_id, event.display_name, event.platform, envelope.wall
                )
                return [self.store.add_memory(m) for m in episodes]

        await self._index(await self.offload(write))
        self.wake.set()

    async def _episodes(self, turns: list[Turn]) -> list[Memory]:
        """The episodic memories of a person's turns (never Hex's own): verbatim, with the turn as provenance."""
        kept = [
            t
            for t in turns
            if t.role == "user" and len(t.text.split()) >= self.config.turn_min_words
        ]
        vectors = await self._embed([t.text for t in kept]) if kept else []
        return [
            Memory(
                id=memory_id(t.id, "turn"),
                kind="turn",
                text=t.text,
                source="import" if t.source == "import" else "extracted",
                person_id=t.person_id,
                importance=self.config.turn_importance,
                quote=t.text,
                turn_ids=(t.id,),
                created=t.at,
                embedding=vector,
            )
            for t, vector in zip(kept, vectors, strict=True)
        ]

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        offset, envelope = self._fresh(), self.envelope
        if offset is None or envelope is None:
            return
        if event.status != "complete" or not event.text:
            await self.offload(self._commit_offset, offset)
            return
        turn = _live_turn(
            envelope, event, speaker="Hex", role="assistant", meta={"reply_to": event.reply_to}
        )

        def write() -> None:
            with self.store.transaction(offset):
                self.store.add_turn(turn)

        await self.offload(write)
        self.wake.set()

    def _commit_offset(self, offset: int) -> None:
        with self.store.transaction(offset):
            pass

    @on(ReplyMeta)
    async def on_meta(self, event: ReplyMeta) -> None:
        # Journal files and their rows change together: the folder scan waits (see sync_journals).
        async with self.journal_lock:
            offset, envelope = self._fresh(), self.envelope
            if offset is None or envelope is None:
                return
            facts = (
                [f for f in event.facts if f.text.strip()] if event.remember or event.facts else []
            )
            vectors = await self._embed([f.text for f in facts]) if facts else []
            drafts = [
                Memory(
                    id=memory_id(event.reply_to, "fact", str(i)),
                    kind="fact",
                    text=fact.text,
                    source="ai_suggested" if self.config.suggestions else "extracted",
                    person_id=event.person_id,
                    importance=event.importance,
                    quote=fact.quote,
                    turn_ids=(event.reply_to,),
                    tags=event.tags,
                    approved=not self.config.suggestions,
                    checked=False,
                    embedding=vector,
                )
                for i, (fact, vector) in enumerate(zip(facts, vectors, strict=True))
            ]
            entry = (
                await self._journal_entry(event, envelope.wall)
                if event.importance >= self.config.journal_importance
                else None
            )
            journal = (
                await self._write_journal(entry, turn_ids=(event.reply_to,))
                if entry is not None
                else None
            )
            added: list[Memory] = []

            def write() -> None:
                with self.store.transaction(offset):
                    added.extend(self._store_facts(drafts))
                    if journal is not None:
                        added.append(self.store.add_memory(journal))
                    profile = event.profile
                    if profile.hobbies or profile.tastes or profile.sentiment or profile.people:
                        self.store.update_profile(
                            event.person_id,
                            hobbies=profile.hobbies,
                            tastes=profile.tastes,
                            sentiment=profile.sentiment,
                            roster={
                                p.name: {
                                    "relation": p.relation,
                                    "sentiment": p.sentiment,
                                    "note": p.note,
                                }
                                for p in profile.people
                            },
                            at=time.time(),
                        )

            await self.offload(write)
            await self._index(added)
            self.wake.set()
            for memory in added if self.config.suggestions else []:
                if memory.kind == "fact":
                    # What the Discord and web buttons (and `hexbus memory edit ID --approve`) act on.
                    await self.publish(
                        MemoryChanged(action="suggested", ids=(memory.id,), detail=memory.text),
                        causation=envelope.id,
                    )

    def _store_facts(self, drafts: list[Memory]) -> list[Memory]:
        """Inside a transaction: new facts stored, near-duplicates merged into the fact they repeat
        (keeping both provenances). Returns the memories added."""
        added: list[Memory] = []
        for draft in drafts:
            assert draft.embedding is not None
            twin = self._duplicate(draft.embedding, draft.person_id)
            if twin is None:
                twin = next(
                    (
                        m
                        for m in added
                        if m.person_id == draft.person_id
                        and m.embedding is not None
                        and _cosine(m.embedding, draft.embedding)
                        >= self.config.duplicate_similarity
                    ),
                    None,
                )
            if twin is not None:
                self.store.update_memory(
                    twin.id,
                    turn_ids=tuple(dict.fromkeys((*twin.turn_ids, *draft.turn_ids))),
                    importance=max(twin.importance, draft.importance),
                )
                log.info("memory.merged_duplicate", into=twin.id, text=draft.text[:80])
                continue
            added.append(self.store.add_memory(draft))
        return added

    async def _journal_entry(self, event: ReplyMeta, at: float) -> Entry:
        turn = await self.offload(self.store.turn, event.reply_to)
        said = turn.text if turn is not None else ""
        who = (turn.speaker if turn is not None else "") or event.person_id or "someone"
        lines = [f"{who} told me: \u201c{said}\u201d" if said else f"A moment with {who}."]
        if event.emotion and event.emotion != "neutral":
            lines.append(f"I felt {event.emotion}.")
        if event.facts:
            lines += [
                "",
                "Worth remembering:",
                *(f"- {f.text}" for f in event.facts if f.text.strip()),
            ]
        title = event.facts[0].text if event.facts else (", ".join(event.tags) or f"with {who}")
        return Entry(
            id=memory_id(event.reply_to, "journal"),
            at=at,
            text="\n".join(lines),
            title=title[:80],
            tags=event.tags,
            emotion=event.emotion,
            importance=event.importance,
            people=(event.person_id,) if event.person_id else (),
            person_id=event.person_id,
        )

    async def _write_journal(
        self, entry: Entry, *, source: str = "extracted", turn_ids: tuple[str, ...] = ()
    ) -> Memory:
        """Write the file (first: a crash before the commit leaves a file the folder scan adopts, never a
        row whose file is missing) and return the memory to commit for it."""
        relpath, digest = await self.offload(self.journals.write, entry)
        vector = (await self._embed([entry.text]))[0]
        return Memory(
            id=entry.id,
            kind="journal",
            text=entry.text,
            source=source,  # type: ignore[arg-type]
            person_id=entry.person_id,
            importance=entry.importance,
            quote="",
            turn_ids=turn_ids,
            tags=entry.tags,
            created=entry.at,
            journal=relpath,
            journal_hash=digest,
            embedding=vector,
        )

    async def _embed(self, texts: list[str]) -> list[tuple[float, ...]]:
        """Embeddings as DuckDB keeps them, computed off the loop."""
        matrix = await self.offload(self.embedder.encode, texts)
        return [tuple(float(x) for x in row) for row in matrix]

    def _duplicate(self, vector: tuple[float, ...], person_id: str) -> Memory | None:
        allowed = set(
            self.store.candidates(
                person_id=person_id, kinds=("fact",), include_pending=True, include_superseded=False
            )
        )
        if not allowed:
            return None
        for label, similarity in self.vectors.search(vector, 1, allowed=allowed):
            if similarity >= self.config.duplicate_similarity:
                found = self.store.get_many([label])
                return found[0] if found else None
        return None

    async def _index(self, memories: list[Memory]) -> None:
        with_vectors = [m for m in memories if m.embedding is not None]
        if with_vectors:
            labels = [m.label for m in with_vectors]
            matrix = np.asarray([m.embedding for m in with_vectors], dtype=np.float32)
            await self.offload(self.vectors.add, labels, matrix)
        for m in memories:
            self.keywords.add(m.label, m.text)

    async def _unindex(self, memories: list[Memory]) -> None:
        labels = [m.label for m in memories]
        if labels:
            await self.offload(self.vectors.delete, labels)
        for label in labels:
            self.keywords.remove(label)

    # -- manual memories, corrections, forgetting ------------------------------------

    async def changed(
        self,
        action: Action,
        ids: tuple[str, ...] = (),
        detail: str = "",
        counts: dict[str, int] | None = None,
    ) -> None:
        """Report a change request's outcome; its causation is the request, which is how callers find it."""
        envelope = self.envelope
        await self.publish(
            MemoryChanged(action=action, ids=ids, detail=detail, counts=counts or {}),
            causation=envelope.id if envelope else "",
        )

    @on(MemoryAdd)
    async def on_add(self, event: MemoryAdd) -> None:
        # Journal files and their rows change together: the folder scan waits (see sync_journals).
        async with self.journal_lock:
            offset, envelope = self._fresh(), self.envelope
            if offset is None or envelope is None:
                return
            text = event.text.strip()
            if not text:
                await self._refuse(offset, "an empty memory: give it some text")
                return
            importance = min(1.0, max(0.0, event.importance))
            if event.kind == "journal":
                memory = await self._write_journal(
                    Entry(
                        id=memory_id(envelope.id),
                        at=envelope.wall,
                        text=text,
                        title=text.split("\n")[0][:80],
                        tags=event.tags,
                        importance=importance,
                        person_id=event.person_id,
                        people=(event.person_id,) if event.person_id else (),
                    ),
                    source="manual",
                )
            else:
                memory = Memory(
                    id=memory_id(envelope.id),
                    kind=event.kind,
                    text=text,
                    source="manual",
                    person_id=event.person_id,
                    importance=importance,
                    tags=event.tags,
                    checked=event.kind != "fact",
                    embedding=(await self._embed([text]))[0],
                )

            def write() -> Memory:
                with self.store.transaction(offset):
                    return self.store.add_memory(memory)

            stored = await self.offload(write)
            await self._index([stored])
            await self.changed("added", (stored.id,))

    async def _refuse(self, offset: int, detail: str, ids: tuple[str, ...] = ()) -> None:
        """A request that changes nothing: its offset is applied (it is not redone) and it is refused."""
        await self.offload(self._commit_offset, offset)
        await self.changed("refused", ids, detail)

    async def _target(self, memory: str) -> tuple[int, Memory] | None:
        """The offset of a fresh request and the memory it names; None when already applied or when it
        names no memory (then it is refused)."""
        offset = self._fresh()
        if offset is None:
            return None
        found = await self.offload(self.store.get, memory)
        if found is None:
            await self._refuse(offset, f"no memory {memory}", (memory,))
            return None
        return offset, found

    @on(MemoryEdit)
    async def on_edit(self, event: MemoryEdit) -> None:
        # Journal files and their rows change together: the folder scan waits (see sync_journals).
        async with self.journal_lock:
            if (target := await self._target(event.id)) is None:
                return
            offset, existing = target
            if event.approve is False:
                await self._remove([event.id], offset)
                await self.changed("rejected", (event.id,))
                return
            changes: dict[str, object] = {}
            text = event.text.strip()
            if text and text != existing.text:
                changes["text"] = text
                changes["embedding"] = (await self._embed([text]))[0]
            if event.importance >= 0:
                changes["importance"] = min(1.0, event.importance)
            if event.tags is not None:
                changes["tags"] = event.tags
            if event.approve:
                changes["approved"] = True
                changes["checked"] = (
                    existing.kind != "fact"
                )  # now it counts: compare it with older facts
            if existing.journal and changes.keys() & {"text", "importance", "tags"}:
                # The file first, as for a new entry: the folder scan must never see an edit the store lacks.
                entry, _ = await self.offload(self.journals.read, existing.journal)
                entry = msgspec.structs.replace(
                    entry,
                    text=text or entry.text,
                    tags=entry.tags if event.tags is None else event.tags,
                    importance=min(1.0, event.importance)
                    if event.importance >= 0
                    else entry.importance,
                )
                changes["journal"], changes["journal_hash"] = await self.offload(
                    self.journals.write, entry
                )
                if changes["journal"] != existing.journal:
                    await self.offload(self.journals.remove, existing.journal)

            def write() -> Memory:
                with self.store.transaction(offset):
                    return self.store.update_memory(event.id, **changes)

            updated = await self.offload(write)
            if "text" in changes:
                await self._unindex([existing])
                await self._index([updated])
            await self.changed("approved" if event.approve else "edited", (event.id,))

    @on(MemoryCorrect)
    async def on_correct(self, event: MemoryCorrect) -> None:
        if (target := await self._target(event.id)) is None:
            return
        offset, existing = target
        new_confidence = (
            0.0 if event.remove else round(existing.confidence * self.config.correction_factor, 4)
        )

        def write() -> None:
            with self.store.transaction(offset):
                self.store.record_correction(
                    event.id,
                    by=event.by,
                    note=event.note,
                    old_confidence=existing.confidence,
                    new_confidence=new_confidence,
                    at=time.time(),
                )
                if not event.remove:
                    self.store.update_memory(event.id, confidence=new_confidence)

        await self.offload(write)
        if event.remove:
            await self._remove([event.id], None)
        await self.changed(
            "corrected", (event.id,), f"confidence {existing.confidence:g} -> {new_confidence:g}"
        )

    @on(MemoryForget)
    async def on_forget(self, event: MemoryForget) -> None:
        offset = self._fresh()
        if offset is None:
            return
        counts: dict[str, int] = {}
        ids = list(event.ids)
        if event.query:
            ids += [
                h.id
                for h in await self.search(MemoryQuery(text=event.query, k=10), touch=False)
                if h.score > 0
            ]
        if event.person_id:
            if event.by not in self.config.owners:
                log.warning("memory.forget_refused", by=event.by, person=event.person_id)
                await self._refuse(
                    offset,
                    f"only an owner may forget everything about a person "
                    f"({event.by or 'unknown'} is not one)",
                )
                return
            about = await self.offload(
                lambda: self.store.get_many(
                    self.store.candidates(
                        person_id=event.person_id, include_archived=True, include_pending=True
                    )
                )
            )
            await self._unindex(about)
            await self._remove_journals(about)

            def wipe() -> dict[str, int]:
                with self.store.transaction(offset):
                    return self.store.forget_person(event.person_id)

            counts = await self.offload(wipe)
            offset = None
        removed = await self._remove(ids, offset) if ids else []
        if offset is not None and not ids:
            await self.offload(self._commit_offset, offset)
        counts["memories"] = counts.get("memories", 0) + len(removed)
        await self.changed("forgotten", tuple(m.id for m in removed), counts=counts)

    async def _remove(self, ids: list[str], offset: int | None) -> list[Memory]:
        # Journal files go first: a crash between leaves a row without a file, which the folder scan
        # deletes; the other order would leave a file the scan adopts again, a forgotten memory reborn.
        await self._remove_journals(
            await self.offload(self.store.get_many, list(dict.fromkeys(ids)))
        )

        def delete() -> list[Memory]:
            with self.store.transaction(offset):
                return self.store.delete(list(dict.fromkeys(ids)))

        removed = await self.offload(delete)
        await self._unindex(removed)
        await self.offload(self.vectors.save)
        return removed

    # -- imports and documents ---------------------------------------------------------

    @on(MemoryImport)
    async def on_import(self, event: MemoryImport) -> None:
        offset = self._fresh()
        if offset is None:
            return
        turns = [
            Turn(
                id=t.id,
                conversation=t.conversation,
                platform=t.conversation.split(":", 1)[0],
                channel=t.conversation.split(":", 1)[-1],
                person_id=t.person_id or person_of(t.speaker),
                speaker=t.speaker,
                role=t.role,
                text=t.text,
                at=t.at,
                source="import",
                meta=t.meta,
            )
            for t in event.turns
            if t.id and t.text.strip()
        ]
        known = await self.offload(
            lambda: {t.id for t in turns if self.store.turn(t.id) is not None}
        )
        fresh = [t for t in turns if t.id not in known]
        episodes = await self._episodes(fresh)

        def write() -> list[Memory]:
            with self.store.transaction(offset):
                for turn in fresh:
                    self.store.add_turn(turn)
                    if turn.role == "user":
                        self.store.upsert_person(
                            turn.person_id, turn.speaker, turn.platform, turn.at
                        )
                return [self.store.add_memory(m) for m in episodes]

        await self._index(await self.offload(write))
        self.wake.set()
        await self.changed(
            "imported",
            (),
            event.source,
            counts={
                "turns": len(fresh),
                "already_known": len(known),
                "indexed": len(episodes),
                "empty": len(event.turns) - len(turns),
            },
        )

    @on(MemoryDocument)
    async def on_document(self, event: MemoryDocument) -> None:
        offset, envelope = self._fresh(), self.envelope
        if offset is None or envelope is None:
            return
        data = self.blob or b""
        if event.sha256 and hashlib.sha256(data).hexdigest() != event.sha256:
            await self._refuse(
                offset, f"{event.name}: the upload arrived damaged (sha256 differs); send it again"
            )
            return
        try:
            chunks = await self.offload(read_document, event.name, data, self.config.documents)
        except DocumentError as exc:
            log.warning("memory.document_refused", name=event.name, error=str(exc))
            await self._refuse(offset, str(exc))
            return
        vectors = await self._embed([c.text for c in chunks])
        memories = [
            Memory(
                id=memory_id(envelope.id, "doc", str(c.index)),
                kind="document",
                text=c.text,
                source="document",
                person_id=event.person_id,
                importance=0.5,
                quote="",
                document=f"{event.name} #{c.index + 1} ({c.where})",
                tags=event.tags,
                created=envelope.wall,
                embedding=vector,
            )
            for c, vector in zip(chunks, vectors, strict=True)
        ]

        def write() -> list[Memory]:
            with self.store.transaction(offset):  # every chunk or none
                return [self.store.add_memory(m) for m in memories]

        stored = await self.offload(write)
        await self._index(stored)
        await self.offload(self.vectors.save)
        log.info("memory.document_stored", name=event.name, chunks=len(stored), bytes=len(data))
        await self.changed(
            "stored", tuple(m.id for m in stored), event.name, counts={"chunks": len(stored)}
        )

    # -- journals people edit -------------------------------------------------------------

    async def _watch_journals(self) -> None:
        while True:
            try:
                await self.sync_journals()
            except Exception:
                log.exception("memory.journal_scan_failed")
            await asyncio.sleep(self.config.journal_scan_s)

    async def sync_journals(self) -> None:
        """Bring DuckDB and the indexes in line with the journal folder: edits re-indexed, deletions forgotten,
        files people added adopted. A file that does not parse is reported once and left as it is."""
        async with self.journal_lock:
            await self._sync_journals()

    async def _sync_journals(self) -> None:
        known = await self.offload(self.store.journal_files)
        changes = await self.offload(self.journals.changes, known)
        for relpath, error in changes.errors:
            if self.journal_errors.get(relpath) != error:
                self.journal_errors[relpath] = error
                log.warning(
                    "memory.journal_unreadable",
                    file=relpath,
                    error=error,
                    hint="fix the front matter; the memory keeps its last good text meanwhile",
                )
        # Changes before deletions: a file a person moved is one of each, and its memory follows it.
        for relpath, entry, digest in changes.changed:
            self.journal_errors.pop(relpath, None)
            await self._adopt_journal(relpath, entry, digest)
        for relpath in changes.deleted:
            gone = await self.offload(self.store.by_journal, relpath)
            if gone is not None:
                removed = await self._remove([gone.id], None)
                log.info("memory.journal_deleted", file=relpath, ids=[m.id for m in removed])

    async def _adopt_journal(self, relpath: str, entry: Entry, digest: str) -> None:
        vector = (await self._embed([entry.text]))[0] if entry.text.strip() else None
        if vector is None:
            return
        fields: dict[str, object] = dict(
            text=entry.text,
            tags=entry.tags,
            importance=entry.importance,
            person_id=entry.person_id,
            journal=relpath,
            journal_hash=digest,
            embedding=vector,
        )

        def write() -> tuple[Memory | None, Memory]:
            with self.store.transaction():
                old = self.store.by_journal(relpath)
                id = entry.id
                if old is None and (same := self.store.get(entry.id)) is not None:
                    if same.journal and (self.journals.root / same.journal).exists():
                        id = derived_id(
                            relpath
                        )  # a copy of another entry's file: a memory of its own
                    else:
                        old = same  # the file was moved (or the row has no file yet): same memory
                if old is not None:
                    return old, self.store.update_memory(old.id, **fields)
                return None, self.store.add_memory(
                    Memory(id=id, kind="journal", source="manual", created=entry.at, **fields)  # type: ignore[arg-type]
                )

        old, new = await self.offload(write)
        if old is not None:
            await self._unindex([old])
        await self._index([new])
        log.info("memory.journal_indexed", file=relpath, id=new.id, edited=old is not None)

    # -- summaries and contradictions, asked of the brain ------------------------------------

    async def _hygiene(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), self.config.hygiene_interval_s)
            except TimeoutError:
                pass
            self.wake.clear()
            if time.monotonic() < self.brain_down_until:
                continue
            try:
                while await self._check_contradiction() or await self._summarize():
                    pass  # one step at a time, until nothing is left
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

    async def _check_contradiction(self) -> bool:
        """Compare one new fact with the older facts about the same person; False when none is waiting."""
        waiting = await self.offload(self.store.unchecked, 1)
        if not waiting:
            return False
        fact = waiting[0]
        rivals: list[Memory] = []
        vector = fact.embedding
        if vector is not None and fact.approved:

            def near() -> list[Memory]:
                allowed = set(
                    self.store.candidates(
                        person_id=fact.person_id, kinds=("fact",), include_superseded=False
                    )
                ) - {fact.label}
                hits = self.vectors.search(vector, 3, allowed=allowed) if allowed else []
                close = [
                    label for label, sim in hits if sim >= self.config.contradiction_similarity
                ]
                return [m for m in self.store.get_many(close) if m.label < fact.label]

            rivals = await self.offload(near)
        superseded: list[Memory] = []
        for older in rivals:
            verdict = await self._ask_brain(
                BrainTask(kind="contradiction", text=older.text, other=fact.text)
            )
            if verdict.error:
                log.info(
                    "memory.contradiction_unjudged",
                    older=older.id,
                    newer=fact.id,
                    error=verdict.error,
                )
            elif verdict.contradicts:
                superseded.append(older)

        def write() -> None:
            with self.store.transaction():
                if self.store.get(fact.id) is None:
                    return  # forgotten meanwhile
                for older in superseded:
                    if self.store.get(older.id) is not None:
                        self.store.record_contradiction(
                            older.id,
                            fact.id,
                            at=time.time(),
                            note="the brain judged the newer fact to contradict it",
                        )
                self.store.update_memory(fact.id, checked=True)

        await self.offload(write)
        for older in superseded:
            log.info("memory.superseded", older=older.id, newer=fact.id)
            await self.publish(
                MemoryChanged(
                    action="superseded",
                    ids=(older.id, fact.id),
                    detail=f"{older.text!r} -> {fact.text!r}",
                )
            )
        return True

    async def _summarize(self) -> bool:
        """Fold one batch of old turns into a summary memory plus the facts in it; False when none is due."""
        if not self.config.summaries:
            return False
        turns = await self.offload(
            lambda: self.store.unsummarized(
                keep=self.config.recent_turns, batch=self.config.summary_batch
            )
        )
        if not turns:
            return False
        transcript = "\n".join(f"{t.speaker or t.role}: {t.text}" for t in turns)
        result = await self._ask_brain(BrainTask(kind="summarize", text=transcript))
        if result.error:
            log.warning(
                "memory.summary_failed",
                turns=len(turns),
                error=result.error,
                hint="the turns are marked done so one bad batch cannot stall the rest",
            )
        people = sorted({t.person_id for t in turns if t.role == "user" and t.person_id})
        imported = all(t.source == "import" for t in turns)
        drafts: list[Memory] = []
        texts = [result.summary] if result.summary else []
        texts += [f.text for f in result.facts]
        vectors = await self._embed(texts) if texts else []
        first, last = turns[0], turns[-1]
        if result.summary:
            drafts.append(
                Memory(
                    id=memory_id(first.id, last.id, "summary"),
                    kind="summary",
                    text=result.summary,
                    source="import" if imported else "extracted",
                    person_id=people[0] if len(people) == 1 else "",
                    importance=0.4,
                    turn_ids=tuple(t.id for t in turns),
                    created=last.at,
                    embedding=vectors[0],
                )
            )
        facts: list[Memory] = []
        for i, (fact, vector) in enumerate(
            zip(result.facts, vectors[1 if result.summary else 0 :], strict=True)
        ):
            source = _quoted_in(fact, turns)
            if source is None or source.role != "user":
                continue  # only what a person said about themselves; never Hex's own claims
            facts.append(
                Memory(
                    id=memory_id(first.id, last.id, "fact", str(i)),
                    kind="fact",
                    text=fact.text,
                    source="ai_suggested"
                    if self.config.suggestions
                    else ("import" if imported else "extracted"),
                    person_id=source.person_id,
                    importance=0.5,
                    quote=fact.quote,
                    turn_ids=(source.id,),
                    approved=not self.config.suggestions,
                    checked=False,
                    created=source.at,
                    embedding=vector,
                )
            )

        def write() -> list[Memory]:
            with self.store.transaction():
                stored = [self.store.add_memory(m) for m in drafts]
                stored += self._store_facts(facts)
                self.store.mark_summarized([t.id for t in turns])
                return stored

        stored = await self.offload(write)
        await self._index(stored)
        if stored:
            log.info(
                "memory.summarized",
                conversation=first.conversation,
                turns=len(turns),
                ids=[m.id for m in stored],
            )
            await self.publish(
                MemoryChanged(
                    action="summarized",
                    ids=tuple(m.id for m in stored),
                    counts={"turns": len(turns)},
                )
            )
        return True

    async def _remove_journals(self, memories: list[Memory]) -> None:
        for m in memories:
            if m.journal:
                try:
                    await self.offload(self.journals.remove, m.journal)
                except JournalError as exc:
                    log.warning("memory.journal_remove_failed", file=m.journal, error=str(exc))

    # -- queries ----------------------------------------------------------------------

    @on(MemoryQuery)
    async def on_query(self, event: MemoryQuery) -> None:
        try:
            hits = await self.search(event)
        except Exception as exc:
            log.exception("memory.query_failed")
            await self.respond(MemoryResult(error=f"{type(exc).__name__}: {exc}"))
            return
        kept = await self.offload(self.store.profile, event.person_id) if event.person_id else None
        profile = (
            None
            if kept is None or not kept.updated
            else PersonProfile(
                hobbies=kept.hobbies,
                tastes=kept.tastes,
                sentiment=kept.sentiment,
                roster=kept.roster,
            )
        )
        await self.respond(MemoryResult(hits=tuple(hits), profile=profile))

    async def search(self, query: MemoryQuery, *, touch: bool = True) -> list[MemoryHit]:
        def eligible() -> set[int]:
            # A query about a person sees what is about them and what is about nobody in particular.
            people = (query.person_id, "") if query.person_id else (None,)
            return {
                label
                for person in people
                for label in self.store.candidates(
                    person_id=person,
                    kinds=query.kinds,
                    tags=query.tags,
                    since=query.since or None,
                    until=query.until or None,
                    include_archived=query.include_archived,
                    include_superseded=False,
                )
            }

        allowed = await self.offload(eligible)
        if not allowed or not query.text.strip():
            return []
        pool = max(
            self.config.candidates, 3 * query.k
        )  # from each index, before the hybrid ranking
        vector = (await self.offload(self.embedder.encode, [query.text]))[0]
        semantic = dict(await self.offload(self.vectors.search, vector, pool, allowed=allowed))
        # Off the loop: the first search after a change rebuilds the BM25 index (~150 ms at 10k memories).
        found = await self.offload(self.keywords.search, query.text, pool, allowed=allowed)
        keyword = {label: (score, exact) for label, score, exact in found}
        labels = list(semantic.keys() | keyword.keys())
        memories = {m.label: m for m in await self.offload(self.store.get_many, labels)}
        now = time.time()
        candidates = [
            Candidate(
                label=label,
                semantic=semantic.get(label, 0.0),
                keyword=keyword.get(label, (0.0, False))[0],
                exact=keyword.get(label, (0.0, False))[1],
                age_s=max(0.0, now - m.created),
                importance=m.importance,
                confidence=m.confidence,
                archived=m.archived,
                anchor=m.kind == "anchor",
            )
            for label, m in memories.items()
        ]
        scored = rank(
            candidates,
            self.config.weights,
            k=max(1, query.k),
            include_archived=query.include_archived,
        )
        hits = [self._hit(memories[s.label], s.score, s.hedge) for s in scored]
        if query.person_id and self.config.anchors:
            hits += await self._anchors(query.person_id, {h.id for h in hits})
        if touch and hits:
            await self.offload(self.store.mark_retrieved, [h.id for h in hits], now)
        return hits

    async def _anchors(self, person_id: str, have: set[str]) -> list[MemoryHit]:
        """Anchors (milestones, defining moments) about the person are always eligible for the context."""
        labels = await self.offload(self.store.candidates, person_id=person_id, kinds=("anchor",))
        anchors = sorted(
            await self.offload(self.store.get_many, labels), key=lambda m: -m.importance
        )
        return [
            self._hit(m, 0.0, m.confidence < self.config.weights.low_confidence)
            for m in anchors
            if m.id not in have
        ][: self.config.anchors]

    @staticmethod
    def _hit(m: Memory, score: float, hedge: bool) -> MemoryHit:
        return MemoryHit(
            id=m.id,
            text=m.text,
            score=round(score, 4),
            kind=m.kind,
            confidence=m.confidence,
            quote=m.quote,
            person_id=m.person_id,
            source=m.source,
            tags=m.tags,
            turn_ids=m.turn_ids,
            document=m.document,
            created=m.created,
            hedge=hedge,
        )

    @on(MemoryReview)
    async def on_review(self, event: MemoryReview) -> None:
        def gather() -> MemoryReviewed:
            pending = [self._hit(m, 0.0, False) for m in self.store.pending(event.limit)]
            found = self.store.contradictions()[-event.limit :]
            return MemoryReviewed(
                pending=tuple(pending),
                contradictions=tuple(
                    msgspec.convert(
                        [{k: "" if v is None else v for k, v in row.items()} for row in found],
                        list[Contradiction],
                    )
                ),
            )

        await self.respond(await self.offload(gather))

    @on(MemoryExport)
    async def on_export(self, event: MemoryExport) -> None:
        def lines() -> tuple[int, bytes]:
            rows = [
                r for r in self.store.export() if event.include_archived or not r.get("archived")
            ]
            return len(rows), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()

        count, blob = await self.offload(lines)
        await self.respond(MemoryExported(count=count), blob=blob)
