"""Memory test helpers: a real memory actor under a supervisor, and its parts in-process.

* :func:`memory_config`, :func:`start`, :func:`add`, :func:`search`: a Hex running the memory
  actor, and the two requests most tests make of it.
* :func:`open_parts`: the plain classes the actor dispatches to, on a real DuckDB file and
  the real packaged embedding model, with no bus (loaded once per test process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from actors.memory.bank import MemoryBank
from actors.memory.config import MemoryConfig
from actors.memory.curation import Curation
from actors.memory.edits import Edits
from actors.memory.embed import Embedder, embedding_model
from actors.memory.ingest import Ingest
from actors.memory.search import Search
from actors.memory.store import MemoryStore
from hexbus.ask import ask, change
from schemas import MemoryAdd, MemoryChanged, MemoryQuery, MemoryResult
from tests.support.harness import FAST_BUS, Hex, actor_toml

OWNER = "owner1"


def memory_config(**config: Any) -> str:
    """A supervisor.toml running the memory actor (with :data:`OWNER` as owner) on a fast bus."""
    return FAST_BUS + actor_toml(
        "memory",
        "actors.memory.actor:MemoryActor",
        heartbeat_timeout_s=20.0,
        config={"owners": [OWNER], **config},
    )


def start(hex_factory: Callable[..., Hex], **config: Any) -> Hex:
    return hex_factory(memory_config(**config)).start()


def add(hx: Hex, text: str, **fields: Any) -> str:
    """Add a manual memory; its id."""
    report = asyncio.run(change(hx.endpoints, MemoryAdd(text=text, **fields), MemoryChanged))
    assert report.action == "added", report
    return report.ids[0]


def search(hx: Hex, text: str, **fields: Any) -> list[Any]:
    """The hits of a memory query."""
    result, _ = asyncio.run(
        ask(hx.endpoints, MemoryQuery(text=text, **fields), MemoryResult, timeout=20)
    )
    assert not result.error, result.error
    return list(result.hits)


def embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once per test process."""
    return embedding_model().get()


@dataclass
class Parts:
    """The memory actor's plain classes over one store, as its setup builds them."""

    config: MemoryConfig
    bank: MemoryBank
    ingest: Ingest
    edits: Edits
    curation: Curation
    search: Search

    @property
    def store(self) -> MemoryStore:
        return self.bank.store

    def close(self) -> None:
        self.bank.close()


def open_parts(folder: Path, **config: Any) -> Parts:
    """The parts on ``folder``/memory.duckdb with diaries in ``folder``/journals; ``config``
    as in ``[actors.memory.config]``. Reopening the same folder is a restart."""
    settings = msgspec.convert({"owners": [OWNER], **config}, MemoryConfig)
    bank = MemoryBank.open(
        folder / "memory.duckdb",
        embedder(),
        folder / "journals",
        duplicate_similarity=settings.duplicate_similarity,
    )
    return Parts(
        config=settings,
        bank=bank,
        ingest=Ingest(bank, settings),
        edits=Edits(bank, settings),
        curation=Curation(bank, settings),
        search=Search(bank, settings),
    )
