"""Finding memories: hybrid retrieval (meaning and words, ranked), a person's profile, and the
review list of suggestions and contradictions."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec

from actors.memory.bank import MemoryBank
from actors.memory.config import MemoryConfig
from actors.memory.names import named
from actors.memory.rank import Candidate, Scored, rank
from actors.memory.store import Memory
from actors.memory.store.turns import StoredTurn
from actors.memory.when import spans
from schemas import (
    Contradiction,
    ConversationInfo,
    ImportedTurn,
    MemoryHistory,
    MemoryHistoryResult,
    MemoryHit,
    MemoryQuery,
    MemoryResult,
    MemoryReviewed,
    PersonProfile,
)

PARTS = ("semantic", "keyword", "recency", "importance", "confidence", "fused")
BONUSES = ("person", "when", "exact")


def parts_of(scored: Scored) -> dict[str, float]:
    """What a ranked hit's score was made of: each component 0..1, and 1.0 per bonus it got."""
    parts = {name: round(float(getattr(scored, name)), 4) for name in PARTS}
    parts.update({name: 1.0 for name in BONUSES if getattr(scored, name)})
    return parts


def hit(m: Memory, score: float, hedge: bool, parts: dict[str, float] | None = None) -> MemoryHit:
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
        importance=m.importance,
        archived=m.archived,
        pending=not m.approved,
        parts=parts or {},
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
        hits = self.query(query, touch=not query.inspect)
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
        """What the query may find: its person's and general memories, its filters, and nothing
        from after the query's own time (a question asked in an imported past)."""
        people = (query.person_id, "") if query.person_id else (None,)
        until = min(t for t in (query.until, query.at) if t) if query.until or query.at else None
        return {
            label
            for person in people
            for label in self.store.memories.candidates(
                person_id=person,
                kinds=query.kinds,
                tags=query.tags,
                since=query.since or None,
                until=until,
                include_archived=query.include_archived,
                include_superseded=False,
            )
        }

    def gather(self, query: MemoryQuery) -> tuple[list[Candidate], dict[int, Memory]]:
        """The candidates for a query, with what ranking knows of each, and their memories.

        From each index the best ``candidates`` (at least 3 k); when the query names a time,
        also the best from that time; each marked when it is by someone the query names or
        from a time it names. Times count from the query's ``at`` (its conversation's time).
        """
        allowed = self._eligible(query)
        if not allowed or not query.text.strip():
            return [], {}
        asked = query.at or time.time()
        pool = max(self.config.candidates, 3 * query.k)
        vector = self.bank.embedder.encode([query.text])[0]
        semantic = dict(self.bank.indexes.similar(vector, pool, allowed))
        keyword = {
            label: (score, exact)
            for label, score, exact in self.bank.indexes.words(query.text, pool, allowed)
        }
        ranges = [
            (s.start.replace(tzinfo=UTC).timestamp(), s.end.replace(tzinfo=UTC).timestamp())
            for s in spans(query.text, datetime.fromtimestamp(asked, UTC).replace(tzinfo=None))
        ]
        within = self._within(ranges) & allowed
        if within:  # the best of that time too, though older or newer ones score higher
            semantic |= dict(self.bank.indexes.similar(vector, pool, within))
            for label, score, exact in self.bank.indexes.words(query.text, pool, within):
                keyword.setdefault(label, (score, exact))
        people = named(query.text, self.store.people.names())
        labels = list(semantic.keys() | keyword.keys())
        memories = {m.label: m for m in self.store.memories.get_many(labels, vectors=False)}
        candidates = [
            Candidate(
                label=label,
                semantic=semantic.get(label, 0.0),
                keyword=keyword.get(label, (0.0, False))[0],
                exact=keyword.get(label, (0.0, False))[1],
                age_s=max(0.0, asked - m.created),
                importance=m.importance,
                confidence=m.confidence,
                archived=m.archived,
                anchor=m.kind == "anchor",
                person=bool(m.person_id) and m.person_id in people,
                when=label in within,
            )
            for label, m in memories.items()
        ]
        return candidates, memories

    def _within(self, ranges: list[tuple[float, float]]) -> set[int]:
        """Labels of the memories created in any of ``ranges`` (start inclusive, end exclusive);
        the caller keeps those the query may see."""
        return {
            label
            for start, end in ranges
            for label in self.store.memories.candidates(
                since=start, until=end - 1e-6, include_archived=True, include_pending=True
            )
        }

    def query(self, query: MemoryQuery, *, touch: bool = True) -> list[MemoryHit]:
        """The best ``query.k`` memories for the query, then the person's anchors (or, for
        ``ids`` and ``browse``, memories as they are, unranked and not marked retrieved)."""
        if query.ids or query.browse:
            return self.listed(query)
        candidates, memories = self.gather(query)
        if not candidates:
            return []
        scored = rank(
            candidates,
            self.config.weights,
            k=max(1, query.k),
            include_archived=query.include_archived,
        )
        hits = [hit(memories[s.label], s.score, s.hedge, parts_of(s)) for s in scored]
        if query.person_id and self.config.anchors:
            hits += self._anchors(query.person_id, {h.id for h in hits})
        if touch and hits:
            self.store.memories.mark_retrieved([h.id for h in hits], time.time())
        return hits

    def listed(self, query: MemoryQuery) -> list[MemoryHit]:
        """``ids`` in their order, whatever their state, or the newest ``k`` the filters allow;
        a query's person sees theirs and general ones, never someone else's."""
        low = self.config.weights.low_confidence
        if query.ids:
            found = self.store.memories.get_many(list(query.ids[:500]), vectors=False)
            return [
                hit(m, 0.0, m.confidence < low)
                for m in found
                if not query.person_id or m.person_id in (query.person_id, "")
            ]
        # What a search may find (superseded facts are under the review's contradictions).
        labels = sorted(self._eligible(query), reverse=True)[: max(1, min(query.k, 500))]
        return [
            hit(m, 0.0, m.confidence < low)
            for m in self.store.memories.get_many(labels, vectors=False)
        ]

    def history(self, request: MemoryHistory) -> MemoryHistoryResult:
        """A conversation's stored turns, or the conversations under a prefix."""
        limit = max(1, min(request.limit, 500))
        if request.prefix:
            found = self.store.turns.conversations(request.prefix, limit)
            return MemoryHistoryResult(
                conversations=tuple(msgspec.convert(found, list[ConversationInfo]))
            )
        turns = self.store.turns.latest(
            request.conversation,
            limit=limit + 1,
            before=request.before or None,
            before_id=request.before_id,
        )
        more = len(turns) > limit
        return MemoryHistoryResult(turns=tuple(_imported(t) for t in turns[-limit:]), more=more)

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


def _imported(turn: StoredTurn) -> ImportedTurn:
    return ImportedTurn(
        id=turn.id,
        conversation=turn.conversation,
        speaker=turn.speaker,
        text=turn.text,
        at=turn.at,
        person_id=turn.person_id,
        role=turn.role,
        meta=turn.meta,
    )
