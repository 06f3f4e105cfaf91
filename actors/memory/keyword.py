"""BM25 keyword search over memory texts (bm25s), with exact-match flags.

bm25s builds static indexes, so :class:`KeywordIndex` keeps the tokenised
texts and rebuilds the BM25 matrix lazily: adds and removals only mark it
stale, and the next :meth:`KeywordIndex.search` rebuilds it once (about
0.15 s for 10k memories on 2 cores; the tests print the figure).

Text is NFKC-normalised, case-folded and split on word characters, so
punctuation never matters; scored terms are Snowball-stemmed (PyStemmer), so
"hiking" finds "hiked". The exact-match flag compares unstemmed words.
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

import bm25s  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import Stemmer  # type: ignore[import-not-found]
from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]

_WORD: Final = re.compile(r"\w+")
STOPWORDS: Final = frozenset(STOPWORDS_EN)
_STEMMER: Final = Stemmer.Stemmer("english")  # keeps its own cache of recent words


def words(text: str) -> list[str]:
    """The normalised words of ``text``, stopwords included (phrase matching keeps them)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def terms(text_words: list[str]) -> list[str]:
    """The stems BM25 scores: no stopwords, no single letters (they carry no meaning alone)."""
    kept = [w for w in text_words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    return list(_STEMMER.stemWords(kept)) if kept else []


@dataclass(frozen=True, slots=True)
class _Tokens:
    phrase: str  # " w1 w2 ... " so a phrase test is a substring test on whole words
    term_ids: tuple[int, ...]


class KeywordIndex:
    """BM25 over (label, text) pairs; ``search`` says which hits match the query exactly.

    Not thread-safe: callers serialise all calls (a search may rebuild).
    """

    def __init__(self, *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._docs: dict[int, _Tokens] = {}
        # Token ids only ever grow; words of removed texts stay in the vocabulary with
        # no documents, which BM25 ignores, so a rebuild never re-maps token strings.
        self._vocab: dict[str, int] = {}
        self._bm25: Any = None
        self._order: list[int] = []
        self._position: dict[int, int] = {}
        self._labels: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self.stale = False
        self.rebuilds = 0
        self.last_rebuild_s = 0.0

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, label: object) -> bool:
        return label in self._docs

    def _ids(self, text_terms: list[str]) -> tuple[int, ...]:
        vocab = self._vocab
        return tuple(vocab.setdefault(t, len(vocab)) for t in text_terms)

    def add(self, label: int, text: str) -> None:
        """Index ``text`` under ``label``, replacing any earlier text of that label."""
        text_words = words(text)
        self._docs[int(label)] = _Tokens(f" {' '.join(text_words)} ", self._ids(terms(text_words)))
        self.stale = True

    def remove(self, label: int) -> bool:
        """Drop ``label``; False when it was not indexed."""
        if self._docs.pop(int(label), None) is None:
            return False
        self.stale = True
        return True

    def rebuild(self) -> None:
        """Build the BM25 matrix now (search does this itself when anything changed)."""
        started = time.perf_counter()
        self._order = list(self._docs)
        self._position = {label: i for i, label in enumerate(self._order)}
        self._labels = np.asarray(self._order, dtype=np.int64)
        corpus = [list(self._docs[lb].term_ids) for lb in self._order]
        if any(corpus):  # BM25 divides by the mean text length
            bm25 = bm25s.BM25(k1=self.k1, b=self.b)
            bm25.index((corpus, self._vocab), create_empty_token=False, show_progress=False)
            self._bm25 = bm25
        else:
            self._bm25 = None
        self.stale = False
        self.rebuilds += 1
        self.last_rebuild_s = time.perf_counter() - started

    def search(
        self, query: str, k: int, *, allowed: set[int] | None = None
    ) -> list[tuple[int, float, bool]]:
        """Up to ``k`` hits as (label, BM25 score, exact), exact ones first, then by score.

        ``exact`` is True when every query term is in the text, or, for a query of
        stopwords only, when the whole normalised query phrase is.
        """
        query_words = words(query)
        if k < 1 or not query_words or not self._docs:
            return []
        if self.stale:
            self.rebuild()
        query_ids = sorted({self._vocab[t] for t in terms(query_words) if t in self._vocab})
        n = len(self._order)
        if not terms(query_words):
            phrase = f" {' '.join(query_words)} "
            hits = [i for i, lb in enumerate(self._order) if phrase in self._docs[lb].phrase]
            exact = np.zeros(n, dtype=bool)
            exact[hits] = True
            scores = np.zeros(n, dtype=np.float32)
        elif not query_ids or self._bm25 is None:
            return []
        else:
            scores, exact = self._score(
                query_ids, all_known=len(query_ids) == len(set(terms(query_words)))
            )
        keep = (scores > 0) | exact
        if allowed is not None:
            mask = np.zeros(n, dtype=bool)
            mask[[self._position[lb] for lb in allowed if lb in self._position]] = True
            keep &= mask
        found = np.flatnonzero(keep)
        # Exact first, then score, then label: a full sort, so ties at the cut go by label too.
        order = np.lexsort((self._labels[found], -scores[found], ~exact[found]))[:k]
        return [(self._order[i], float(scores[i]), bool(exact[i])) for i in found[order].tolist()]

    def _score(
        self, query_ids: list[int], all_known: bool
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """BM25 scores of every text, and which texts hold every query term."""
        bm25 = self._bm25
        scores = np.asarray(bm25.get_scores_from_ids(query_ids), dtype=np.float32)
        n = scores.shape[0]
        if not all_known:  # a query term no text has: nothing can hold them all
            return scores, np.zeros(n, dtype=bool)
        indptr, indices = bm25.scores["indptr"], bm25.scores["indices"]
        held = np.zeros(n, dtype=np.int32)
        for t in query_ids:
            held[indices[indptr[t] : indptr[t + 1]]] += 1
        return scores, held == len(query_ids)
