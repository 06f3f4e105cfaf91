"""The indexes over the memories (vectors by meaning, tantivy BM25 by words), kept as one.

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

# label, searchable text, embedding, archived
IndexRow = tuple[int, str, tuple[float, ...] | None, bool]


class Indexes:
    """The vector indexes (hnswlib, saved beside the DuckDB file) and the keyword index (in memory).

    Two vector indexes: every memory's searchable text (a turn's moment, anything else's text)
    and, for turns, the turn alone; a turn's similarity to a query is the mean of its two.

    Every call takes one lock, so adds, removals and searches from several worker threads
    never interleave (neither index is safe for that on its own). All methods block.
    """

    def __init__(self, vectors: VectorIndex, said: VectorIndex, keywords: KeywordIndex) -> None:
        self.vectors = vectors
        self.said = said
        self.keywords = keywords
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: Path,
        dim: int,
        rows: Iterable[IndexRow],
        said: Iterable[tuple[int, tuple[float, ...]]] = (),
    ) -> Indexes:
        """The saved vector files if they hold exactly the store's vectors; else (a crash after
        a commit, a missing or damaged file) rebuilt from the embeddings the store keeps."""
        rows = list(rows)
        vectors = [(label, vector) for label, _, vector, _ in rows if vector is not None]
        index = VectorIndex.open(
            path, dim, lambda: vectors, expected_labels={label for label, _ in vectors}
        )
        said_vectors = list(said)
        said_index = VectorIndex.open(
            said_path(path),
            dim,
            lambda: said_vectors,
            expected_labels={label for label, _ in said_vectors},
        )
        keywords = KeywordIndex()
        for label, text, _, _archived in rows:
            keywords.add(label, text)
        return cls(index, said_index, keywords)

    def add(self, memories: Sequence[Memory]) -> None:
        """Index memories just committed (a memory indexed already is replaced)."""
        with_vectors = [m for m in memories if m.embedding is not None]
        with_said = [m for m in memories if m.said_embedding is not None]
        with self._lock:
            if with_vectors:
                matrix = np.asarray([m.embedding for m in with_vectors], dtype=np.float32)
                self.vectors.add([m.label for m in with_vectors], matrix)
            stale = [m.label for m in memories if m.said_embedding is None and m.label in self.said]
            if stale:  # edited into a memory of its own words
                self.said.delete(stale)
            if with_said:
                matrix = np.asarray([m.said_embedding for m in with_said], dtype=np.float32)
                self.said.add([m.label for m in with_said], matrix)
            for m in memories:
                self.keywords.add(m.label, m.searchable)

    def remove(self, memories: Sequence[Memory]) -> None:
        labels = [m.label for m in memories]
        if not labels:
            return
        with self._lock:
            self.vectors.delete(labels)
            self.said.delete([label for label in labels if label in self.said])
            for label in labels:
                self.keywords.remove(label)

    def similar(
        self, vector: Vector, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float]]:
        """Up to ``k`` (label, similarity), most similar first, from the best ``k`` of each vector
        index; a turn's similarity is the mean of its moment's and its own words' cosine."""
        with self._lock:
            found = {label for label, _ in self.vectors.search(vector, k, allowed=allowed)}
            if len(self.said):
                found |= {label for label, _ in self.said.search(vector, k, allowed=allowed)}
            whole = self.vectors.similarity(vector, found)
            alone = self.said.similarity(vector, found) if len(self.said) else {}
        scored = [(label, (cos + alone.get(label, cos)) / 2.0) for label, cos in whole.items()]
        return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[:k]

    def words(
        self, text: str, k: int, allowed: set[int] | None = None
    ) -> list[tuple[int, float, bool]]:
        """Up to ``k`` (label, BM25 score, exact match); commits pending changes first (ms)."""
        with self._lock:
            return self.keywords.search(text, k, allowed=allowed)

    def save(self) -> None:
        """Write the vector files (atomic), so the next start need not rebuild them."""
        with self._lock:
            self.vectors.save()
            self.said.save()


def said_path(path: Path) -> Path:
    """The file of the turns-alone vectors, beside the main vector file."""
    return path.with_name(path.stem + ".said" + path.suffix)
