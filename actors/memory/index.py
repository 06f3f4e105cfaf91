"""The two indexes over the memories (vectors by meaning, BM25 by words), kept as one.

Both are derived from DuckDB and never the only copy of anything: opened from the
store's rows, updated after each commit, rebuilt from the store when missing,
damaged or behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from actors.memory.keyword import KeywordIndex
from actors.memory.store import Memory
from actors.memory.vectors import Vector, VectorIndex

IndexRow = tuple[int, str, tuple[float, ...] | None, bool]  # label, text, embedding, archived


class Indexes:
    """The vector index (hnswlib, saved beside the DuckDB file) and the keyword index (in memory).

    Every call takes one lock, so adds, removals and searches from several worker threads
    never interleave (neither index is safe for that on its own). All methods block.
    """

    def __init__(self, vectors: VectorIndex, keywords: KeywordIndex) -> None:
        self.vectors = vectors
        self.keywords = keywords
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, dim: int, rows: Iterable[IndexRow]) -> Indexes:
        """The saved vector file if it holds exactly the store's vectors; else (a crash after a
        commit, a missing or damaged file) rebuilt from the embeddings the store keeps."""
        rows = list(rows)
        vectors = [(label, vector) for label, _, vector, _ in rows if vector is not None]
        index = VectorIndex.open(
            path, dim, lambda: vectors, expected_labels={label for label, _ in vectors}
        )
        keywords = KeywordIndex()
        for label, text, _, _archived in rows:
            keywords.add(label, text)
        return cls(index, keywords)

    def add(self, memories: Sequence[Memory]) -> None:
        """Index memories just committed (a memory indexed already is replaced)."""
        with_vectors = [m for m in memories if m.embedding is not None]
        with self._lock:
            if with_vectors:
                matrix = np.asarray([m.embedding for m in with_vectors], dtype=np.float32)
                self.vectors.add([m.label for m in with_vectors], matrix)
            for m in memories:
                self.keywords.add(m.label, m.text)

    def remove(self, memories: Sequence[Memory]) -> None:
        labels = [m.label for m in memories]
        if not labels:
            return
        with self._lock:
            self.vectors.delete(labels)
            for label in labels:
                self.keywords.remove(label)

    def similar(
        self, vector: Vector, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (label, cosine similarity), most similar first."""
        with self._lock:
            return self.vectors.search(vector, k, allowed=allowed)

    def words(
        self, text: str, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float, bool]]:
        """Up to ``k`` (label, BM25 score, exact match); may rebuild BM25 (~150 ms at 10k)."""
        with self._lock:
            return self.keywords.search(text, k, allowed=allowed)

    def save(self) -> None:
        """Write the vector file (atomic), so the next start need not rebuild it."""
        with self._lock:
            self.vectors.save()
