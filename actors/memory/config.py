"""The memory actor's settings (``[actors.memory.config]`` in supervisor.toml)."""

from __future__ import annotations

import msgspec

from actors.memory.documents import Limits
from actors.memory.rank import Weights


class MemoryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the memory actor keeps, finds, ages and asks the brain about.

    The diary settings keep their first names in supervisor.toml (``journal_dir``,
    ``journal_importance``, ``journal_scan_s``), as the folder on disk keeps ``journals/``.
    """

    path: str = ""  # the DuckDB file; empty = memory.duckdb in the actor's data folder
    embedder: str = ""  # a sentence-transformers folder; empty = the packaged all-MiniLM-L6-v2
    weights: Weights = Weights()
    candidates: int = 50  # from each of the vector and keyword searches before ranking (>= 3 k)
    anchors: int = 2  # anchors about the person always offered beside the hits
    suggestions: bool = False  # facts from replies wait for approval instead of being stored
    owners: tuple[str, ...] = ()  # person ids allowed to forget everything about a person
    duplicate_similarity: float = 0.92  # a new fact this close to one about the person merges
    # A "that's wrong" multiplies confidence by this: below low_confidence, so hedged.
    correction_factor: float = 0.4
    archive_after_days: float = 180.0  # older than this and below the importance: archived
    archive_below_importance: float = 0.3
    aging_interval_s: float = 3600.0  # how often aging runs (0: never)
    # Episodic memory: a person's own turns are searchable verbatim (Hex's own words are not: a
    # reply indexed as memory is how a bot comes to "remember" what it made up).
    turn_min_words: int = 3  # shorter turns ("ok", "lol") are kept in the history, not indexed
    turn_importance: float = 0.2  # low: old turns age into the archive unless a summary keeps them
    # Rolling summaries and contradiction checks, asked of the brain's model over the bus.
    recent_turns: int = 30  # per conversation, never summarised (the brain has them whole)
    summary_batch: int = 20  # turns folded into one summary
    summaries: bool = True
    contradiction_similarity: float = 0.6  # facts about one person this close are checked
    brain_timeout_s: float = 120.0  # a summary waits behind people's replies; generous on CPU
    brain_retry_s: float = 60.0  # after a timeout (no brain running), wait before asking again
    hygiene_interval_s: float = 2.0
    # Markdown diaries: a file per notable moment, re-read when a person edits or deletes one.
    diary_dir: str = msgspec.field(default="", name="journal_dir")  # empty = journals/ in data
    # An exchange the brain rates at least this becomes a diary entry.
    diary_importance: float = msgspec.field(default=0.7, name="journal_importance")
    # How often the folder is checked for people's edits (0: never).
    diary_scan_s: float = msgspec.field(default=5.0, name="journal_scan_s")
    documents: Limits = Limits()
