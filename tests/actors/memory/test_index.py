"""Embeddings, the hnswlib vector index (with its recovery) and the BM25 keyword index."""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import zlib
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from structlog.testing import capture_logs

from actors.memory.embed import Embedder, embedding_model, load_embedder
from actors.memory.index import Indexes
from actors.memory.keyword import KeywordIndex
from actors.memory.store import Memory
from actors.memory.vectors import EXACT_SCAN_MAX, MIN_CAPACITY, VectorIndex, sidecar_path
from hexbus.models import ModelMissing

os.environ.setdefault("HF_HUB_OFFLINE", "1")

Array = npt.NDArray[np.float32]


def unit(v: npt.NDArray[np.floating[Any]]) -> Array:
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def embedding_like(n: int, dim: int = 384, seed: int = 0) -> Array:
    """Unit vectors near a 32-dimensional subspace, like sentence embeddings (uniform noise has no neighbours)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((32, dim)) / np.sqrt(32)
    return unit(rng.standard_normal((n, 32)) @ basis + 0.3 * rng.standard_normal((n, dim)))


def brute_force(data: Array, labels: list[int], query: Array, k: int) -> list[int]:
    sims = data @ query
    return [labels[i] for i in np.argsort(-sims, kind="stable")[:k]]


def rows_of(data: Array, labels: list[int]) -> Callable[[], Iterator[tuple[int, Array]]]:
    def rows() -> Iterator[tuple[int, Array]]:
        yield from zip(labels, data, strict=True)

    return rows


def no_rows() -> Iterator[tuple[int, Array]]:
    raise AssertionError("rows() was called: the index was rebuilt instead of loaded")


def rebuilds(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "vectors.rebuild"]


# -- embeddings ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return embedding_model().get()


@pytest.mark.slow
def test_embeddings_are_unit_float32_rows(embedder: Embedder) -> None:
    vectors = embedder.encode(["I adopted a cat named Miso.", "The meeting moved to Tuesday.", ""])
    assert embedder.dim == 384
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_paraphrases_are_closer_than_unrelated_sentences(embedder: Embedder) -> None:
    pairs = [
        (
            "My sister lives in Lisbon.",
            "My sibling's home is in Lisbon, Portugal.",
            "I need to buy new running shoes.",
        ),
        (
            "I'm allergic to peanuts.",
            "Peanuts give me an allergic reaction.",
            "The train leaves at nine tomorrow.",
        ),
        (
            "We watched Spirited Away last night.",
            "Yesterday evening we saw Spirited Away.",
            "My laptop battery is dying.",
        ),
    ]
    for a, paraphrase, unrelated in pairs:
        va, vp, vu = embedder.encode([a, paraphrase, unrelated])
        assert float(va @ vp) > float(va @ vu) + 0.2, (a, float(va @ vp), float(va @ vu))


@pytest.mark.slow
def test_batched_encoding_matches_one_by_one(embedder: Embedder) -> None:
    texts = [
        f"turn {i}: I told you about my {w} yesterday"
        for i, w in enumerate(["dog", "job", "trip"] * 30)
    ]
    batched = embedder.encode(texts)
    single = np.vstack([embedder.encode([t]) for t in texts[:3]])
    np.testing.assert_allclose(batched[:3], single, atol=1e-4)


def test_missing_model_folder_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as err:
        load_embedder(str(tmp_path / "no-such-model"))
    message = str(err.value)
    assert (
        str(tmp_path / "no-such-model") in message
        and "MODELS.md" in message
        and "Embeddings" in message
    )
    assert "\n" not in message


# -- vector index --------------------------------------------------------------------

DIM = 32


@pytest.fixture
def data() -> Array:
    return embedding_like(300, DIM, seed=1)


def test_add_search_delete_save_and_reopen(tmp_path: Path, data: Array) -> None:
    path = tmp_path / "memory.hnsw"
    labels = list(range(100, 400))
    index = VectorIndex.open(path, DIM, rows_of(data[:0], []))
    assert len(index) == 0 and index.search(data[0], 5) == []
    index.add(labels, data)
    assert len(index) == 300 and 100 in index
    best, sim = index.search(data[7], 1)[0]
    assert best == 107 and sim == pytest.approx(1.0, abs=1e-5)
    hits = index.search(data[7], 10)
    assert [h[0] for h in hits] == brute_force(data, labels, data[7], 10)
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(hits))

    assert index.delete([107, 108, 99999]) == 2
    assert 107 not in index and len(index) == 298
    assert 107 not in [h[0] for h in index.search(data[7], 50)]
    index.save(stamp="offset-42")
    assert json.loads(sidecar_path(path).read_text())["deleted"] == [107, 108]

    reopened = VectorIndex.open(
        path, DIM, no_rows, expected_labels=set(labels) - {107, 108}, expected_stamp="offset-42"
    )
    assert len(reopened) == 298 and reopened.labels == index.labels
    assert [h[0] for h in reopened.search(data[9], 10)] == [h[0] for h in index.search(data[9], 10)]
    assert 107 not in [h[0] for h in reopened.search(data[7], 50)]

    reopened.add([107], data[7])  # a deleted label can come back
    assert reopened.search(data[7], 1)[0][0] == 107 and len(reopened) == 299


def test_deleted_vector_is_overwritten_in_the_file(tmp_path: Path, data: Array) -> None:
    path = tmp_path / "memory.hnsw"
    index = VectorIndex.open(path, DIM, rows_of(data, list(range(300))))
    # hnswlib stores the vector as it normalised it: read those exact bytes back.
    secret = np.asarray(index._index.get_items([5]), dtype=np.float32).tobytes()
    assert secret in path.read_bytes()
    index.delete([5])
    index.save()
    assert secret not in path.read_bytes()


def test_capacity_doubles_as_vectors_arrive(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path / "v.hnsw", DIM)
    assert index.capacity == MIN_CAPACITY
    more = embedding_like(MIN_CAPACITY + 10, DIM, seed=2)
    for start in range(0, len(more), 256):
        index.add(list(range(start, min(start + 256, len(more)))), more[start : start + 256])
    assert index.capacity == 2 * MIN_CAPACITY and len(index) == MIN_CAPACITY + 10


def test_add_rejects_bad_input(tmp_path: Path, data: Array) -> None:
    index = VectorIndex(tmp_path / "v.hnsw", DIM)
    with pytest.raises(ValueError, match="shape"):
        index.add([1], np.zeros(DIM + 1, dtype=np.float32))
    with pytest.raises(ValueError, match="labels for"):
        index.add([1, 2], data[:3])
    with pytest.raises(ValueError, match=">= 0"):
        index.add([-1], data[0])
    with pytest.raises(ValueError, match="finite"):
        index.add([1], np.full(DIM, np.nan, dtype=np.float32))
    index.add([1, 1], data[:2])  # the last vector of a repeated label wins
    assert index.search(data[1], 1)[0][0] == 1 and len(index) == 1


def _saved(tmp_path: Path, data: Array) -> tuple[Path, list[int]]:
    path = tmp_path / "memory.hnsw"
    labels = list(range(5, 305))
    VectorIndex.open(path, DIM, rows_of(data, labels))
    return path, labels


def _damage_missing(path: Path) -> None:
    path.unlink()


def _damage_truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _damage_garbage(path: Path) -> None:
    path.write_bytes(random.Random(3).randbytes(path.stat().st_size))


def _damage_flip_one_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _damage_forged_sidecar(path: Path) -> None:
    """Garbage whose sidecar was rewritten to match: the header checks must still catch it."""
    garbage = random.Random(4).randbytes(path.stat().st_size)
    path.write_bytes(garbage)
    meta = json.loads(sidecar_path(path).read_text())
    meta["crc32"] = zlib.crc32(garbage)
    sidecar_path(path).write_text(json.dumps(meta))


def _damage_sidecar_missing(path: Path) -> None:
    sidecar_path(path).unlink()


def _damage_sidecar_garbage(path: Path) -> None:
    sidecar_path(path).write_text("{not json")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_damage_missing, "missing"),
        (_damage_truncate, "size_mismatch"),
        (_damage_garbage, "checksum_mismatch"),
        (_damage_flip_one_byte, "checksum_mismatch"),
        (_damage_forged_sidecar, "header"),
        (_damage_sidecar_missing, "sidecar_missing"),
        (_damage_sidecar_garbage, "sidecar_corrupt"),
    ],
)
def test_damaged_index_is_detected_and_rebuilt_with_every_label(
    tmp_path: Path, data: Array, damage: Callable[[Path], None], reason: str
) -> None:
    path, labels = _saved(tmp_path, data)
    damage(path)
    with capture_logs() as logs:
        index = VectorIndex.open(path, DIM, rows_of(data, labels), expected_labels=set(labels))
    events = rebuilds(logs)
    assert len(events) == 1 and events[0]["reason"] == reason, logs
    assert index.labels == set(labels)
    assert index.search(data[11], 1)[0][0] == labels[11]
    with capture_logs() as logs:  # the rebuilt file was saved and now loads as it is
        VectorIndex.open(path, DIM, no_rows, expected_labels=set(labels))
    assert rebuilds(logs) == []


def test_a_sound_file_that_lags_the_store_catches_up_without_a_rebuild(
    tmp_path: Path, data: Array
) -> None:
    path, labels = _saved(tmp_path, data)
    # The store gained a memory and lost two after the last save (a crash before the index was saved).
    extra = unit(np.ones((1, DIM)))
    now = [label for label in labels if label not in (100, 101)] + [999]
    both = np.vstack([data, extra])
    with capture_logs() as logs:
        index = VectorIndex.open(path, DIM, rows_of(both, [*labels, 999]), expected_labels=set(now))
    assert rebuilds(logs) == []
    assert {**next(e for e in logs if e["event"] == "vectors.caught_up"), "seconds": 0} == {
        "event": "vectors.caught_up",
        "path": str(path),
        "added": 1,
        "deleted": 2,
        "seconds": 0,
        "log_level": "info",
    }
    assert index.labels == set(now) and index.search(extra[0], 1)[0][0] == 999
    assert 100 not in [h[0] for h in index.search(data[0], 20)]
    # What it caught up to was saved: the next open loads it as it is.
    with capture_logs() as logs:
        again = VectorIndex.open(path, DIM, no_rows, expected_labels=set(now))
    assert again.labels == set(now) and [e["event"] for e in logs] == []


def test_count_stamp_and_dim_disagreements_cause_a_rebuild(tmp_path: Path, data: Array) -> None:
    path, labels = _saved(tmp_path, data)
    with capture_logs() as logs:
        VectorIndex.open(path, DIM, rows_of(data, labels), expected_count=len(labels) + 1)
        VectorIndex.open(path, DIM, rows_of(data, labels), expected_stamp="offset-7")
        VectorIndex.open(
            path, DIM, no_rows, expected_stamp="offset-7"
        )  # the rebuild saved the stamp
    assert [e["reason"] for e in rebuilds(logs)] == ["count_mismatch", "stale"]
    wider = embedding_like(300, DIM * 2, seed=5)
    with capture_logs() as logs:
        index = VectorIndex.open(path, DIM * 2, rows_of(wider, labels))
    assert [e["reason"] for e in rebuilds(logs)] == ["dim_mismatch"]
    assert index.dim == DIM * 2 and index.labels == set(labels)


def test_rebuild_skips_rows_it_cannot_index_and_names_them(tmp_path: Path, data: Array) -> None:
    def rows() -> Iterator[tuple[int, list[float]]]:
        yield 1, data[1].tolist()
        yield 2, [0.5] * (DIM - 1)  # embedded by another model
        yield 3, [float("nan")] * DIM
        yield 4, data[4].tolist()

    with capture_logs() as logs:
        index = VectorIndex.open(tmp_path / "v.hnsw", DIM, rows)
    assert index.labels == {1, 4} and sorted(index.skipped) == [2, 3]
    assert rebuilds(logs)[0]["skipped"] == 2


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path, data: Array) -> None:
    _saved(tmp_path, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.hnsw", "memory.hnsw.json"]


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[VectorIndex, Array, list[int]]:
    data = embedding_like(5000, 384, seed=9)
    labels = [3 * i + 1 for i in range(5000)]
    index = VectorIndex.open(
        tmp_path_factory.mktemp("large") / "v.hnsw", 384, rows_of(data, labels)
    )
    return index, data, labels


def test_recall_at_10_against_brute_force_on_5k_vectors(
    large: tuple[VectorIndex, Array, list[int]],
) -> None:
    index, data, labels = large
    queries = embedding_like(200, 384, seed=10)  # same subspace, fresh points
    recall = np.mean(
        [
            len({h[0] for h in index.search(q, 10)} & set(brute_force(data, labels, q, 10))) / 10
            for q in queries
        ]
    )
    print(f"recall@10 on 5k vectors (ef={index.ef}): {recall:.3f}")
    assert recall >= 0.95


def test_uniform_random_vectors_are_hard_but_findable(tmp_path: Path) -> None:
    """Uniform noise in 384 dimensions is the worst case for HNSW; exact scans stay exact."""
    rng = np.random.default_rng(12)
    data = unit(rng.standard_normal((2000, 384)))
    index = VectorIndex.open(tmp_path / "u.hnsw", 384, rows_of(data, list(range(2000))))
    for i in range(0, 2000, 200):
        assert index.search(data[i], 1)[0][0] == i


@pytest.mark.parametrize("size", [50, EXACT_SCAN_MAX + 500])
def test_filtered_search_returns_only_allowed_labels(
    large: tuple[VectorIndex, Array, list[int]], size: int
) -> None:
    index, data, labels = large
    rng = random.Random(size)
    allowed = set(rng.sample(labels, size)) | {123456789}  # an unknown label is harmless
    allowed_list = sorted(allowed - {123456789})
    positions = {lb: i for i, lb in enumerate(labels)}
    sub = data[[positions[lb] for lb in allowed_list]]
    recall = []
    for q in embedding_like(40, 384, seed=11):
        hits = index.search(q, 10, allowed=allowed)
        assert len(hits) == 10 and {h[0] for h in hits} <= allowed
        recall.append(len({h[0] for h in hits} & set(brute_force(sub, allowed_list, q, 10))) / 10)
    assert np.mean(recall) >= 0.95
    assert index.search(data[0], 10, allowed=set()) == []
    two = index.search(data[0], 10, allowed={labels[0], labels[1]})
    assert [h[0] for h in two] == [labels[0], labels[1]] and two[0][1] == pytest.approx(
        1.0, abs=1e-5
    )


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
    assert [e["reason"] for e in rebuilds(logs)] == ["missing"]
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
