"""The hnswlib vector index: add, search, delete, save, recovery from damage, recall, filters."""

from __future__ import annotations

import itertools
import json
import os
import random
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from actors.memory.vectors import EXACT_SCAN_MAX, MIN_CAPACITY, VectorIndex, sidecar_path
from tests.support.vectors import DIM, Array, embedding_like, rebuilds, unit

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def brute_force(data: Array, labels: list[int], query: Array, k: int) -> list[int]:
    sims = data @ query
    return [labels[i] for i in np.argsort(-sims, kind="stable")[:k]]


def rows_of(data: Array, labels: list[int]) -> Callable[[], Iterator[tuple[int, Array]]]:
    def rows() -> Iterator[tuple[int, Array]]:
        yield from zip(labels, data, strict=True)

    return rows


def no_rows() -> Iterator[tuple[int, Array]]:
    raise AssertionError("rows() was called: the index was rebuilt instead of loaded")


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
