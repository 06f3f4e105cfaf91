"""The approximate nearest-neighbour index over memory embeddings (hnswlib, cosine space).

The index file lives beside the DuckDB file and is only a cache of it: DuckDB
keeps every embedding, so any doubt about the file (missing, truncated,
garbage, other dimensions, other labels, a stale stamp) ends in a rebuild from
the store, logged as one ``vectors.rebuild`` event with its reason. A sidecar
``<file>.json`` records the file's size and CRC-32 so damage is caught before
hnswlib reads a byte of it (hnswlib trusts its header and can crash or allocate
without bound on a bad one).
"""

from __future__ import annotations

import math
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import hnswlib  # type: ignore[import-untyped]
import msgspec
import numpy as np
import numpy.typing as npt
import structlog

from hexbus.files import fsync_dir
from hexbus.models import model_threads

log = structlog.get_logger("actors.memory.vectors")

Vector = Sequence[float] | npt.NDArray[np.floating[Any]]
Rows = Callable[[], Iterable[tuple[int, Vector]]]

FORMAT: Final = 1
MIN_CAPACITY: Final = 1024
REBUILD_BATCH: Final = 8192
# At or below this many allowed labels an exact scan beats a filtered graph walk
# (the walk visits mostly rejected nodes) and it never comes back short.
EXACT_SCAN_MAX: Final = 4096
# ... but only when they are a small share of the index: reading a vector back out of
# hnswlib costs about 20 us, so a scan of most of a 3,000-memory store (every query of a
# companion: almost everything is allowed) costs 60 ms, where the walk rejects few nodes.
EXACT_SCAN_SHARE: Final = 0.2
EXACT_SCAN_ALWAYS: Final = 128
# Deleted elements keep their slot until a rebuild; past this share of the file, open() compacts.
COMPACT_FRACTION: Final = 0.25
# hnswlib's saveIndex header: offsetLevel0, max_elements, cur_element_count,
# size_data_per_element, label_offset, offsetData (size_t), maxlevel (int),
# enterpoint (uint32), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t).
_HEADER = struct.Struct("<6QiI3QdQ")


class Sidecar(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What ``<index>.json`` records about the index file written beside it."""

    format: int
    dim: int
    count: int  # elements in the file, deleted ones included
    deleted: list[int]
    size: int
    crc32: int
    stamp: str = ""


_sidecar_decoder = msgspec.json.Decoder(Sidecar)
_sidecar_encoder = msgspec.json.Encoder()


class IndexInvalid(Exception):
    """Why an index file cannot be used; ``reason`` is the short tag that gets logged."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def file_crc32(path: Path, chunk: int = 1 << 20) -> tuple[int, int]:
    """(size, CRC-32) of a file, read in chunks."""
    crc, size = 0, 0
    with path.open("rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return size, crc


def _check_file(path: Path, dim: int) -> Sidecar:
    """The sidecar of a file that is whole and holds ``dim``-sized vectors; IndexInvalid otherwise."""
    if not path.is_file():
        raise IndexInvalid("missing", str(path))
    meta_path = sidecar_path(path)
    try:
        meta = _sidecar_decoder.decode(meta_path.read_bytes())
    except FileNotFoundError:
        raise IndexInvalid("sidecar_missing", str(meta_path)) from None
    except (OSError, msgspec.DecodeError) as exc:
        raise IndexInvalid("sidecar_corrupt", str(exc)) from None
    if meta.format != FORMAT:
        raise IndexInvalid("format", f"sidecar format {meta.format}, expected {FORMAT}")
    if meta.dim != dim:
        raise IndexInvalid("dim_mismatch", f"file has {meta.dim} dimensions, expected {dim}")
    size = path.stat().st_size
    if size != meta.size:
        raise IndexInvalid(
            "size_mismatch", f"file is {size} bytes, sidecar says {meta.size} (truncated?)"
        )
    _, crc = file_crc32(path)
    if crc != meta.crc32:
        raise IndexInvalid("checksum_mismatch", f"crc32 {crc:08x}, sidecar says {meta.crc32:08x}")
    with path.open("rb") as f:
        head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise IndexInvalid("header", "shorter than an hnswlib header")
    level0, _, count, per_element, label_offset, data_offset, *_ = _HEADER.unpack(head)
    # Layout first, so a damaged header is reported as one and not as another dimension.
    if (
        level0 != 0
        or count != meta.count
        or not 0 < data_offset < label_offset < per_element
        or _HEADER.size + count * per_element > size
    ):
        raise IndexInvalid(
            "header", f"header counts {count} elements of {per_element} bytes; sidecar {meta.count}"
        )
    if label_offset - data_offset != dim * 4:
        raise IndexInvalid(
            "dim_mismatch",
            f"file holds {(label_offset - data_offset) // 4}-float vectors, expected {dim}",
        )
    return meta


class VectorIndex:
    """Labels (int >= 0) to unit vectors, searched by cosine similarity.

    Thread-safety: searches may run side by side, but callers serialise writes
    (:meth:`add`, :meth:`delete`, :meth:`save`, :meth:`rebuild`) against each
    other and against searches, e.g. by doing all of them on one worker thread.
    """

    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 128,
        threads: int = 0,
    ) -> None:
        """An empty index; :meth:`open` is the usual way in."""
        if dim < 1:
            raise ValueError(f"vector dim must be positive, got {dim}")
        self.path = path
        self.dim = dim
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.threads = model_threads(threads or min(2, os.cpu_count() or 1))
        self.stamp = ""
        self.dirty = False
        # Labels of rows() that could not be indexed at the last rebuild (to re-embed).
        self.skipped: list[int] = []
        self._live: set[int] = set()
        self._deleted: set[int] = set()
        self._index = self._empty(MIN_CAPACITY)

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        dim: int,
        rows: Rows,
        *,
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 128,
        expected_labels: set[int] | None = None,
        expected_count: int | None = None,
        expected_stamp: str | None = None,
        threads: int = 0,
    ) -> VectorIndex:
        """Load the index at ``path``, or rebuild it from ``rows()`` and save it.

        ``rows()`` yields ``(label, vector)`` for every vector the index should hold;
        it is called for a rebuild or a catch-up. ``expected_labels`` / ``expected_count`` /
        ``expected_stamp`` (the ``stamp`` given to the last :meth:`save`) describe
        what the store holds now; a damaged file, or one that disagrees with the count
        or the stamp, is rebuilt. A sound file whose labels merely lag ``expected_labels``
        (a crash between a commit and the next save) catches up instead: the missing
        vectors are added and the extra ones deleted, which at 100k memories takes
        milliseconds where a rebuild takes half a minute.
        M and ef_construction apply to new builds; a loaded file keeps its own.
        """
        index = cls(path, dim, M=M, ef_construction=ef_construction, ef=ef, threads=threads)
        try:
            index._load(expected_count, expected_stamp)
        except IndexInvalid as why:
            index.rebuild(rows, why.reason, why.detail, stamp=expected_stamp or "")
            return index
        if expected_labels is not None and index._live != expected_labels:
            index._catch_up(rows, expected_labels)
        return index

    def _catch_up(self, rows: Rows, expected: set[int]) -> None:
        started = time.monotonic()
        extra = self._live - expected
        missing = expected - self._live
        self.delete(extra)
        labels: list[int] = []
        vectors: list[Vector] = []
        for label, vector in rows():
            if label in missing and len(vector) == self.dim:
                labels.append(int(label))
                vectors.append(vector)
        if labels:
            self._add_checked(labels, vectors)
        self.save(self.stamp)
        log.info(
            "vectors.caught_up",
            path=str(self.path),
            added=len(labels),
            deleted=len(extra),
            seconds=round(time.monotonic() - started, 3),
        )

    def _load(self, expected_count: int | None, expected_stamp: str | None) -> None:
        meta = _check_file(self.path, self.dim)
        index = hnswlib.Index(space="cosine", dim=self.dim)
        try:
            index.load_index(str(self.path), max_elements=max(meta.count, MIN_CAPACITY))
        except (RuntimeError, MemoryError, ValueError) as exc:
            raise IndexInvalid("load_failed", str(exc)) from None
        labels = {int(x) for x in index.get_ids_list()}
        deleted = set(meta.deleted)
        if len(labels) != meta.count or not deleted <= labels:
            raise IndexInvalid("labels_mismatch", "file labels disagree with its sidecar")
        live = labels - deleted
        if expected_count is not None and len(live) != expected_count:
            raise IndexInvalid(
                "count_mismatch", f"file has {len(live)} vectors, store has {expected_count}"
            )
        if expected_stamp is not None and meta.stamp != expected_stamp:
            raise IndexInvalid("stale", f"stamp {meta.stamp!r}, store is at {expected_stamp!r}")
        if len(deleted) > MIN_CAPACITY and len(deleted) > COMPACT_FRACTION * meta.count:
            raise IndexInvalid("compact", f"{len(deleted)} of {meta.count} elements are deleted")
        index.set_ef(self.ef)
        index.set_num_threads(self.threads)
        self._index, self._live, self._deleted, self.stamp = index, live, deleted, meta.stamp
        self.dirty = False

    def _empty(self, capacity: int) -> Any:
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(
            max_elements=capacity, ef_construction=self.ef_construction, M=self.M, random_seed=100
        )
        index.set_ef(self.ef)
        index.set_num_threads(self.threads)
        return index

    def rebuild(
        self, rows: Rows, reason: str = "requested", detail: str = "", *, stamp: str = ""
    ) -> None:
        """Replace the contents with ``rows()`` and save with ``stamp``; logs one ``vectors.rebuild`` event.

        Rows whose vector has the wrong length or a non-finite value are left
        out and their labels kept in :attr:`skipped` (to re-embed).
        """
        started = time.monotonic()
        self._index, self._live, self._deleted = self._empty(MIN_CAPACITY), set(), set()
        skipped: list[int] = []
        labels: list[int] = []
        batch: list[Vector] = []
        for label, vector in rows():
            if len(vector) != self.dim:
                skipped.append(int(label))
                continue
            labels.append(int(label))
            batch.append(vector)
            if len(labels) >= REBUILD_BATCH:
                skipped += self._add_checked(labels, batch)
                labels, batch = [], []
        if labels:
            skipped += self._add_checked(labels, batch)
        self.skipped = skipped
        self.save(stamp)
        # A new store has no file yet: worth a line, not a warning.
        emit = log.info if reason == "missing" and not self._live and not skipped else log.warning
        emit(
            "vectors.rebuild",
            reason=reason,
            detail=detail,
            path=str(self.path),
            count=len(self._live),
            skipped=len(skipped),
            first_skipped=skipped[:5],
            seconds=round(time.monotonic() - started, 3),
        )

    def _add_checked(self, labels: list[int], vectors: list[Vector]) -> list[int]:
        """Add a rebuild batch, leaving out rows with non-finite values; the labels left out."""
        array = np.asarray(vectors, dtype=np.float32)
        bad = set(np.flatnonzero(~np.isfinite(array).all(axis=1)).tolist())
        if not bad:
            self.add(labels, array)
            return []
        keep = [i for i in range(len(labels)) if i not in bad]
        self.add([labels[i] for i in keep], array[keep])
        return [labels[i] for i in sorted(bad)]

    # -- writing -------------------------------------------------------------------

    def add(self, labels: Sequence[int], vectors: Vector | Sequence[Vector]) -> None:
        """Insert or replace vectors; a deleted label comes back. Capacity doubles as needed."""
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (n, {self.dim}), got {array.shape}")
        if array.shape[0] != len(labels):
            raise ValueError(f"{len(labels)} labels for {array.shape[0]} vectors")
        if not len(labels):
            return
        if not np.isfinite(array).all():
            raise ValueError("vectors must be finite")
        ids = np.asarray(labels, dtype=np.int64)
        if ids.min() < 0:
            raise ValueError("vector labels must be >= 0")
        # One write per label: two threads writing the same label in one batch would race in hnswlib.
        unique, last = np.unique(ids[::-1], return_index=True)
        if len(unique) != len(ids):
            keep = np.sort(len(ids) - 1 - last)
            ids, array = ids[keep], array[keep]
        fresh = sum(1 for x in ids.tolist() if x not in self._live and x not in self._deleted)
        needed = self._index.element_count + fresh
        capacity = self._index.get_max_elements()
        if needed > capacity:
            self._index.resize_index(max(needed, 2 * capacity))
        self._index.add_items(
            np.ascontiguousarray(array), ids.astype(np.uint64), num_threads=self.threads
        )
        added = ids.tolist()
        self._live.update(added)
        self._deleted.difference_update(added)
        self.dirty = True

    def delete(self, labels: Iterable[int]) -> int:
        """Remove labels (unknown ones are ignored); the number removed.

        The stored vector is overwritten with noise before the slot is marked
        deleted, so a forgotten memory's embedding does not stay in the file.
        """
        gone = sorted({int(x) for x in labels} & self._live)
        if not gone:
            return 0
        noise = (
            np.random.default_rng(len(self._deleted))
            .standard_normal((len(gone), self.dim))
            .astype(np.float32)
        )
        self._index.add_items(noise, np.asarray(gone, dtype=np.uint64), num_threads=self.threads)
        for label in gone:
            self._index.mark_deleted(label)
        self._live.difference_update(gone)
        self._deleted.update(gone)
        self.dirty = True
        return len(gone)

    def save(self, stamp: str | None = None) -> None:
        """Write the file atomically (temp file, fsync, rename) with its sidecar.

        ``stamp`` is an opaque marker of the store's state (say, its applied
        offset) that :meth:`open` can compare with ``expected_stamp``.
        """
        if stamp is not None:
            self.stamp = stamp
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        meta_tmp = sidecar_path(self.path).with_name(sidecar_path(self.path).name + ".tmp")
        self._index.save_index(str(tmp))
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        size, crc = file_crc32(tmp)
        meta = Sidecar(
            format=FORMAT,
            dim=self.dim,
            count=self._index.element_count,
            deleted=sorted(self._deleted),
            size=size,
            crc32=crc,
            stamp=self.stamp,
        )
        with meta_tmp.open("wb") as f:
            f.write(_sidecar_encoder.encode(meta))
            f.flush()
            os.fsync(f.fileno())
        # A crash between the two renames leaves a file and sidecar that disagree: open() rebuilds.
        os.replace(tmp, self.path)
        os.replace(meta_tmp, sidecar_path(self.path))
        fsync_dir(self.path.parent)
        self.dirty = False

    # -- reading -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, label: object) -> bool:
        return label in self._live

    @property
    def labels(self) -> frozenset[int]:
        return frozenset(self._live)

    @property
    def capacity(self) -> int:
        return int(self._index.get_max_elements())

    @property
    def nbytes(self) -> int:
        """Size of the index as saved (about its size in memory)."""
        return int(self._index.index_file_size())

    def set_ef(self, ef: int) -> None:
        """Search breadth: higher finds more of the true neighbours and takes longer."""
        if ef < 1:
            raise ValueError(f"ef must be at least 1, got {ef}")
        self.ef = ef
        self._index.set_ef(ef)

    def search(
        self, vector: Vector, k: int, *, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (label, cosine similarity) pairs, most similar first.

        With ``allowed``, only those labels can come back: a small set is scanned
        exactly, a large one filters the graph walk.
        """
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise ValueError(f"query has {query.shape[0]} dimensions, index has {self.dim}")
        if k < 1 or not self._live or not math.isfinite(float(query.sum())):
            return []
        if allowed is not None:
            if len(allowed) <= EXACT_SCAN_ALWAYS or (
                len(allowed) <= EXACT_SCAN_MAX
                and len(allowed) <= EXACT_SCAN_SHARE * len(self._live)
            ):
                return self._exact(query, k, allowed & self._live)
            want = min(k, len(self._live), len(allowed))
            try:
                return self._knn(query, want, lambda label: label in allowed)
            except RuntimeError:  # the filtered walk found fewer than ``want``
                return self._exact(query, k, allowed & self._live)
        want = min(k, len(self._live))
        try:
            return self._knn(query, want, None)
        except RuntimeError:  # deletions can leave parts of the graph hard to reach
            return self._exact(query, k, self._live)

    def similarity(self, vector: Vector, labels: Iterable[int]) -> dict[int, float]:
        """The exact cosine similarity of ``vector`` to each of ``labels`` the index holds."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        held = set(labels) & self._live
        if query.shape[0] != self.dim or not math.isfinite(float(query.sum())):
            return {}
        return dict(self._exact(query, len(held), held))

    def _knn(
        self, query: npt.NDArray[np.float32], k: int, accept: Callable[[int], bool] | None
    ) -> list[tuple[int, float]]:
        # hnswlib searches with max(ef, k) itself, so a large k needs no change of the shared ef.
        labels, distances = self._index.knn_query(query, k=k, num_threads=1, filter=accept)
        return [(int(lb), 1.0 - float(d)) for lb, d in zip(labels[0], distances[0], strict=True)]

    def _exact(
        self, query: npt.NDArray[np.float32], k: int, labels: set[int]
    ) -> list[tuple[int, float]]:
        if not labels:
            return []
        ordered = sorted(labels)
        stored = np.asarray(self._index.get_items(ordered, return_type="numpy"), dtype=np.float32)
        # hnswlib keeps cosine-space vectors normalised, so a dot with the unit query is the cosine.
        sims = stored @ (query / max(float(np.linalg.norm(query)), 1e-30))
        top = np.argsort(-sims, kind="stable")[:k]
        return [(ordered[i], float(sims[i])) for i in top]
