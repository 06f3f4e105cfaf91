"""What the memory actor's parts share: the store, the indexes, the embedder and the diaries.

Plain library code, no bus: every method blocks, and the actor calls them off the
event loop.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import structlog

from actors.memory.diaries import Diaries, DiaryError, Entry
from actors.memory.embed import Embedder
from actors.memory.index import Indexes
from actors.memory.store import Memory, MemoryStore, Source

log = structlog.get_logger("actors.memory")


def memory_id(*parts: str) -> str:
    """A memory id derived from what it came from (event ids, turn ids), so a redo finds it."""
    return "m_" + hashlib.blake2b("/".join(parts).encode(), digest_size=8).hexdigest()


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return float(x @ y / max(1e-9, float(np.linalg.norm(x) * np.linalg.norm(y))))


class Refused(Exception):
    """A request that changes nothing, with the reason people are told.

    Raised after its offset is committed, so it is answered once and never redone.
    """

    def __init__(self, detail: str, ids: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.ids = ids


class MemoryBank:
    """The memories as one thing: rows in DuckDB, their vectors and words, their diary files.

    Promises: rows change only inside a store transaction (with the event's offset when
    one is given); the indexes follow each commit; a diary file is written before its row
    is committed and removed before its row is deleted, both under :attr:`diary_lock`,
    which the folder scan holds too, so a scan never takes Hex's half-done write for a
    person's edit (a crash between leaves what the scan repairs: a file it adopts, a row
    whose file is gone).
    """

    def __init__(
        self,
        store: MemoryStore,
        indexes: Indexes,
        embedder: Embedder,
        diaries: Diaries,
        *,
        duplicate_similarity: float,
    ) -> None:
        self.store = store
        self.indexes = indexes
        self.embedder = embedder
        self.diaries = diaries
        self.duplicate_similarity = duplicate_similarity
        self.diary_lock = threading.RLock()

    @classmethod
    def open(
        cls, path: Path, embedder: Embedder, diary_dir: Path, *, duplicate_similarity: float
    ) -> MemoryBank:
        """Open the store at ``path`` (:class:`StoreError` when it cannot be) and its indexes
        beside it, rebuilt from the store when they are missing, damaged or behind."""
        store = MemoryStore(path)
        try:
            indexes = Indexes.open(
                path.with_suffix(".hnsw"),
                embedder.dim,
                store.memories.all_for_index(),
                store.memories.said_for_index(),
            )
        except BaseException:
            store.close()
            raise
        return cls(
            store, indexes, embedder, Diaries(diary_dir), duplicate_similarity=duplicate_similarity
        )

    def close(self) -> None:
        """Save the vector index (so the next start need not rebuild it) and close the store."""
        try:
            self.indexes.save()
        finally:
            self.store.close()

    def embed(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        return self.embedder.vectors(texts)

    def commit_offset(self, offset: int | None) -> None:
        """Record an event that changes nothing as applied."""
        if offset is not None:
            with self.store.transaction(offset):
                pass

    def refuse(self, offset: int | None, detail: str, ids: tuple[str, ...] = ()) -> Refused:
        """Commit the offset of a request that changes nothing; the exception to raise for it."""
        self.commit_offset(offset)
        return Refused(detail, ids)

    def store_facts(self, drafts: Sequence[Memory]) -> list[Memory]:
        """Inside a transaction: new facts stored, near-duplicates merged into the fact they repeat
        (keeping both provenances). Returns the memories stored (a fact stored already, by a
        first try of the same event, counts as stored)."""
        added: list[Memory] = []
        for draft in drafts:
            if draft.embedding is None:
                raise ValueError(f"fact {draft.id} has no embedding")
            if (same := self.store.memories.get(draft.id)) is not None:
                added.append(same)
                continue
            twin = self._duplicate(draft.embedding, draft.person_id)
            if twin is None:
                twin = next(
                    (
                        m
                        for m in added
                        if m.person_id == draft.person_id
                        and m.embedding is not None
                        and cosine(m.embedding, draft.embedding) >= self.duplicate_similarity
                    ),
                    None,
                )
            if twin is not None:
                self.store.memories.update(
                    twin.id,
                    turn_ids=tuple(dict.fromkeys((*twin.turn_ids, *draft.turn_ids))),
                    importance=max(twin.importance, draft.importance),
                )
                log.info("memory.merged_duplicate", into=twin.id, text=draft.text[:80])
                continue
            added.append(self.store.memories.add(draft))
        return added

    def _duplicate(self, vector: tuple[float, ...], person_id: str) -> Memory | None:
        allowed = set(
            self.store.memories.candidates(
                person_id=person_id, kinds=("fact",), include_pending=True, include_superseded=False
            )
        )
        if not allowed:
            return None
        for label, similarity in self.indexes.similar(vector, 1, allowed):
            if similarity >= self.duplicate_similarity:
                found = self.store.memories.get_many([label])
                return found[0] if found else None
        return None

    def write_diary(
        self, entry: Entry, *, source: Source = "extracted", turn_ids: tuple[str, ...] = ()
    ) -> Memory:
        """Write the entry's file and return the memory to commit for it (hold :attr:`diary_lock`
        until that commit). The file goes first: a crash before the commit leaves a file the
        folder scan adopts, never a row whose file is missing."""
        relpath, digest = self.diaries.write(entry)
        return Memory(
            id=entry.id,
            kind="journal",
            text=entry.text,
            source=source,
            person_id=entry.person_id,
            importance=entry.importance,
            quote="",
            turn_ids=turn_ids,
            tags=entry.tags,
            created=entry.at,
            diary=relpath,
            diary_hash=digest,
            embedding=self.embed([entry.text])[0],
        )

    def remove_diaries(self, memories: Sequence[Memory]) -> None:
        for m in memories:
            if m.diary:
                try:
                    self.diaries.remove(m.diary)
                except DiaryError as exc:
                    log.warning("memory.journal_remove_failed", file=m.diary, error=str(exc))

    def remove(self, ids: Sequence[str], offset: int | None = None) -> list[Memory]:
        """Forget memories: diary files, rows (with the offset) and index entries; the rows removed."""
        unique = list(dict.fromkeys(ids))
        with self.diary_lock:
            # Diary files go first: a crash between leaves a row without a file, which the
            # folder scan deletes; the other order would leave a file the scan adopts again,
            # a forgotten memory reborn.
            self.remove_diaries(self.store.memories.get_many(unique))
            with self.store.transaction(offset):
                removed = self.store.memories.delete(unique)
        self.indexes.remove(removed)
        self.indexes.save()
        return removed
