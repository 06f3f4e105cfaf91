"""The BM25 keyword index, and both indexes together as the memory actor keeps them."""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from structlog.testing import capture_logs

from actors.memory import keyword
from actors.memory.index import Indexes
from actors.memory.keyword import KeywordIndex
from actors.memory.store import Memory
from tests.support.vectors import DIM, embedding_like, rebuilds

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# -- keyword index -------------------------------------------------------------------


@pytest.fixture
def keywords() -> KeywordIndex:
    k = KeywordIndex()
    k.add(1, "I adopted a cat named Miso last spring.")
    k.add(2, "The neighbour's dog chased a cat up the tree")
    k.add(3, "Miso soup recipe: dashi, tofu, miso paste")
    k.add(4, "To be, or not to be: that is the question.")
    k.add(5, "We talked about SPRING plans & travel!")
    return k


def test_exact_matches_come_first_and_are_flagged(keywords: KeywordIndex) -> None:
    hits = keywords.search("cat named Miso", 10)
    assert hits[0][:1] == (1,) and hits[0][2] is True
    assert {h[0]: h[2] for h in hits} == {1: True, 2: False, 3: False}
    assert all(h[1] > 0 for h in hits)


def test_case_and_punctuation_do_not_matter(keywords: KeywordIndex) -> None:
    assert keywords.search("spring-plans?", 5)[0] == keywords.search("spring plans", 5)[0]
    assert keywords.search("spring plans", 5)[0][::2] == (5, True)
    assert [h[0] for h in keywords.search("MISO", 5)] == [3, 1]  # more mentions, shorter text


def test_a_phrase_of_stopwords_matches_as_a_phrase(keywords: KeywordIndex) -> None:
    assert keywords.search("to be or not to be", 5) == [(4, 0.0, True)]
    assert keywords.search("or the", 5) == []


def test_removed_and_replaced_texts_leave_the_results(keywords: KeywordIndex) -> None:
    assert keywords.remove(1) and not keywords.remove(1)
    assert 1 not in {h[0] for h in keywords.search("cat", 5)}
    keywords.add(2, "a parrot now")
    assert keywords.search("dog", 5) == [] and keywords.search("parrot", 5)[0][0] == 2
    assert (
        keywords.search("zebra", 5) == []
        and keywords.search("", 5) == []
        and keywords.search("cat", 0) == []
    )


def test_allowed_limits_keyword_hits(keywords: KeywordIndex) -> None:
    assert [h[0] for h in keywords.search("miso", 5, allowed={1, 9})] == [1]
    assert keywords.search("miso", 5, allowed=set()) == []


def test_changes_are_committed_once_by_the_next_search(keywords: KeywordIndex) -> None:
    assert keywords.pending and keywords.refreshes == 0
    keywords.search("cat", 3)
    keywords.search("dog", 3)
    assert keywords.refreshes == 1 and not keywords.pending
    keywords.add(6, "a cat video")
    keywords.add(7, "another cat video")
    keywords.remove(6)
    assert keywords.pending and keywords.refreshes == 1
    assert [h[0] for h in keywords.search("video", 3)] == [7]
    assert keywords.refreshes == 2


@pytest.mark.slow
def test_every_search_sees_the_adds_and_removals_before_it() -> None:
    k = KeywordIndex()
    for label in range(200):
        k.add(label, f"note {label} about the garden")
        assert k.search(f"note {label}", 1)[0][::2] == (label, True)
        if label % 3 == 0:
            assert k.remove(label) and label not in k
            assert label not in {h[0] for h in k.search(f"note {label}", 200)}
    assert len(k) == 133 and 1 in k and 0 not in k
    assert {h[0] for h in k.search("garden", 500)} == {i for i in range(200) if i % 3}


def test_glue_words_keep_their_places_between_scored_words() -> None:
    k = KeywordIndex()
    k.add(1, "to see or not to be")
    k.add(2, "Not to be outdone: a to-be list")
    assert [h[0] for h in k.search("not to be", 5)] == [1, 2]
    assert [h[0] for h in k.search("to be", 5)] == [1, 2]
    assert [h[0] for h in k.search("or not to", 5)] == [1]
    assert [h[0] for h in k.search("to or", 5)] == []  # "see" stands between them
    assert [h[0] for h in k.search("a to be", 5)] == [2]
    assert max(len(w.encode()) for w in keyword.STOPWORDS) < len(keyword._GAP)


def test_ties_break_by_label_at_the_cut() -> None:
    k = KeywordIndex()
    for label in (9, 3, 7, 1, 5):
        k.add(label, "same words here")
    assert [h[0] for h in k.search("words", 3)] == [1, 3, 5]


def test_a_new_text_in_10k_is_searchable_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(20_000)]
    k = KeywordIndex()
    started = time.perf_counter()
    for label in range(10_000):
        k.add(label, " ".join(rng.choices(vocab, k=25)) + " and then we talked about music.")
    k.refresh()
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    k.add(10_000, "one more: w1 w2")  # what a live turn costs: one add, one commit on the search
    hits = k.search("w1 w2", 5)
    searchable_s = time.perf_counter() - started
    assert hits[0][::2] == (10_000, True)
    with capsys.disabled():
        print(
            f"\nkeyword index, 10k texts: load {load_s * 1e3:.0f} ms,"
            f" add to searchable {searchable_s * 1e3:.1f} ms (commit {k.last_refresh_s * 1e3:.1f} ms)"
        )
    assert searchable_s < 0.5  # ~10 ms on 2 busy cores; bench/memory.py measures 1M


def test_keyword_search_matches_word_forms_by_their_stem(keywords: KeywordIndex) -> None:
    keywords.add(900, "Maya went hiking in the Pentlands last weekend")
    hits = keywords.search("does she hike?", 5)
    assert hits and hits[0][0] == 900
    assert not hits[0][
        2
    ]  # "does" (stem "doe") and "she" are not in it; "hike" alone would be exact


# -- against a plain model of which texts hold which words ---------------------------------

VOCAB = ["apple", "river", "rivers", "violin", "tiger", "lantern", "the", "of", "to"]
STEM = {"rivers": "river", "the": "", "of": "", "to": ""}  # stopwords have no stem
# How a search may meet ``allowed``: a filter in the query; hits fetched and then checked,
# fetching more while too few are allowed; or fetching given up for the filter (the module's
# costs, estimate and number of fetches, set to reach each path).
FETCH_ONE = {"_FILTER_US_PER_LABEL": math.inf, "_fetch_for": lambda k, allowed, indexed: 1}
PATHS: dict[str, dict[str, object]] = {
    "filter": {"_FILTER_US_PER_LABEL": 0.0},
    "fetch": {"_FILTER_US_PER_LABEL": math.inf},
    "fetch more": FETCH_ONE | {"_FETCHES": 99},
    "fetch, then filter": FETCH_ONE | {"_FETCHES": 1},
}


def stems(text: list[str]) -> set[str]:
    return {STEM.get(w, w) for w in text} - {""}


class KeywordIndexAgainstModel(RuleBasedStateMachine):
    """Adds, replacements, removals and searches in any order, checked against a dict of texts:
    every search sees every change before it, finds exactly the texts holding a query term
    (or the phrase), flags the exact ones, and any k and ``allowed`` cut the same ranking."""

    def __init__(self) -> None:
        super().__init__()
        self.index = KeywordIndex()
        self.texts: dict[int, list[str]] = {}

    @rule(label=st.integers(0, 12), text=st.lists(st.sampled_from(VOCAB), max_size=5))
    def add(self, label: int, text: list[str]) -> None:
        self.index.add(label, ", ".join(text).capitalize() + "!")
        self.texts[label] = text

    @rule(label=st.integers(0, 12))
    def remove(self, label: int) -> None:
        assert self.index.remove(label) == (label in self.texts)
        self.texts.pop(label, None)

    @rule(
        query=st.lists(st.sampled_from(VOCAB), min_size=1, max_size=3),
        k=st.integers(1, 4),
        allowed=st.none() | st.sets(st.integers(0, 14)),
        path=st.sampled_from(sorted(PATHS)),
    )
    def search(self, query: list[str], k: int, allowed: set[int] | None, path: str) -> None:
        everything = self.index.search(" ".join(query), 100)
        if wanted := stems(query):
            holding = {label for label, text in self.texts.items() if wanted & stems(text)}
            assert {h[0] for h in everything} == holding
            assert all(h[2] == (wanted <= stems(self.texts[h[0]])) and h[1] > 0 for h in everything)
        else:
            phrase = f" {' '.join(query)} "
            holding = {
                label for label, text in self.texts.items() if phrase in f" {' '.join(text)} "
            }
            assert everything == [(label, 0.0, True) for label in sorted(holding)]
        assert everything == sorted(everything, key=lambda h: (not h[2], -h[1], h[0]))
        with pytest.MonkeyPatch.context() as patch:
            for name, value in PATHS[path].items():
                patch.setattr(keyword, name, value)
            some = self.index.search(" ".join(query), k, allowed=allowed)
        assert some == [h for h in everything if allowed is None or h[0] in allowed][:k]

    @invariant()
    def holds_the_labels_of_the_model(self) -> None:
        assert len(self.index) == len(self.texts) and all(
            label in self.index for label in self.texts
        )


KeywordIndexAgainstModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=25, deadline=None
)
test_keyword_index_follows_a_plain_model = KeywordIndexAgainstModel.TestCase


# -- both, as the memory actor keeps them ------------------------------------------------------


def test_indexes_open_from_store_rows_and_follow_adds_and_removals(tmp_path: Path) -> None:
    vectors = embedding_like(4, DIM, seed=3)
    rows = [
        (i, f"memory number {i} about lanterns", tuple(map(float, v)), False)
        for i, v in enumerate(vectors)
    ]
    path = tmp_path / "memory.hnsw"
    with capture_logs() as logs:
        indexes = Indexes.open(path, DIM, rows)
    assert [(e["reason"], Path(e["path"]).name) for e in rebuilds(logs)] == [
        ("missing", "memory.hnsw"),
        ("missing", "memory.said.hnsw"),  # the turns-alone vectors: none here
    ]
    assert indexes.similar(vectors[2], 1)[0][0] == 2
    assert indexes.words("number 3", 1)[0][0] == 3
    gone = Memory(id="m_1", label=1, text=rows[1][1], embedding=rows[1][2])
    indexes.remove([gone])
    assert 1 not in {label for label, _ in indexes.similar(vectors[1], 4)}
    assert 1 not in {label for label, _, _ in indexes.words("lanterns", 4)}
    indexes.add([gone])
    indexes.save()
    with capture_logs() as logs:
        again = Indexes.open(path, DIM, rows)
    assert rebuilds(logs) == [] and again.similar(vectors[1], 1)[0][0] == 1
