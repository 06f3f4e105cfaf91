"""The BM25 keyword index, and both indexes together as the memory actor keeps them."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

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


def test_changes_rebuild_once_on_the_next_search(keywords: KeywordIndex) -> None:
    assert keywords.stale and keywords.rebuilds == 0
    keywords.search("cat", 3)
    keywords.search("dog", 3)
    assert keywords.rebuilds == 1 and not keywords.stale
    keywords.add(6, "a cat video")
    keywords.add(7, "another cat video")
    keywords.remove(6)
    assert keywords.stale and keywords.rebuilds == 1
    assert [h[0] for h in keywords.search("video", 3)] == [7]
    assert keywords.rebuilds == 2


def test_ties_break_by_label_at_the_cut() -> None:
    k = KeywordIndex()
    for label in (9, 3, 7, 1, 5):
        k.add(label, "same words here")
    assert [h[0] for h in k.search("words", 3)] == [1, 3, 5]


def test_rebuild_of_10k_texts_is_fast(capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(20_000)]
    k = KeywordIndex()
    started = time.perf_counter()
    for label in range(10_000):
        k.add(label, " ".join(rng.choices(vocab, k=25)) + " and then we talked about music.")
    add_s = time.perf_counter() - started
    k.rebuild()
    k.add(10_000, "one more: w1 w2")  # what a live turn costs: one add, one lazy rebuild
    started = time.perf_counter()
    hits = k.search("w1 w2", 5)
    search_s = time.perf_counter() - started
    assert hits[0][::2] == (10_000, True)
    with capsys.disabled():
        print(
            f"\nkeyword index, 10k texts: add {add_s * 1e3:.0f} ms, rebuild {k.last_rebuild_s * 1e3:.0f} ms,"
            f" search after one add {search_s * 1e3:.0f} ms"
        )
    assert k.last_rebuild_s < 2.0


def test_keyword_search_matches_word_forms_by_their_stem(keywords: KeywordIndex) -> None:
    keywords.add(900, "Maya went hiking in the Pentlands last weekend")
    hits = keywords.search("does she hike?", 5)
    assert hits and hits[0][0] == 900
    assert not hits[0][2]  # a stem match is fuzzy, never an exact one


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
