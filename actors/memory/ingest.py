"""Bringing things into memory: live turns, facts and profiles from ``chat.meta``, imported
history and uploaded documents."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal

import structlog

from actors.memory.bank import MemoryBank, memory_id
from actors.memory.config import MemoryConfig
from actors.memory.diaries import Entry
from actors.memory.documents import DocumentError, read_document
from actors.memory.importer import HistoryError, batches, parse_history
from actors.memory.moments import BEFORE, moments
from actors.memory.store import Memory, StoredTurn
from schemas import (
    ChatMessage,
    MemoryDocument,
    MemoryImport,
    MemoryImportFile,
    Reply,
    ReplyMeta,
)

log = structlog.get_logger("actors.memory")

EMBED_BATCH: Final = 256  # document chunks embedded between two progress reports


def speaker_person_id(speaker: str) -> str:
    """The person id of an imported speaker who came without one."""
    return "import:" + "-".join(speaker.casefold().split())


def live_turn(
    event: ChatMessage | Reply,
    *,
    event_id: str,
    at: float,
    speaker: str,
    role: Literal["user", "assistant"],
    meta: dict[str, str] | None = None,
) -> StoredTurn:
    """The stored turn of a live chat message or reply."""
    return StoredTurn(
        id=event_id,
        conversation=f"{event.platform}:{event.channel}",
        platform=event.platform,
        channel=event.channel,
        person_id=event.person_id,
        speaker=speaker,
        role=role,
        text=event.text,
        at=at,
        meta=meta or {},
    )


class Ingest:
    """Stores what arrives: each event's rows in one transaction with its offset, then indexed.

    Every method is safe to redo for the same event (ids derive from event and turn ids,
    and a stored id is kept, not doubled), which is what a retried handler does.
    Methods block; the actor calls them off the event loop.
    """

    def __init__(self, bank: MemoryBank, config: MemoryConfig) -> None:
        self.bank = bank
        self.store = bank.store
        self.config = config

    def message(
        self,
        event: ChatMessage,
        *,
        event_id: str,
        at: float,
        offset: int | None,
        remember: bool = True,
    ) -> list[Memory]:
        """A person's chat message: the turn, the person, and the turn as an episodic memory
        (only the history while ``remember``, the owner's or their own switch, is off). Hex's
        own initiative is none of theirs: her reply to it is kept, as any reply of hers."""
        if event.initiative:
            self.bank.commit_offset(offset)
            return []
        turn = live_turn(event, event_id=event_id, at=at, speaker=event.display_name, role="user")
        earlier = self.store.turns.latest(turn.conversation, limit=BEFORE, before=at)
        episodes = self.episodes([turn], moments([turn], earlier)) if remember else []
        with self.store.transaction(offset):
            self.store.turns.add(turn)
            self.store.people.upsert(event.person_id, event.display_name, event.platform, at)
            stored = [self.store.memories.add(m) for m in episodes]
        self.bank.indexes.add(stored)
        return stored

    def reply(self, event: Reply, *, event_id: str, at: float, offset: int | None) -> bool:
        """Hex's own finished reply, kept as history (never as memory); False for an unfinished one."""
        if event.status != "complete" or not event.text:
            self.bank.commit_offset(offset)
            return False
        turn = live_turn(
            event,
            event_id=event_id,
            at=at,
            speaker="Hex",
            role="assistant",
            meta={"reply_to": event.reply_to}
            | ({"recalled": " ".join(event.recalled)} if event.recalled else {}),
        )
        with self.store.transaction(offset):
            self.store.turns.add(turn)
        return True

    def episodes(
        self, turns: Sequence[StoredTurn], contexts: Mapping[str, str] | None = None
    ) -> list[Memory]:
        """The episodic memories of a person's turns (never Hex's own): verbatim, with the turn
        as provenance, indexed as their moment in ``contexts`` (by turn id) where given."""
        contexts = contexts or {}
        kept = [
            t
            for t in turns
            if t.role == "user" and len(t.text.split()) >= self.config.turn_min_words
        ]
        # Turns with a moment have a second vector, of the turn alone.
        alone = [t for t in kept if contexts.get(t.id)]
        vectors = self.bank.embed(
            [contexts.get(t.id) or t.text for t in kept]
            + [f"{t.speaker}: {t.text}" if t.speaker else t.text for t in alone]
        )
        said = dict(zip((t.id for t in alone), vectors[len(kept) :], strict=True))
        return [
            Memory(
                id=memory_id(t.id, "turn"),
                kind="turn",
                text=t.text,
                source="import" if t.source == "import" else "extracted",
                person_id=t.person_id,
                importance=self.config.turn_importance,
                quote=t.text,
                context=contexts.get(t.id, ""),
                turn_ids=(t.id,),
                created=t.at,
                embedding=vector,
                said_embedding=said.get(t.id),
            )
            for t, vector in zip(kept, vectors[: len(kept)], strict=True)
        ]

    def meta(
        self, event: ReplyMeta, *, at: float, offset: int | None, remember: bool = True
    ) -> list[Memory]:
        """What the brain noted about an exchange: facts, a diary entry for a notable one, and
        the person's profile. Returns the memories stored; none while ``remember`` is off."""
        if not remember:
            self.bank.commit_offset(offset)
            return []
        facts = [f for f in event.facts if f.text.strip()] if event.remember or event.facts else []
        vectors = self.bank.embed([f.text for f in facts])
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
        with self.bank.diary_lock:
            diary = (
                self.bank.write_diary(self.diary_entry(event, at), turn_ids=(event.reply_to,))
                if event.importance >= self.config.diary_importance
                else None
            )
            with self.store.transaction(offset):
                stored = self.bank.store_facts(drafts)
                if diary is not None:
                    stored.append(self.store.memories.add(diary))
                profile = event.profile
                if profile.hobbies or profile.tastes or profile.sentiment or profile.people:
                    self.store.people.update_profile(
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
        self.bank.indexes.add(stored)
        return stored

    def diary_entry(self, event: ReplyMeta, at: float) -> Entry:
        """The diary entry of a notable exchange, in Hex's own words."""
        turn = self.store.turns.get(event.reply_to)
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
            id=memory_id(event.reply_to, "journal"),  # the first name: ids never change
            at=at,
            text="\n".join(lines),
            title=title[:80],
            tags=event.tags,
            emotion=event.emotion,
            importance=event.importance,
            people=(event.person_id,) if event.person_id else (),
            person_id=event.person_id,
        )

    def history(self, event: MemoryImport, *, offset: int | None) -> dict[str, int]:
        """A batch of imported turns, kept under their own ids; turns known already are skipped.
        Returns the counts people are told."""
        turns = [
            StoredTurn(
                id=t.id,
                conversation=t.conversation,
                platform=t.conversation.split(":", 1)[0],
                channel=t.conversation.split(":", 1)[-1],
                person_id=t.person_id or speaker_person_id(t.speaker),
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
        known = self.store.turns.known([t.id for t in turns])
        fresh = [t for t in turns if t.id not in known]
        episodes = self.episodes(fresh, self._moments(turns))
        with self.store.transaction(offset):
            for turn in fresh:
                self.store.turns.add(turn)
                if turn.role == "user":
                    self.store.people.upsert(turn.person_id, turn.speaker, turn.platform, turn.at)
            stored = [self.store.memories.add(m) for m in episodes]
        self.bank.indexes.add(stored)
        return {
            "turns": len(fresh),
            "already_known": len(known),
            "indexed": len(episodes),
            "empty": len(event.turns) - len(turns),
        }

    def history_file(
        self,
        event: MemoryImportFile,
        raw: bytes,
        *,
        offset: int | None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[dict[str, int], list[str]]:
        """A history file's lines, parsed and imported in batches (each redone safely: a turn's
        id is kept once); the counts and, for every line skipped, ``"line N: reason"``."""
        try:
            turns, problems = parse_history(raw, event.name, event.assistants, event.first_line)
        except HistoryError as exc:
            raise self.bank.refuse(offset, str(exc)) from None
        parts = list(batches(turns, event.name, event.by))
        totals: dict[str, int] = {"bad_lines": len(problems)}
        done = 0
        for i, part in enumerate(parts):
            counts = self.history(part, offset=offset if i == len(parts) - 1 else None)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            done += len(part.turns)
            if progress is not None:
                progress(done, len(turns))
        return totals, problems

    def _moments(self, turns: Sequence[StoredTurn]) -> dict[str, str]:
        """The moments of imported turns: each conversation's in time order, continuing from
        what is stored of it already."""
        by_conversation: dict[str, list[StoredTurn]] = defaultdict(list)
        for turn in turns:
            by_conversation[turn.conversation].append(turn)
        found: dict[str, str] = {}
        for conversation, group in by_conversation.items():
            group.sort(key=lambda t: t.at)  # stable: file order among equal times
            earlier = self.store.turns.latest(conversation, limit=BEFORE, before=group[0].at)
            found |= moments(group, earlier)
        return found

    def document(
        self,
        event: MemoryDocument,
        data: bytes,
        *,
        event_id: str,
        at: float,
        offset: int | None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Memory]:
        """An uploaded document as searchable chunks, every chunk or none; raises
        :class:`~actors.memory.bank.Refused` for a damaged or unreadable upload. ``progress``
        hears (chunks embedded, chunks in all) as the embedding goes."""
        if event.sha256 and hashlib.sha256(data).hexdigest() != event.sha256:
            raise self.bank.refuse(
                offset, f"{event.name}: the upload arrived damaged (sha256 differs); send it again"
            )
        try:
            chunks = read_document(event.name, data, self.config.documents)
        except DocumentError as exc:
            log.warning("memory.document_refused", name=event.name, error=str(exc))
            raise self.bank.refuse(offset, str(exc)) from None
        vectors: list[tuple[float, ...]] = []
        for start in range(0, len(chunks), EMBED_BATCH):
            vectors += self.bank.embed([c.text for c in chunks[start : start + EMBED_BATCH]])
            if progress is not None:
                progress(len(vectors), len(chunks))
        memories = [
            Memory(
                id=memory_id(event_id, "doc", str(c.index)),
                kind="document",
                text=c.text,
                source="document",
                person_id=event.person_id,
                importance=0.5,
                quote="",
                document=f"{event.name} #{c.index + 1} ({c.where})",
                tags=event.tags,
                created=at,
                embedding=vector,
            )
            for c, vector in zip(chunks, vectors, strict=True)
        ]
        with self.store.transaction(offset):
            stored = [self.store.memories.add(m) for m in memories]
        self.bank.indexes.add(stored)
        self.bank.indexes.save()
        log.info("memory.document_stored", name=event.name, chunks=len(stored), bytes=len(data))
        return stored
