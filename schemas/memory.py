"""Memory events: the brain's queries, manual memories, corrections and forgetting, and reports.

Queries and exports are request/response pairs (volatile, with a deadline: a lost one is a
timeout the caller handles). Everything that changes memory is durable, and each change is
answered with a durable ``memory.changed`` whose causation is the request's event id.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from schemas.base import Event

MemoryKind = Literal["fact", "summary", "anchor", "journal", "document"]


class MemoryQuery(Event, frozen=True, kw_only=True, tag="memory.query"):
    """Ask for the memories that fit a text; answered by a MemoryResult with the same correlation."""

    text: str
    person_id: str = ""
    channel: str = ""
    k: int = 5
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    since: float = 0.0  # unix seconds; 0 = no bound
    until: float = 0.0
    include_archived: bool = False
    # The conversation's time (unix seconds): "in May" and "two weeks ago" in the text, and
    # recency, count from it; 0 = now. An import's questions are asked in its past.
    at: float = 0.0
    # These memories by id, in this order, whatever their state (pending, archived); the
    # filters above still apply. What the page's "why Hex remembered this" shows.
    ids: tuple[str, ...] = ()
    # The newest ``k`` memories the filters allow, unranked (``text`` may be empty): a browser of
    # what is remembered rather than a search.
    browse: bool = False
    # A person looking (the page's memory panel), not Hex recalling: hits are not marked as
    # retrieved, so looking never keeps a memory from aging.
    inspect: bool = False


class MemoryHit(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    text: str
    score: float = 0.0
    kind: str = "fact"
    confidence: float = 1.0
    quote: str = ""
    person_id: str = ""
    source: str = ""
    tags: tuple[str, ...] = ()
    turn_ids: tuple[
        str, ...
    ] = ()  # provenance: the turns (live event ids or imported ids) it came from
    document: str = ""
    created: float = 0.0
    hedge: bool = False  # low confidence: say "I think you mentioned…"
    importance: float = 0.5
    archived: bool = False
    pending: bool = False  # a suggestion waiting for a person's approval
    # How a search scored it, each 0..1 (semantic, keyword, recency, importance, confidence,
    # fused) and 1.0 for the bonuses it got (person, when, exact); empty when not ranked.
    parts: dict[str, float] = {}


class PersonProfile(msgspec.Struct, frozen=True, kw_only=True):
    """The persona state profile of one person, as the memory actor keeps it long-term."""

    hobbies: tuple[str, ...] = ()
    tastes: tuple[str, ...] = ()  # artistic tastes
    sentiment: str = ""  # how they feel about Hex lately
    roster: dict[str, dict[str, str]] = {}  # people they know: name -> relation, sentiment, note


class MemoryResult(Event, frozen=True, kw_only=True, tag="memory.result"):
    hits: tuple[MemoryHit, ...] = ()
    profile: PersonProfile | None = None  # the asking person's, when the query names one
    error: str = ""


class MemoryAdd(Event, frozen=True, kw_only=True, tag="memory.add"):
    """A manual memory (``hexbus memory add``, /remember)."""

    text: str
    kind: MemoryKind = "fact"
    person_id: str = ""
    importance: float = 0.5
    tags: tuple[str, ...] = ()
    by: str = ""  # who asked


class MemoryEdit(Event, frozen=True, kw_only=True, tag="memory.edit"):
    """Change a memory's text, importance or tags; approve or reject a pending suggestion."""

    id: str
    text: str = ""
    importance: float = -1.0  # < 0: unchanged
    tags: tuple[str, ...] | None = None
    approve: bool | None = None  # True approves a suggestion; False rejects (deletes) it
    by: str = ""


class MemoryCorrect(Event, frozen=True, kw_only=True, tag="memory.correct"):
    """A person says a memory is wrong: lower its confidence, or remove it."""

    id: str
    note: str = ""
    remove: bool = False
    by: str = ""


class MemoryForget(Event, frozen=True, kw_only=True, tag="memory.forget"):
    """Forget by ids, by a query's matches, or everything about a person (owner only)."""

    ids: tuple[str, ...] = ()
    query: str = ""
    person_id: str = ""
    by: str = ""


class ImportedTurn(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of an imported chat history; ``id`` is the original id, kept as provenance."""

    id: str
    conversation: str
    speaker: str
    text: str
    at: float  # unix seconds
    person_id: str = ""  # "" = derived from the speaker's name
    role: Literal["user", "assistant"] = "user"
    meta: dict[str, str] = {}  # the line's other fields, as JSON text


class MemoryImport(Event, frozen=True, kw_only=True, tag="memory.import"):
    """A batch of past turns (``hexbus memory import``): stored and indexed like live ones."""

    turns: tuple[ImportedTurn, ...]
    source: str = ""  # the file it came from
    by: str = ""


class MemoryImportFile(Event, frozen=True, kw_only=True, tag="memory.import.file"):
    """A history file's lines to parse and import (the page's import); the blob is JSON Lines
    cut at line ends, and line numbers in the report count from ``first_line``. A bad line is
    reported by number and skipped, as ``hexbus memory import`` does."""

    name: str
    first_line: int = 1
    assistants: tuple[str, ...] = ("Hex",)
    by: str = ""


# The document types the memory actor reads (actors/memory/documents.py).
DOCUMENT_SUFFIXES: Final = (".pdf", ".xlsx", ".txt", ".md", ".json", ".csv")


class MemoryDocument(Event, frozen=True, kw_only=True, tag="memory.document"):
    """An uploaded document; its bytes are the blob. Stored as chunks, all or nothing."""

    name: str
    person_id: str = ""  # who it is about or from ("" = general)
    tags: tuple[str, ...] = ()
    sha256: str = ""  # of the blob, checked on arrival when set
    by: str = ""


MemoryAction = Literal[
    "added",
    "suggested",
    "edited",
    "approved",
    "rejected",
    "corrected",
    "forgotten",
    "refused",
    "imported",
    "stored",
    "superseded",
    "summarized",
]


class MemoryProgress(Event, frozen=True, kw_only=True, tag="memory.progress"):
    """How far a long request has got (an upload's chunks embedded), so the command that sent it
    can show a bar; volatile, a lost one is only a bar that jumps."""

    request: str  # the event id of the durable request
    done: int
    total: int
    unit: str = "chunks"


class MemoryChanged(Event, frozen=True, kw_only=True, tag="memory.changed"):
    """What a change request did; ``causation`` is the request's event id.

    ``suggested``: a fact from a conversation waits for approval (``detail`` is its text).
    ``imported``/``stored``: counts say how many turns or document chunks were kept.
    ``superseded``: ids are (older, newer) and ``detail`` both texts, kept for review.
    ``summarized``: ids are the summary and the facts taken from the same turns.
    """

    action: MemoryAction
    ids: tuple[str, ...] = ()
    counts: dict[str, int] = {}
    detail: str = ""


class MemoryReview(Event, frozen=True, kw_only=True, tag="memory.review"):
    """Ask what waits on a person's judgement; answered by MemoryReviewed (``hexbus memory review``)."""

    limit: int = 50


class Contradiction(msgspec.Struct, frozen=True, kw_only=True):
    older_id: str
    older_text: str
    newer_id: str
    newer_text: str
    at: float
    note: str = ""


class MemoryReviewed(Event, frozen=True, kw_only=True, tag="memory.reviewed"):
    """Pending suggestions (approve or reject them), the contradictions that superseded a memory,
    and what aging archived."""

    pending: tuple[MemoryHit, ...] = ()
    contradictions: tuple[Contradiction, ...] = ()
    archived: tuple[MemoryHit, ...] = ()  # archived most recently, newest first
    archived_total: int = 0  # archived in all (still found by a search that asks for them)


class MemoryHistory(Event, frozen=True, kw_only=True, tag="memory.history"):
    """Ask for a conversation's stored turns (the newest ``limit`` before ``before``, oldest
    first), or with ``prefix`` for the conversations whose id starts with it, latest first.
    Answered by MemoryHistoryResult. A conversation's id is ``platform:channel``."""

    conversation: str = ""
    prefix: str = ""
    before: float = 0.0  # unix seconds; 0 = up to now
    before_id: str = ""  # with ``before``: the turns before this one at that time too
    limit: int = 50


class ConversationInfo(msgspec.Struct, frozen=True, kw_only=True):
    conversation: str
    turns: int
    first_at: float
    last_at: float
    preview: str = ""  # the start of its first turn


class MemoryHistoryResult(Event, frozen=True, kw_only=True, tag="memory.history.result"):
    turns: tuple[ImportedTurn, ...] = ()
    more: bool = False  # older turns exist before the first one given
    conversations: tuple[ConversationInfo, ...] = ()
    error: str = ""


class MemoryExport(Event, frozen=True, kw_only=True, tag="memory.export"):
    """Ask for every memory as JSON Lines; answered by MemoryExported with the lines in the blob."""

    include_archived: bool = True


class MemoryExported(Event, frozen=True, kw_only=True, tag="memory.exported"):
    count: int
    error: str = ""
