"""Hybrid ranking: the promises rank() makes, checked on generated candidates (hypothesis)."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.memory.rank import Candidate, Scored, Weights, rank, recency

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
cosine = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
bm25 = st.floats(min_value=0.0, max_value=50.0, allow_nan=False)
age = st.floats(min_value=-60.0, max_value=10 * 365 * 86_400.0, allow_nan=False)
weight = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)


@st.composite
def candidates(draw: st.DrawFn, label: int | None = None) -> Candidate:
    return Candidate(
        label=draw(st.integers(0, 10_000)) if label is None else label,
        semantic=draw(cosine),
        keyword=draw(bm25),
        exact=draw(st.booleans()),
        age_s=draw(age),
        importance=draw(unit),
        confidence=draw(unit),
        archived=draw(st.booleans()),
        anchor=draw(st.booleans()),
        person=draw(st.booleans()),
        when=draw(st.booleans()),
    )


@st.composite
def batches(draw: st.DrawFn) -> list[Candidate]:
    """Candidates with distinct labels (a batch comes from one query over one index)."""
    labels = draw(st.lists(st.integers(0, 10_000), min_size=0, max_size=25, unique=True))
    return [draw(candidates(label)) for label in labels]


weightings = st.one_of(
    st.just(Weights()),
    st.builds(
        Weights,
        semantic=weight,
        keyword=weight,
        recency=weight,
        importance=weight,
        confidence=weight,
        exact_bonus=weight,
        fused=weight,
        person=weight,
        when=weight,
        rrf_k=st.floats(0.5, 200.0),
        recency_half_life_days=st.floats(0.01, 3650.0),
        low_confidence=unit,
    ),
)


def by_label(scored: list[Scored]) -> dict[int, Scored]:
    return {s.label: s for s in scored}


def pair(
    base: Candidate, others: list[Candidate], **changes: object
) -> tuple[Candidate, list[Candidate]]:
    """``base`` under a label no other candidate uses, changed by ``changes``, and the batch with it."""
    label = max([c.label for c in others] + [base.label]) + 1
    twin = msgspec.structs.replace(base, label=label, **changes)
    return twin, [*others, twin]


@settings(max_examples=300, deadline=None)
@given(batch=batches(), base=candidates(), weights=weightings, include=st.booleans())
def test_exact_match_never_ranks_below_an_otherwise_equal_fuzzy_one(
    batch: list[Candidate], base: Candidate, weights: Weights, include: bool
) -> None:
    fuzzy, batch = pair(base, batch, exact=False)
    exact, batch = pair(base, batch, exact=True)
    order = [s.label for s in rank(batch, weights, k=len(batch), include_archived=include)]
    if exact.label in order:
        assert order.index(exact.label) < order.index(fuzzy.label)
        # Even with the fuzzy twin given the lower label.
        swapped = [
            msgspec.structs.replace(c, label=-1) if c.label == fuzzy.label else c for c in batch
        ]
        order = [s.label for s in rank(swapped, weights, k=len(batch), include_archived=include)]
        assert order.index(exact.label) < order.index(-1)


@settings(max_examples=200, deadline=None)
@given(batch=batches(), weights=weightings, k=st.integers(0, 30))
def test_archived_candidates_only_come_back_when_asked(
    batch: list[Candidate], weights: Weights, k: int
) -> None:
    assert not any(
        s.label in {c.label for c in batch if c.archived} for s in rank(batch, weights, k=k)
    )
    everything = rank(batch, weights, k=len(batch), include_archived=True)
    assert {s.label for s in everything} == {c.label for c in batch}


@pytest.mark.parametrize(
    "field", ["semantic", "keyword", "importance", "confidence", "person", "when"]
)
@settings(max_examples=150, deadline=None)
@given(batch=batches(), base=candidates(), weights=weightings, data=st.data())
def test_score_never_falls_when_one_input_rises(
    field: str, batch: list[Candidate], base: Candidate, weights: Weights, data: st.DataObject
) -> None:
    values = {
        "semantic": cosine,
        "keyword": bm25,
        "importance": unit,
        "confidence": unit,
        "person": st.booleans(),
        "when": st.booleans(),
    }[field]
    low, high = sorted((data.draw(values), data.draw(values)))
    base = msgspec.structs.replace(base, archived=False)
    lower, batch = pair(base, batch, **{field: low})
    higher, batch = pair(base, batch, **{field: high})
    scores = by_label(rank(batch, weights, k=len(batch)))
    assert scores[higher.label].score >= scores[lower.label].score
    if scores[higher.label].score > scores[lower.label].score:
        order = [s.label for s in rank(batch, weights, k=len(batch))]
        assert order.index(higher.label) < order.index(lower.label)


@settings(max_examples=200, deadline=None)
@given(batch=batches(), base=candidates(), weights=weightings, ages=st.tuples(age, age))
def test_newer_never_scores_below_older(
    batch: list[Candidate], base: Candidate, weights: Weights, ages: tuple[float, float]
) -> None:
    newer_age, older_age = sorted(ages)
    base = msgspec.structs.replace(base, archived=False)
    newer, batch = pair(base, batch, age_s=newer_age)
    older, batch = pair(base, batch, age_s=older_age)
    scores = by_label(rank(batch, weights, k=len(batch)))
    assert scores[newer.label].score >= scores[older.label].score


@settings(max_examples=300, deadline=None)
@given(
    batch=batches(),
    weights=weightings,
    k=st.integers(-2, 30),
    include=st.booleans(),
    seed=st.randoms(),
)
def test_output_is_at_most_k_sorted_and_deterministic(
    batch: list[Candidate], weights: Weights, k: int, include: bool, seed: random.Random
) -> None:
    ranked = rank(batch, weights, k=k, include_archived=include)
    assert len(ranked) <= max(k, 0)
    keys = [(-s.score, not s.exact, s.label) for s in ranked]
    assert keys == sorted(keys)
    shuffled = list(batch)
    seed.shuffle(shuffled)
    assert rank(shuffled, weights, k=k, include_archived=include) == ranked
    eligible = [c for c in batch if include or not c.archived]
    assert len(ranked) == min(max(k, 0), len(eligible))
    if ranked and len(eligible) > len(ranked):  # nothing left out beats what came back
        full = rank(batch, weights, k=len(batch), include_archived=include)
        assert full[: len(ranked)] == ranked


@settings(max_examples=200, deadline=None)
@given(batch=batches(), weights=weightings)
def test_components_stay_in_unit_range_and_hedge_follows_confidence(
    batch: list[Candidate], weights: Weights
) -> None:
    confidence = {c.label: c.confidence for c in batch}
    for s in rank(batch, weights, k=len(batch), include_archived=True):
        for part in (s.semantic, s.keyword, s.recency, s.importance, s.confidence):
            assert 0.0 <= part <= 1.0
        assert s.hedge == (confidence[s.label] < weights.low_confidence)


def test_keyword_scores_are_relative_to_the_best_in_the_batch() -> None:
    ranked = by_label(
        rank([Candidate(label=1, keyword=8.0), Candidate(label=2, keyword=2.0)], Weights(), k=2)
    )
    assert ranked[1].keyword == 1.0 and ranked[2].keyword == 0.25


def test_exact_match_outranks_a_closer_paraphrase_with_default_weights() -> None:
    # A paraphrase up to about 0.3 closer in cosine (MiniLM's usual gap between a paraphrase
    # and the words themselves) still ranks below the exact words.
    fuzzy = Candidate(label=1, semantic=0.75, keyword=4.0)
    exact = Candidate(label=2, semantic=0.5, keyword=3.0, exact=True)
    assert [s.label for s in rank([fuzzy, exact], Weights(), k=2)] == [2, 1]


def test_low_confidence_memories_come_back_marked_to_hedge() -> None:
    ranked = by_label(
        rank(
            [Candidate(label=1, confidence=0.3), Candidate(label=2, confidence=0.9)], Weights(), k=2
        )
    )
    assert ranked[1].hedge and not ranked[2].hedge


def test_recency_halves_every_half_life_and_anchors_do_not_fade() -> None:
    day = 86_400.0
    assert recency(0.0, 30.0) == 1.0
    assert recency(30 * day, 30.0) == pytest.approx(0.5)
    assert recency(-5.0, 30.0) == 1.0
    assert recency(3650 * day, 30.0, anchor=True) == 1.0
    assert recency(float("nan"), 30.0) == 0.0


def test_nan_inputs_count_as_nothing() -> None:
    nan = float("nan")
    ranked = rank(
        [Candidate(label=1, semantic=nan, keyword=nan, importance=nan, confidence=nan)],
        Weights(),
        k=1,
    )
    assert (
        ranked[0].semantic
        == ranked[0].keyword
        == ranked[0].importance
        == ranked[0].confidence
        == 0.0
    )


def test_weights_are_checked_in_code_and_in_config() -> None:
    with pytest.raises(ValueError, match="semantic"):
        Weights(semantic=-0.1)
    with pytest.raises(ValueError, match="half_life"):
        Weights(recency_half_life_days=0.0)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"semantic": 0.5, "typo_weight": 1.0}, Weights)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"low_confidence": 1.5}, Weights)
    assert msgspec.convert({"keyword": 0.4}, Weights) == Weights(keyword=0.4)
