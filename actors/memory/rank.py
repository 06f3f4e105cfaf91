"""Hybrid ranking of memory candidates: meaning, words, who, when, recency, importance, confidence.

Each component is brought to [0, 1] and weighted; an exact keyword match adds
a bonus on top. Meaning and words count twice: as scores (cosine; BM25 over the
batch's best) and as reciprocal rank fusion of their two rankings, which no score
scale can skew. ``person``: the memory is by or about someone the query names;
``when``: it is from a time the query names. Every weight is non-negative, so the score never falls when
one input improves and the others stay put (tests/actors/memory/test_rank.py
checks that and the other promises with hypothesis).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated

import msgspec

NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
Positive = Annotated[float, msgspec.Meta(gt=0.0)]
SECONDS_PER_DAY = 86_400.0


class Weights(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Ranking weights (the memory config's ``ranking`` table); bounds are checked on decode.

    keyword, fused, person, when, recency and exact_bonus are fitted on bench/recall_data
    (``python bench/recall.py --fit``: coordinate ascent with semantic as the scale, each
    history held out in turn scoring within 0.01 of the fit on all): words count through
    the rank fusion and the exact bonus, not as a raw score. importance and confidence do
    not vary in imported history, so they keep their earlier share of semantic.
    """

    semantic: NonNegative = 1.0
    keyword: NonNegative = 0.0
    recency: NonNegative = 0.08
    importance: NonNegative = 0.13
    confidence: NonNegative = 0.09
    exact_bonus: NonNegative = 0.3
    fused: NonNegative = 0.3  # reciprocal rank fusion of the semantic and keyword rankings
    person: NonNegative = 0.1
    when: NonNegative = 0.2
    rrf_k: Positive = 60.0
    recency_half_life_days: Positive = 30.0
    low_confidence: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = (
        0.5  # below this, the brain hedges
    )

    def __post_init__(self) -> None:
        # Annotated bounds hold only on decode; this also guards Weights built in code.
        for name in (
            "semantic",
            "keyword",
            "recency",
            "importance",
            "confidence",
            "exact_bonus",
            "fused",
            "person",
            "when",
        ):
            value = getattr(self, name)
            if not value >= 0.0 or math.isinf(value):
                raise ValueError(f"ranking weight {name} must be a finite number >= 0, got {value}")
        if not 0.0 < self.rrf_k < math.inf:
            raise ValueError(f"rrf_k must be > 0, got {self.rrf_k}")
        if not 0.0 < self.recency_half_life_days < math.inf:
            raise ValueError(
                f"recency_half_life_days must be > 0, got {self.recency_half_life_days}"
            )
        if not 0.0 <= self.low_confidence <= 1.0:
            raise ValueError(f"low_confidence must be within 0..1, got {self.low_confidence}")


class Candidate(msgspec.Struct, kw_only=True):
    """One memory found by vector or keyword search, with what ranking needs to know of it."""

    label: int
    semantic: float = 0.0  # cosine similarity; 0 when vector search did not find it
    keyword: float = 0.0  # raw BM25 score; 0 when keyword search did not find it
    exact: bool = False  # the keyword index matched the query exactly
    age_s: float = 0.0
    importance: float = 0.5  # 0..1
    confidence: float = 1.0  # 0..1
    archived: bool = False
    anchor: bool = False
    person: bool = False  # by or about someone the query names
    when: bool = False  # from a time the query names


class Scored(msgspec.Struct, frozen=True, kw_only=True):
    """A ranked candidate: its score, whether to hedge, and the components (each 0..1)."""

    label: int
    score: float
    hedge: bool
    exact: bool
    anchor: bool
    semantic: float
    keyword: float
    recency: float
    importance: float
    confidence: float
    fused: float = 0.0
    person: bool = False
    when: bool = False


def _unit(x: float) -> float:
    """Clamp to [0, 1]; NaN counts as 0 so one bad row cannot poison the order."""
    return min(1.0, x) if x > 0.0 else 0.0


def recency(age_s: float, half_life_days: float, *, anchor: bool = False) -> float:
    """1 for now, halving every half-life. Anchors define who the companion is and never fade."""
    if anchor:
        return 1.0
    if math.isnan(age_s):
        return 0.0
    age = age_s if age_s > 0.0 else 0.0  # clock skew can make a memory look younger than now
    return math.exp2(-age / (half_life_days * SECONDS_PER_DAY))


def _ranks(pool: list[Candidate], value: str) -> dict[int, int]:
    """1-based rank of each candidate with a positive ``value``, best first; equal values share
    the best rank of their group, so a candidate's rank never depends on its label."""
    values = sorted(
        (v for c in pool if (v := getattr(c, value)) > 0.0 and not math.isinf(v)), reverse=True
    )
    first: dict[float, int] = {}
    for i, v in enumerate(values, start=1):
        first.setdefault(v, i)
    return {c.label: first[v] for c in pool if (v := getattr(c, value)) in first}


def _fusion(pool: list[Candidate], k: float) -> dict[int, float]:
    """Reciprocal rank fusion of the semantic and keyword rankings, scaled to [0, 1] (1 for the
    first of both)."""
    semantic, keyword = _ranks(pool, "semantic"), _ranks(pool, "keyword")
    top = 2.0 / (k + 1.0)
    return {
        c.label: (
            (1.0 / (k + semantic[c.label]) if c.label in semantic else 0.0)
            + (1.0 / (k + keyword[c.label]) if c.label in keyword else 0.0)
        )
        / top
        for c in pool
    }


def rank(
    candidates: Iterable[Candidate], weights: Weights, *, k: int, include_archived: bool = False
) -> list[Scored]:
    """The best ``k`` candidates by hybrid score, highest first.

    Keyword scores are divided by the largest in this batch. Archived candidates
    are dropped unless ``include_archived``. Ties go to the exact match, then to
    the lower label, so the order is the same on every run.
    """
    if k < 1:
        return []
    pool = [c for c in candidates if include_archived or not c.archived]
    top_keyword = max((c.keyword for c in pool if 0.0 < c.keyword < math.inf), default=0.0)
    w = weights
    fusion = _fusion(pool, w.rrf_k) if w.fused > 0.0 else {}
    scored: list[Scored] = []
    for c in pool:
        semantic = _unit(c.semantic)
        keyword = _unit(c.keyword / top_keyword) if top_keyword > 0.0 else 0.0
        fused = fusion.get(c.label, 0.0)
        fresh = recency(c.age_s, w.recency_half_life_days, anchor=c.anchor)
        importance = _unit(c.importance)
        confidence = _unit(c.confidence)
        score = (
            w.semantic * semantic
            + w.keyword * keyword
            + w.recency * fresh
            + w.importance * importance
            + w.confidence * confidence
            + w.fused * fused
            + (w.person if c.person else 0.0)
            + (w.when if c.when else 0.0)
            + (w.exact_bonus if c.exact else 0.0)
        )
        scored.append(
            Scored(
                label=c.label,
                score=score,
                hedge=confidence < w.low_confidence,
                exact=c.exact,
                anchor=c.anchor,
                semantic=semantic,
                keyword=keyword,
                recency=fresh,
                importance=importance,
                confidence=confidence,
                fused=fused,
                person=c.person,
                when=c.when,
            )
        )
    scored.sort(key=lambda s: (-s.score, not s.exact, s.label))
    return scored[:k]
