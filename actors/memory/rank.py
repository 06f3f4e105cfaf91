"""Hybrid ranking of memory candidates: semantic, keyword, recency, importance, confidence.

Each component is brought to [0, 1] and weighted; an exact keyword match adds
a bonus on top. Every weight is non-negative, so the score never falls when
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
    """Ranking weights (the memory config's ``ranking`` table); bounds are checked on decode."""

    semantic: NonNegative = 0.55
    keyword: NonNegative = 0.25
    recency: NonNegative = 0.08
    importance: NonNegative = 0.07
    confidence: NonNegative = 0.05
    exact_bonus: NonNegative = 0.3
    recency_half_life_days: Positive = 30.0
    low_confidence: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = (
        0.5  # below this, the brain hedges
    )

    def __post_init__(self) -> None:
        # Annotated bounds hold only on decode; this also guards Weights built in code.
        for name in ("semantic", "keyword", "recency", "importance", "confidence", "exact_bonus"):
            value = getattr(self, name)
            if not value >= 0.0 or math.isinf(value):
                raise ValueError(f"ranking weight {name} must be a finite number >= 0, got {value}")
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
    scored: list[Scored] = []
    w = weights
    for c in pool:
        semantic = _unit(c.semantic)
        keyword = _unit(c.keyword / top_keyword) if top_keyword > 0.0 else 0.0
        fresh = recency(c.age_s, w.recency_half_life_days, anchor=c.anchor)
        importance = _unit(c.importance)
        confidence = _unit(c.confidence)
        score = (
            w.semantic * semantic
            + w.keyword * keyword
            + w.recency * fresh
            + w.importance * importance
            + w.confidence * confidence
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
            )
        )
    scored.sort(key=lambda s: (-s.score, not s.exact, s.label))
    return scored[:k]
