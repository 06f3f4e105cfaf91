"""Finding memories: hybrid retrieval (meaning and words, ranked), a person's profile, and the
review list of suggestions and contradictions."""

from __future__ import annotations

import time

import msgspec

from actors.memory.bank import MemoryBank
from actors.memory.config import MemoryConfig
from actors.memory.rank import Candidate, rank
from actors.memory.store import Memory
from schemas import (
    Contradiction,
    MemoryHit,
    MemoryQuery,
    MemoryResult,
    MemoryReviewed,
    PersonProfile,
)


def hit(m: Memory, score: float, hedge: bool) -> MemoryHit:
    """A memory as the bus carries it, with its provenance."""
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


class Search:
    """Answers queries: candidates from both indexes, ranked by :func:`actors.memory.rank.rank`.

    A query about a person sees what is about them and what is about nobody in particular,
    never what is about someone else; pending suggestions and superseded facts are never
    offered; archived memories only when asked. Anchors about the person come beside the
    hits. Returned hits are marked retrieved (``touch``). Methods block.
    """

    def __init__(self, bank: MemoryBank, config: MemoryConfig) -> None:
        self.bank = bank
        self.store = bank.store
        self.config = config

    def answer(self, query: MemoryQuery) -> MemoryResult:
        """The hits and, for a query about a person, their profile when one is known."""
        hits = self.query(query)
        kept = self.store.people.profile(query.person_id) if query.person_id else None
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
        return MemoryResult(hits=tuple(hits), profile=profile)

    def _eligible(self, query: MemoryQuery) -> set[int]:
        people = (query.person_id, "") if query.person_id else (None,)
        return {
            label
            for person in people
            for label in self.store.memories.candidates(
                person_id=person,
                kinds=query.kinds,
                tags=query.tags,
                since=query.since or None,
                until=query.until or None,
                include_archived=query.include_archived,
                include_superseded=False,
            )
        }

    def query(self, query: MemoryQuery, *, touch: bool = True) -> list[MemoryHit]:
        """The best ``query.k`` memories for the query, then the person's anchors."""
        allowed = self._eligible(query)
        if not allowed or not query.text.strip():
            return []
        # From each index, before the hybrid ranking.
        pool = max(self.config.candidates, 3 * query.k)
        vector = self.bank.embedder.encode([query.text])[0]
        semantic = dict(self.bank.indexes.similar(vector, pool, allowed))
        keyword = {
            label: (score, exact)
            for label, score, exact in self.bank.indexes.words(query.text, pool, allowed)
        }
        labels = list(semantic.keys() | keyword.keys())
        memories = {m.label: m for m in self.store.memories.get_many(labels)}
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
        hits = [hit(memories[s.label], s.score, s.hedge) for s in scored]
        if query.person_id and self.config.anchors:
            hits += self._anchors(query.person_id, {h.id for h in hits})
        if touch and hits:
            self.store.memories.mark_retrieved([h.id for h in hits], now)
        return hits

    def _anchors(self, person_id: str, have: set[str]) -> list[MemoryHit]:
        """Anchors (milestones, defining moments) about the person are always eligible for the
        context."""
        labels = self.store.memories.candidates(person_id=person_id, kinds=("anchor",))
        anchors = sorted(self.store.memories.get_many(labels), key=lambda m: -m.importance)
        low = self.config.weights.low_confidence
        return [hit(m, 0.0, m.confidence < low) for m in anchors if m.id not in have][
            : self.config.anchors
        ]

    def review(self, limit: int) -> MemoryReviewed:
        """Suggestions waiting for approval, the latest contradictions and what aging archived
        last, for people to review."""
        pending = [hit(m, 0.0, False) for m in self.store.memories.pending(limit)]
        found = self.store.memories.contradictions()[-limit:]
        archived, archived_total = self.store.memories.archived(limit)
        return MemoryReviewed(
            pending=tuple(pending),
            archived=tuple(hit(m, 0.0, False) for m in archived),
            archived_total=archived_total,
            contradictions=tuple(
                msgspec.convert(
                    [{k: "" if v is None else v for k, v in row.items()} for row in found],
                    list[Contradiction],
                )
            ),
        )
