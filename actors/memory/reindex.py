"""Bringing stored memories up to what search expects, a batch at a time, in the background.

Two kinds of work, both resumable and both invisible to search except in quality:

* **After the embedding model changes** (the store keeps which model embedded it), every
  memory is embedded again, in label order from a cursor the store keeps, so a restart goes
  on where it stopped. Until it is done, search mixes old and new vectors.
* **Turns stored before moments existed** (:mod:`actors.memory.moments`) get their moment
  and their second vector. A turn a person has edited keeps being indexed by its text.

A memory changed by a request while its batch was being embedded is left for that request's
own indexing: a batch never overwrites a newer row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
import structlog

from actors.memory.bank import MemoryBank
from actors.memory.moments import BEFORE, moment
from actors.memory.store import Memory

log = structlog.get_logger("actors.memory")

EMBEDDER: Final = "embedder"  # the setting naming the model the vectors came from
CURSOR: Final = "reembed_after"  # the last label embedded again by the current model
BATCH: Final = 128


class Reindex:
    """One step at a time (:meth:`step`), so the actor can run it off its loop between events."""

    def __init__(self, bank: MemoryBank, embedder: str) -> None:
        self.bank = bank
        self.store = bank.store
        self.embedder = embedder
        self.done = 0
        known = self.store.setting(EMBEDDER)
        if known != embedder:
            with self.store.transaction():
                if known is not None:  # a store from before the setting was embedded by its model
                    self.store.set_setting(CURSOR, "-1")
                    log.info("memory.reembed_started", was=known, now=embedder)
                self.store.set_setting(EMBEDDER, embedder)

    def _cursor(self) -> int | None:
        value = self.store.setting(CURSOR)
        return None if value is None else int(value)

    def left(self) -> int:
        """How many memories still wait."""
        cursor = self._cursor()
        if cursor is not None:
            return self.store.memories.after(cursor, 0)[1]
        return self.store.memories.without_moment(0)[1]

    def progress(self) -> str:
        """What ``hexbus status`` shows while work is left; empty when none is."""
        left = self.left()
        if not left:
            return ""
        what = "re-embedding" if self._cursor() is not None else "re-indexing"
        return f"{what} memories {self.done:,}/{self.done + left:,}"

    def step(self, limit: int = BATCH) -> int:
        """Bring up to ``limit`` memories up to date; how many (0 when nothing is left)."""
        cursor = self._cursor()
        if cursor is not None:
            batch, _ = self.store.memories.after(cursor, limit)
        else:
            batch, _ = self.store.memories.without_moment(limit)
        if not batch:
            if cursor is not None:
                self.store.set_setting(CURSOR, None)
                log.info("memory.reembed_finished", embedder=self.embedder, memories=self.done)
            return 0
        fresh = self._refreshed(batch)
        kept: list[Memory] = []
        with self.store.transaction():
            for old, new in zip(batch, fresh, strict=True):
                now = self.store.memories.get(old.id)
                if now is None or now.text != old.text or now.context != old.context:
                    continue  # forgotten or changed meanwhile: its own request indexed it
                kept.append(
                    self.store.memories.update(
                        old.id,
                        context=new.context,
                        embedding=new.embedding,
                        said_embedding=new.said_embedding,
                        updated=old.updated,  # not a write people made: aging is unchanged
                    )
                )
            if cursor is not None:
                self.store.set_setting(CURSOR, str(batch[-1].label))
        self.bank.indexes.add(kept)
        self.done += len(batch)
        return len(batch)

    def _refreshed(self, batch: Sequence[Memory]) -> list[Memory]:
        """The batch with moments where they apply and every vector made by the current model."""
        contexts: list[str] = []
        said: list[str | None] = []
        for m in batch:
            turn = self.store.turns.get(m.turn_ids[0]) if m.kind == "turn" and m.turn_ids else None
            if turn is not None and turn.text == m.text:
                earlier = self.store.turns.latest(turn.conversation, limit=BEFORE, before=turn.at)
                contexts.append(moment(turn, earlier))
                said.append(f"{turn.speaker}: {turn.text}" if turn.speaker else turn.text)
            else:  # not a turn, or one whose moment is gone: indexed by its text
                contexts.append(m.context or (m.text if m.kind == "turn" else ""))
                said.append(None)
        texts = [c or m.text for c, m in zip(contexts, batch, strict=True)]
        extra = [s for s in said if s is not None]
        vectors = self.bank.embed([*texts, *extra])
        alone = iter(vectors[len(texts) :])
        return [
            msgspec.structs.replace(
                m,
                context=c,
                embedding=v,
                said_embedding=next(alone) if s is not None else None,
            )
            for m, c, v, s in zip(batch, contexts, vectors[: len(texts)], said, strict=True)
        ]
