"""Keeping the memories tidy in the background: aging, contradictions, rolling summaries and
the diary folder that people edit by hand.

The brain's judgements (does this fact contradict that one? what do these turns say?)
come in as plain values: the actor asks the brain over the bus and hands the answers here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec
import structlog

from actors.memory.bank import MemoryBank, memory_id
from actors.memory.config import MemoryConfig
from actors.memory.diaries import Entry, diary_id
from actors.memory.store import Memory, StoredTurn
from schemas import BrainTaskResult, Fact

SENTENCE_END = re.compile(r"(?<=[.!?…])(\s+)")
LOOP_WORDS = 4  # a repeated sentence shorter than this may be an abbreviation ("Dr.", "U.S.")


def _said(sentence: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", sentence.casefold()).split())


def without_repeats(text: str) -> str:
    """A model's summary with each sentence of ``LOOP_WORDS`` words or more kept only where
    it is first said, and a cut-off last fragment dropped when it only starts one of them
    again: a small model stuck in a loop ("the people said it was their fault." eight
    times over) says it once. Sentences compare by their words, case and punctuation aside;
    what separates the kept ones (a space, a new line) stays as it was."""
    pieces = SENTENCE_END.split(text.strip())  # sentence, separator, sentence, ...
    said = [_said(p) for p in pieces[::2]]
    kept: list[str] = []
    seen: set[str] = set()
    for i, (piece, words) in enumerate(zip(pieces[::2], said, strict=True)):
        long = len(words.split()) >= LOOP_WORDS
        last_cut = i == len(said) - 1 and piece[-1:] not in ".!?…\"')"
        restart = last_cut and any(
            earlier.split()[: len(words.split())] == words.split() for earlier in seen
        )
        if (long and words in seen) or (words and restart):
            continue
        if long:
            seen.add(words)
        if kept:
            kept.append(pieces[2 * i - 1])
        kept.append(piece)
    return "".join(kept)


log = structlog.get_logger("actors.memory")


class Check(msgspec.Struct, frozen=True):
    """A new fact waiting to be compared with the older facts about the same person."""

    fact: Memory
    rivals: tuple[Memory, ...]  # older facts close enough in meaning to contradict it


class DiarySync(msgspec.Struct, frozen=True, kw_only=True):
    """What one pass over the diary folder changed."""

    indexed: tuple[str, ...] = ()  # memory ids added or re-read from a file
    forgotten: tuple[str, ...] = ()  # memory ids whose file a person deleted


def quoted_in(fact: Fact, turns: Sequence[StoredTurn]) -> StoredTurn | None:
    """The turn a fact's quote comes from (whitespace and case aside)."""
    quote = " ".join(fact.quote.split()).casefold()
    return next((t for t in turns if quote and quote in " ".join(t.text.split()).casefold()), None)


class Curation:
    """Background upkeep, one small step per call, each step one transaction.

    Aging archives (never deletes) what is old and unimportant; a contradiction check
    supersedes the older of two facts the brain judged to disagree and keeps the pair
    for review; a summary folds a full batch of old turns into one memory (plus the facts
    a person stated in them) and marks the turns done, so each batch is summarised once;
    a diary pass re-reads edited files, adopts new ones and forgets deleted ones, and
    reports a file it cannot parse once, leaving its memory as it was. Methods block.
    """

    def __init__(self, bank: MemoryBank, config: MemoryConfig) -> None:
        self.bank = bank
        self.store = bank.store
        self.config = config
        self.diary_errors: dict[str, str] = {}  # file -> the problem already reported

    # -- aging ------------------------------------------------------------------------

    def age(self, now: float) -> list[str]:
        """Archive what is old and unimportant (never anchors); archived memories stay
        searchable on request. Returns the ids archived."""
        with self.store.transaction():
            archived = self.store.memories.archive_older_than(
                self.config.archive_after_days * 86400, self.config.archive_below_importance, now
            )
        if archived:
            log.info("memory.archived", count=len(archived), ids=archived[:20])
        return archived

    # -- contradictions ---------------------------------------------------------------

    def next_check(self) -> Check | None:
        """The oldest unchecked fact and its rivals; None when no fact is waiting."""
        waiting = self.store.memories.unchecked(1)
        if not waiting:
            return None
        fact = waiting[0]
        if fact.embedding is None or not fact.approved:
            return Check(fact, ())
        allowed = set(
            self.store.memories.candidates(
                person_id=fact.person_id, kinds=("fact",), include_superseded=False
            )
        ) - {fact.label}
        hits = self.bank.indexes.similar(fact.embedding, 3, allowed) if allowed else []
        close = [label for label, sim in hits if sim >= self.config.contradiction_similarity]
        rivals = [m for m in self.store.memories.get_many(close) if m.label < fact.label]
        return Check(fact, tuple(rivals))

    def settle(self, check: Check, contradicted: Sequence[Memory], *, at: float) -> list[Memory]:
        """Record the brain's verdicts: each contradicted rival superseded by the fact, and the
        fact checked. Returns the rivals superseded (none if the fact was forgotten meanwhile)."""
        fact = check.fact
        superseded: list[Memory] = []
        with self.store.transaction():
            if self.store.memories.get(fact.id) is None:
                return []
            for older in contradicted:
                if self.store.memories.get(older.id) is not None:
                    self.store.memories.record_contradiction(
                        older.id,
                        fact.id,
                        at=at,
                        note="the brain judged the newer fact to contradict it",
                    )
                    superseded.append(older)
            self.store.memories.update(fact.id, checked=True)
        for older in superseded:
            log.info("memory.superseded", older=older.id, newer=fact.id)
        return superseded

    # -- summaries --------------------------------------------------------------------

    def next_batch(self) -> list[StoredTurn]:
        """The oldest full batch of turns due for a summary; empty when none is (or summaries
        are off)."""
        if not self.config.summaries:
            return []
        return self.store.turns.unsummarized(
            keep=self.config.recent_turns, batch=self.config.summary_batch
        )

    def fold(self, turns: Sequence[StoredTurn], result: BrainTaskResult) -> list[Memory]:
        """Store the brain's summary of ``turns`` and the facts people stated in them (never
        Hex's own claims), and mark the turns summarised. Returns the memories stored."""
        if not turns:
            return []
        if result.error:
            log.warning(
                "memory.summary_failed",
                turns=len(turns),
                error=result.error,
                hint="the turns are marked done so one bad batch cannot stall the rest",
            )
        people = sorted({t.person_id for t in turns if t.role == "user" and t.person_id})
        imported = all(t.source == "import" for t in turns)
        summary = without_repeats(result.summary)
        texts = [summary] if summary else []
        vectors = self.bank.embed([*texts, *(f.text for f in result.facts)])
        first, last = turns[0], turns[-1]
        drafts: list[Memory] = []
        if summary:
            drafts.append(
                Memory(
                    id=memory_id(first.id, last.id, "summary"),
                    kind="summary",
                    text=summary,
                    source="import" if imported else "extracted",
                    person_id=people[0] if len(people) == 1 else "",
                    importance=0.4,
                    turn_ids=tuple(t.id for t in turns),
                    created=last.at,
                    embedding=vectors[0],
                )
            )
        facts: list[Memory] = []
        for i, (fact, vector) in enumerate(zip(result.facts, vectors[len(texts) :], strict=True)):
            source = quoted_in(fact, turns)
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
        with self.store.transaction():
            stored = [self.store.memories.add(m) for m in drafts]
            stored += self.bank.store_facts(facts)
            self.store.turns.mark_summarized([t.id for t in turns])
        self.bank.indexes.add(stored)
        if stored:
            log.info(
                "memory.summarized",
                conversation=first.conversation,
                turns=len(turns),
                ids=[m.id for m in stored],
            )
        return stored

    # -- diaries people edit ----------------------------------------------------------

    def sync_diaries(self) -> DiarySync:
        """Bring DuckDB and the indexes in line with the diary folder: edits re-indexed,
        deletions forgotten, files people added adopted. A file that does not parse is
        reported once and left as it is."""
        with self.bank.diary_lock:
            known = self.store.memories.diary_files()
            changes = self.bank.diaries.changes(known)
            for relpath, error in changes.errors:
                if self.diary_errors.get(relpath) != error:
                    self.diary_errors[relpath] = error
                    log.warning(
                        "memory.journal_unreadable",
                        file=relpath,
                        error=error,
                        hint="fix the front matter; the memory keeps its last good text meanwhile",
                    )
            indexed: list[str] = []
            # Changes before deletions: a file a person moved is one of each, and its memory
            # follows it.
            for relpath, entry, digest in changes.changed:
                self.diary_errors.pop(relpath, None)
                if (adopted := self._adopt(relpath, entry, digest)) is not None:
                    indexed.append(adopted)
            forgotten: list[str] = []
            for relpath in changes.deleted:
                gone = self.store.memories.by_diary(relpath)
                if gone is not None:
                    removed = self.bank.remove([gone.id])
                    forgotten += [m.id for m in removed]
                    log.info("memory.journal_deleted", file=relpath, ids=[m.id for m in removed])
        return DiarySync(indexed=tuple(indexed), forgotten=tuple(forgotten))

    def _adopt(self, relpath: str, entry: Entry, digest: str) -> str | None:
        """Index a new or edited file as its memory; the memory's id (None for an empty file)."""
        if not entry.text.strip():
            return None
        fields: dict[str, object] = dict(
            text=entry.text,
            tags=entry.tags,
            importance=entry.importance,
            person_id=entry.person_id,
            diary=relpath,
            diary_hash=digest,
            embedding=self.bank.embed([entry.text])[0],
        )
        with self.store.transaction():
            old = self.store.memories.by_diary(relpath)
            id = entry.id
            if old is None and (same := self.store.memories.get(entry.id)) is not None:
                if same.diary and (self.bank.diaries.root / same.diary).exists():
                    id = diary_id(relpath)  # a copy of another entry's file: a memory of its own
                else:
                    old = same  # the file was moved (or the row has no file yet): same memory
            if old is not None:
                new = self.store.memories.update(old.id, **fields)
            else:
                new = self.store.memories.add(
                    Memory(id=id, kind="journal", source="manual", created=entry.at, **fields)  # type: ignore[arg-type]
                )
        if old is not None:
            self.bank.indexes.remove([old])
        self.bank.indexes.add([new])
        log.info("memory.journal_indexed", file=relpath, id=new.id, edited=old is not None)
        return new.id
