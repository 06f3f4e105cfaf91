"""BM25 keyword search over memory texts (tantivy, in memory), with exact-match flags.

:class:`KeywordIndex` is an incremental inverted index: ``add`` and ``remove``
queue their change on a tantivy writer, and the next
:meth:`KeywordIndex.search` commits whatever is pending and reopens the
searcher first, so a search sees every change made before it (a few ms at 1M
texts; ``bench/memory.py`` measures it). Nothing is written to disk: the memory
actor refills the index from DuckDB when it opens.

Text is NFKC-normalised, case-folded and split on word characters, so
punctuation never matters; scored terms are Snowball-stemmed (PyStemmer), so
"hiking" finds "hiked". Each text is indexed twice, tokenised here and joined
by spaces: its stems (what BM25 scores and what the exact-match flag compares),
and its glue words (stopwords and single letters, which score nothing) at their
positions in the text, so that a query of glue words only, "to be or not to
be", matches as a phrase.
"""

from __future__ import annotations

import re
import time
import unicodedata
from typing import Final

import Stemmer  # type: ignore[import-not-found]
import tantivy
from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]

_WORD: Final = re.compile(r"\w+")
STOPWORDS: Final = frozenset(STOPWORDS_EN)
_STEMMER: Final = Stemmer.Stemmer("english", 0)  # no cache of its own: _STEMS is faster
# PyStemmer's own cache costs about 1 us a word even on a hit; a dict lookup is 20 times less,
# which is much of the cost of loading a million texts. Cleared when full (about 20 MB).
_STEMS: dict[str, str] = {}
_STEMS_MAX: Final = 100_000

# A scored word leaves a gap among the glue words: a token the glue analyzer drops (it drops
# tokens of 8 bytes or more; glue words have at most 5), so the phrase positions stay true.
_GAP: Final = "~" * 8
_SCHEMA: Final = (
    tantivy.SchemaBuilder()
    .add_integer_field("label", indexed=True, fast=True)
    .add_text_field("stems", tokenizer_name="stems", index_option="freq")
    .add_text_field("glue", tokenizer_name="glue", index_option="position")
    .build()
)
_WRITER_HEAP: Final = 64_000_000  # bytes buffered before the writer cuts a segment

# How a search meets ``allowed``: inside the query as a filter of labels, or by fetching
# about enough hits without it for k of them to be allowed, whichever costs less. Measured
# at 1M texts on 2 busy cores: each label of the filter costs about 20 us (more at 1k labels,
# less at 100k), each hit fetched and checked here about 0.15 us; so for k = 30 the filter
# wins below about 700 allowed labels. Hits need not fall evenly: after _FETCHES fetches
# without k allowed (the estimate, then 8 times as many), the filter after all.
_FILTER_US_PER_LABEL: Final = 20.0
_FETCH_US_PER_HIT: Final = 0.15
_FETCHES: Final = 2

Hit = tuple[int, float]


def words(text: str) -> list[str]:
    """The normalised words of ``text``, stopwords included (phrase matching keeps them)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def terms(text_words: list[str]) -> list[str]:
    """The stems BM25 scores: no stopwords, no single letters (they carry no meaning alone)."""
    return _analyse(text_words)[0]


def _analyse(text_words: list[str]) -> tuple[list[str], list[str]]:
    """The stems of ``text_words``, and the words with each one stemmed replaced by _GAP."""
    stems, glue = [], []
    known = _STEMS
    for word in text_words:
        if word in STOPWORDS or (len(word) == 1 and not word.isdigit()):
            glue.append(word)
            continue
        stem = known.get(word)
        if stem is None:
            if len(known) >= _STEMS_MAX:
                known.clear()
            stem = known[word] = _STEMMER.stemWord(word)
        stems.append(stem)
        glue.append(_GAP)
    return stems, glue


class KeywordIndex:
    """BM25 over (label, text) pairs; ``search`` says which hits match the query exactly.

    Not thread-safe: callers serialise all calls (a search may commit pending changes).
    """

    def __init__(self) -> None:
        self._index = tantivy.Index(_SCHEMA)
        spaces = tantivy.Tokenizer.whitespace()
        self._index.register_tokenizer("stems", tantivy.TextAnalyzerBuilder(spaces).build())
        self._index.register_tokenizer(
            "glue",
            tantivy.TextAnalyzerBuilder(spaces)
            .filter(tantivy.Filter.remove_long(len(_GAP)))
            .build(),
        )
        self._index.config_reader("manual")  # reloaded by refresh(), never behind its back
        self._writer = self._index.writer(_WRITER_HEAP, 1)
        self._searcher = self._index.searcher()
        self._labels: set[int] = set()
        self.pending = False
        self.refreshes = 0
        self.last_refresh_s = 0.0

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._labels

    def add(self, label: int, text: str) -> None:
        """Index ``text`` under ``label``, replacing any earlier text of that label."""
        label = int(label)
        stems, glue = _analyse(words(text))
        if label in self._labels:
            self._writer.delete_documents_by_term("label", label)
        self._writer.add_document(
            tantivy.Document(label=label, stems=" ".join(stems), glue=" ".join(glue))
        )
        self._labels.add(label)
        self.pending = True

    def remove(self, label: int) -> bool:
        """Drop ``label``; False when it was not indexed."""
        label = int(label)
        if label not in self._labels:
            return False
        self._writer.delete_documents_by_term("label", label)
        self._labels.discard(label)
        self.pending = True
        return True

    def refresh(self) -> None:
        """Make every add and removal so far searchable (search does this itself)."""
        started = time.perf_counter()
        self._writer.commit()
        self._index.reload()
        self._searcher = self._index.searcher()
        self.pending = False
        self.refreshes += 1
        self.last_refresh_s = time.perf_counter() - started

    def search(
        self, query: str, k: int, *, allowed: set[int] | None = None
    ) -> list[tuple[int, float, bool]]:
        """Up to ``k`` hits as (label, BM25 score, exact): exact first, then by score, then label.

        ``exact`` is True when the text holds every query term (stem), or, for a query of
        glue words only (stopwords, single letters), the whole normalised query phrase; such
        a phrase hit scores 0. ``allowed``, when given, holds the only labels to return.
        """
        query_words = words(query)
        if k < 1 or not query_words or not self._labels or (allowed is not None and not allowed):
            return []
        if self.pending:
            self.refresh()
        query_terms = sorted(set(terms(query_words)))
        if not query_terms:
            phrase = (
                tantivy.Query.term_query(_SCHEMA, "glue", query_words[0])
                if len(query_words) == 1  # tantivy rejects a phrase of one word
                else tantivy.Query.phrase_query(_SCHEMA, "glue", list(query_words))
            )
            return [
                (label, 0.0, True) for label, _ in self._best(phrase, k, allowed, by_score=False)
            ]
        each = [tantivy.Query.term_query(_SCHEMA, "stems", t) for t in query_terms]
        # A text holding every term scores the same under either query: the sum over its terms.
        every = tantivy.Query.boolean_query([(tantivy.Occur.Must, q) for q in each])
        exact = self._best(every, k, allowed)
        if len(exact) == k:
            return [(label, score, True) for label, score in exact]
        some = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, q) for q in each] + [(tantivy.Occur.MustNot, every)]
        )
        rest = self._best(some, k - len(exact), allowed)
        return [(label, score, True) for label, score in exact] + [
            (label, score, False) for label, score in rest
        ]

    def _best(
        self, query: tantivy.Query, k: int, allowed: set[int] | None, *, by_score: bool = True
    ) -> list[Hit]:
        """The best ``k`` allowed hits as (label, score): by score, then label, else by label.

        tantivy breaks ties in score by document order, so this fetches until the k-th best
        scores above the last hit fetched, which no hit left behind can beat or tie.
        """
        indexed, fetches = len(self._labels), 0
        if allowed is not None and _filter_first(k, len(allowed), indexed):
            query, allowed = _only(query, allowed), None
        limit = k if allowed is None else _fetch_for(k, len(allowed), indexed)
        while True:
            hits = self._searcher.search(
                query,
                limit,
                count=False,
                order_by_field=None if by_score else "label",
                order=tantivy.Order.Asc,  # of labels; scores come best first
            ).hits
            labels = self._searcher.fast_field_values("label", [address for _, address in hits])
            found = sorted(
                (
                    (label, float(score) if by_score else 0.0)
                    for (score, _), label in zip(hits, labels, strict=True)
                    if isinstance(label, int) and (allowed is None or label in allowed)
                ),
                key=lambda hit: (-hit[1], hit[0]),
            )
            if len(hits) < limit or (
                len(found) >= k and (not by_score or found[k - 1][1] > hits[-1][0])
            ):
                return found[:k]
            if allowed is None:
                limit *= 4  # past a tie at the cut
                continue
            fetches += 1
            if fetches < _FETCHES:
                limit *= 8
            else:
                query, allowed, limit = _only(query, allowed), None, k


def _only(query: tantivy.Query, allowed: set[int]) -> tantivy.Query:
    """``query`` restricted to texts whose label is in ``allowed``, scored as before."""
    labels = tantivy.Query.term_set_query(_SCHEMA, "label", list(allowed))
    return tantivy.Query.boolean_query(
        [
            (tantivy.Occur.Must, query),
            (tantivy.Occur.Must, tantivy.Query.const_score_query(labels, 0.0)),
        ]
    )


def _fetch_for(k: int, allowed: int, indexed: int) -> int:
    """How many hits to fetch so that about 2 k of them are allowed, if hits fall evenly."""
    return max(k, -(-2 * k * indexed // allowed))


def _filter_first(k: int, allowed: int, indexed: int) -> bool:
    """Whether filtering by ``allowed`` labels costs less than fetching hits to check."""
    return _FILTER_US_PER_LABEL * allowed <= _FETCH_US_PER_HIT * _fetch_for(k, allowed, indexed)
