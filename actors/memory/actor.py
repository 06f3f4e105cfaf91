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

from actors.memory.embed import Embedder, EmbedderMissing
from actors.memory.keyword import KeywordIndex
from actors.memory.rank import Candidate, Weights, rank
from actors.memory.store import Memory, MemoryStore, StoreError, Turn
from actors.memory.vectors import VectorIndex
from hexbus import Actor, ActorUnusable, NoState, on
from schemas import (
    ChatMessage,
    MemoryAdd,
    MemoryChanged,
    MemoryCorrect,
    MemoryEdit,
    MemoryExport,
    MemoryExported,
    MemoryForget,
    MemoryHit,
    MemoryQuery,
    MemoryResult,
    Reply,
    ReplyMeta,
)

log = structlog.get_logger("actors.memory")

Action = Literal["added", "suggested", "edited", "approved", "rejected", "corrected", "forgotten", "refused"]


class MemoryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str = ""  # the DuckDB file; empty = memory.duckdb in the actor's data folder
    embedder: str = ""  # a sentence-transformers folder; empty = the packaged all-MiniLM-L6-v2
    weights: Weights = Weights()
    candidates: int = 50  # taken from each of the vector and keyword searches before ranking (at least 3 k)
    anchors: int = 2  # anchors about the person always offered beside the hits
    suggestions: bool = (
        False  # facts from replies wait for approval instead of being stored at once
    )
    owners: tuple[str, ...] = ()  # person ids allowed to forget everything about a person
    duplicate_similarity: float = (
        0.92  # a new fact this close to one about the same person merges into it
    )
    correction_factor: float = 0.4  # a "that's wrong" multiplies confidence by this: below low_confidence, so hedged
    archive_after_days: float = 180.0  # older than this and below the importance: archived, not deleted
    archive_below_importance: float = 0.3
    aging_interval_s: float = 3600.0  # how often aging runs (0: never)


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
        rows = await self.offload(lambda: list(self.store.all_for_index()))
        self.vectors = await self.offload(self._open_vectors, rows)
        self.keywords = await self.offload(self._keyword_index, rows)
        log.info("memory.ready", path=str(path), memories=len(rows), applied_offset=self.store.applied_offset)

    def _open_vectors(self, rows: list[tuple[int, str, tuple[float, ...] | None, bool]]) -> VectorIndex:
        """The saved index if it holds exactly DuckDB's vectors; else (a crash after a commit, a missing
        or damaged file) rebuilt from the embeddings DuckDB keeps."""
        vectors = [(label, vector) for label, _, vector, _ in rows if vector is not None]
        return VectorIndex.open(self.db_path.with_suffix(".hnsw"), self.embedder.dim, lambda: vectors,
                                expected_labels={label for label, _ in vectors})

    @staticmethod
    def _keyword_index(rows: list[tuple[int, str, tuple[float, ...] | None, bool]]) -> KeywordIndex:
        index = KeywordIndex()
        for label, text, _, _archived in rows:
            index.add(label, text)
        return index

    async def on_live(self) -> None:
        if self.config.aging_interval_s > 0:
            self.aging = asyncio.get_running_loop().create_task(self._age(), name="memory-aging")

    async def _age(self) -> None:
        """Archive what is old and unimportant (never anchors); archived memories stay searchable on request."""
        while True:
            await asyncio.sleep(self.config.aging_interval_s)

            def archive() -> list[str]:
                with self.store.transaction():
                    return self.store.archive_older_than(self.config.archive_after_days * 86400,
                                                         self.config.archive_below_importance, time.time())

            try:
                archived = await self.offload(archive)
            except Exception:
                log.exception("memory.aging_failed")
                continue
            if archived:
                log.info("memory.archived", count=len(archived), ids=archived[:20])

    async def teardown(self) -> None:
        if getattr(self, "aging", None) is not None:
            self.aging.cancel()
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
        turn = Turn(
            id=envelope.id,
            conversation=f"{event.platform}:{event.channel}",
            platform=event.platform,
            channel=event.channel,
            person_id=event.person_id,
            speaker=event.display_name,
            role="user",
            text=event.text,
            at=envelope.wall,
        )

        def write() -> None:
            with self.store.transaction(offset):
                self.store.add_turn(turn)
                self.store.upsert_person(
                    event.person_id, event.display_name, event.platform, envelope.wall
                )

        await self.offload(write)

    @on(Reply)
    async def on_reply(self, event: Reply) -> None:
        offset, envelope = self._fresh(), self.envelope
        if offset is None or envelope is None:
            return
        if event.status != "complete" or not event.text:
            await self.offload(self._commit_offset, offset)
            return
        turn = Turn(
            id=envelope.id,
            conversation=f"{event.platform}:{event.channel}",
            platform=event.platform,
            channel=event.channel,
            person_id=event.person_id,
            speaker="Hex",
            role="assistant",
            text=event.text,
            at=envelope.wall,
            meta={"reply_to": event.reply_to},
        )

        def write() -> None:
            with self.store.transaction(offset):
                self.store.add_turn(turn)

        await self.offload(write)

    def _commit_offset(self, offset: int) -> None:
        with self.store.transaction(offset):
            pass

    @on(ReplyMeta)
    async def on_meta(self, event: ReplyMeta) -> None:
        offset = self._fresh()
        if offset is None:
            return
        facts = [f for f in event.facts if f.text.strip()] if event.remember or event.facts else []
        vectors = await self._embed([f.text for f in facts]) if facts else []
        added: list[Memory] = []
        merged: list[str] = []

        def write() -> None:
            with self.store.transaction(offset):
                for i, (fact, vector) in enumerate(zip(facts, vectors, strict=True)):
                    twin = self._duplicate(vector, event.person_id)
                    if twin is not None:
                        self.store.update_memory(
                            twin.id,
                            turn_ids=tuple(dict.fromkeys((*twin.turn_ids, event.reply_to))),
                            importance=max(twin.importance, event.importance),
                        )
                        merged.append(twin.id)
                        continue
                    added.append(
                        self.store.add_memory(
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
                                embedding=vector,
                            )
                        )
                    )
                profile = event.profile
                if profile.hobbies or profile.tastes or profile.sentiment:
                    self.store.update_profile(
                        event.person_id,
                        hobbies=profile.hobbies,
                        tastes=profile.tastes,
                        sentiment=profile.sentiment,
                        at=time.time(),
                    )

        await self.offload(write)
        await self._index(added)
        for memory in added if self.config.suggestions else []:
            # What the Discord and web buttons (and `hexbus memory edit ID --approve`) act on.
            await self.publish(MemoryChanged(action="suggested", ids=(memory.id,), detail=memory.text),
                               causation=self.envelope.id if self.envelope else "")
        if merged:
            log.info("memory.merged_duplicates", ids=merged)

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

    async def changed(self, action: Action, ids: tuple[str, ...] = (), detail: str = "",
                      counts: dict[str, int] | None = None) -> None:
        """Report a change request's outcome; its causation is the request, which is how callers find it."""
        envelope = self.envelope
        await self.publish(MemoryChanged(action=action, ids=ids, detail=detail, counts=counts or {}),
                           causation=envelope.id if envelope else "")

    @on(MemoryAdd)
    async def on_add(self, event: MemoryAdd) -> None:
        offset, envelope = self._fresh(), self.envelope
        if offset is None or envelope is None:
            return
        text = event.text.strip()
        if not text:
            await self._refuse(offset, "an empty memory: give it some text")
            return
        vector = (await self._embed([text]))[0]
        memory = Memory(
            id=memory_id(envelope.id),
            kind=event.kind,
            text=text,
            source="manual",
            person_id=event.person_id,
            importance=min(1.0, max(0.0, event.importance)),
            tags=event.tags,
            embedding=vector,
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

    async def _existing(self, memory: str, offset: int) -> Memory | None:
        """The memory a request names; a request naming none is refused."""
        found = await self.offload(self.store.get, memory)
        if found is None:
            await self._refuse(offset, f"no memory {memory}", (memory,))
        return found

    @on(MemoryEdit)
    async def on_edit(self, event: MemoryEdit) -> None:
        offset = self._fresh()
        if offset is None:
            return
        existing = await self._existing(event.id, offset)
        if existing is None:
            return
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
        offset = self._fresh()
        if offset is None:
            return
        existing = await self._existing(event.id, offset)
        if existing is None:
            return
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
                await self._refuse(offset, f"only an owner may forget everything about a person "
                                           f"({event.by or 'unknown'} is not one)")
                return
            about = await self.offload(
                lambda: self.store.get_many(
                    self.store.candidates(
                        person_id=event.person_id, include_archived=True, include_pending=True
                    )
                )
            )
            await self._unindex(about)

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
        def delete() -> list[Memory]:
            with self.store.transaction(offset):
                return self.store.delete(list(dict.fromkeys(ids)))

        removed = await self.offload(delete)
        await self._unindex(removed)
        await self.offload(self.vectors.save)
        return removed

    # -- queries ----------------------------------------------------------------------

    @on(MemoryQuery)
    async def on_query(self, event: MemoryQuery) -> None:
        try:
            hits = await self.search(event)
        except Exception as exc:
            log.exception("memory.query_failed")
            await self.respond(MemoryResult(error=f"{type(exc).__name__}: {exc}"))
            return
        await self.respond(MemoryResult(hits=tuple(hits)))

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
        pool = max(self.config.candidates, 3 * query.k)  # from each index, before the hybrid ranking
        vector = (await self.offload(self.embedder.encode, [query.text]))[0]
        semantic = dict(
            await self.offload(self.vectors.search, vector, pool, allowed=allowed)
        )
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

    @on(MemoryExport)
    async def on_export(self, event: MemoryExport) -> None:
        def lines() -> tuple[int, bytes]:
            rows = [
                r for r in self.store.export() if event.include_archived or not r.get("archived")
            ]
            return len(rows), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()

        count, blob = await self.offload(lines)
        await self.respond(MemoryExported(count=count), blob=blob)
