"""The changes people ask for: add a memory, edit, approve or reject one, correct one, forget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec
import structlog

from actors.memory.bank import MemoryBank, memory_id
from actors.memory.config import MemoryConfig
from actors.memory.diaries import Entry
from actors.memory.store import Memory
from schemas import MemoryAdd, MemoryCorrect, MemoryEdit, MemoryForget

log = structlog.get_logger("actors.memory")


class Edits:
    """Applies people's requests, each in one transaction with its offset.

    A request that can change nothing (an empty text, an unknown id, a forget that only an
    owner may ask) raises :class:`~actors.memory.bank.Refused` with its offset committed.
    Redoing a request (a retried handler) leaves what its first try left. Methods block.
    """

    def __init__(self, bank: MemoryBank, config: MemoryConfig) -> None:
        self.bank = bank
        self.store = bank.store
        self.config = config

    def add(self, event: MemoryAdd, *, event_id: str, at: float, offset: int | None) -> Memory:
        """A manual memory; ``kind="journal"`` writes a diary file for it as well."""
        text = event.text.strip()
        if not text:
            raise self.bank.refuse(offset, "an empty memory: give it some text")
        importance = min(1.0, max(0.0, event.importance))
        with self.bank.diary_lock:
            if event.kind == "journal":
                memory = self.bank.write_diary(
                    Entry(
                        id=memory_id(event_id),
                        at=at,
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
                    id=memory_id(event_id),
                    kind=event.kind,
                    text=text,
                    source="manual",
                    person_id=event.person_id,
                    importance=importance,
                    tags=event.tags,
                    checked=event.kind != "fact",
                    embedding=self.bank.embed([text])[0],
                )
            with self.store.transaction(offset):
                stored = self.store.memories.add(memory)
        self.bank.indexes.add([stored])
        return stored

    def _target(self, id: str, offset: int | None) -> Memory:
        found = self.store.memories.get(id)
        if found is None:
            raise self.bank.refuse(offset, f"no memory {id}", (id,))
        return found

    def edit(
        self, event: MemoryEdit, *, offset: int | None
    ) -> Literal["approved", "edited", "rejected"]:
        """Change a memory's text, importance or tags, approve a suggestion, or reject it (gone)."""
        with self.bank.diary_lock:
            existing = self._target(event.id, offset)
            if event.approve is False:
                self.bank.remove([event.id], offset)
                return "rejected"
            changes = self._changes(event, existing)
            with self.store.transaction(offset):
                updated = self.store.memories.update(event.id, **changes)
        if "text" in changes:
            self.bank.indexes.remove([existing])
            self.bank.indexes.add([updated])
        return "approved" if event.approve else "edited"

    def _changes(self, event: MemoryEdit, existing: Memory) -> dict[str, object]:
        """The fields to change; a diary file is rewritten first (hold the diary lock), as for a
        new entry: the folder scan must never see an edit the store lacks."""
        changes: dict[str, object] = {}
        text = event.text.strip()
        if text and text != existing.text:
            changes["text"] = text
            changes["embedding"] = self.bank.embed([text])[0]
            changes["context"] = ""  # a person's edit is no longer the moment it was
            changes["said_embedding"] = None
        if event.importance >= 0:
            changes["importance"] = min(1.0, event.importance)
        if event.tags is not None:
            changes["tags"] = event.tags
        if event.approve:
            changes["approved"] = True
            changes["checked"] = (
                existing.kind != "fact"
            )  # now it counts: compare it with older facts
        if existing.diary and changes.keys() & {"text", "importance", "tags"}:
            entry, _ = self.bank.diaries.read(existing.diary)
            entry = msgspec.structs.replace(
                entry,
                text=text or entry.text,
                tags=entry.tags if event.tags is None else event.tags,
                importance=min(1.0, event.importance)
                if event.importance >= 0
                else entry.importance,
            )
            relpath, digest = self.bank.diaries.write(entry)
            changes["diary"], changes["diary_hash"] = relpath, digest
            if relpath != existing.diary:
                self.bank.diaries.remove(existing.diary)
        return changes

    def correct(
        self, event: MemoryCorrect, *, at: float, offset: int | None
    ) -> tuple[float, float]:
        """ "That's wrong": lower the memory's confidence (hits on it get hedged), or remove it.
        The correction is logged either way; returns (old confidence, new confidence)."""
        existing = self._target(event.id, offset)
        new = 0.0 if event.remove else round(existing.confidence * self.config.correction_factor, 4)
        if event.remove:
            with self.bank.diary_lock:
                self.bank.remove_diaries([existing])
                with self.store.transaction(offset):
                    self._log_correction(event, existing.confidence, new, at)
                    self.store.memories.delete([event.id])
            self.bank.indexes.remove([existing])
            self.bank.indexes.save()
            return existing.confidence, new
        with self.store.transaction(offset):
            if self._log_correction(event, existing.confidence, new, at):
                self.store.memories.update(event.id, confidence=new)
        return existing.confidence, new

    def _log_correction(self, event: MemoryCorrect, old: float, new: float, at: float) -> bool:
        # Keyed by the event's time: a redo of the same request is not a second correction.
        return self.store.memories.record_correction(
            event.id, by=event.by, note=event.note, old_confidence=old, new_confidence=new, at=at
        )

    def forget(
        self, event: MemoryForget, *, found: Sequence[str] = (), offset: int | None
    ) -> tuple[tuple[str, ...], dict[str, int]]:
        """Forget memories by id, those a query ``found``, or (owners only) everything about a
        person. Returns the ids removed and the rows removed per table."""
        counts: dict[str, int] = {}
        ids = [*event.ids, *found]
        if event.person_id:
            if event.by not in self.config.owners:
                log.warning("memory.forget_refused", by=event.by, person=event.person_id)
                raise self.bank.refuse(
                    offset,
                    f"only an owner may forget everything about a person "
                    f"({event.by or 'unknown'} is not one)",
                )
            about = self.store.memories.about(event.person_id)
            named = self.store.memories.get_many(list(dict.fromkeys(ids)))
            with self.bank.diary_lock:
                self.bank.remove_diaries(about + named)
                with self.store.transaction(offset):
                    counts = self.store.forget_person(event.person_id)
                    removed = self.store.memories.delete(list(dict.fromkeys(ids)))
            self.bank.indexes.remove(about + removed)
            self.bank.indexes.save()
        else:
            removed = self.bank.remove(ids, offset)
        counts["memories"] = counts.get("memories", 0) + len(removed)
        return tuple(m.id for m in removed), counts
