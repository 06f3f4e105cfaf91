from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.memory.store import MemoryStore
from tests.support.memory import Parts, open_parts
from tests.support.memory_store import NOW


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    """The memory actor's plain classes on a fresh DuckDB file, with the real embedding model."""
    opened = open_parts(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MemoryStore]:
    s = MemoryStore(tmp_path / "memory.duckdb", clock=lambda: NOW)
    yield s
    s.close()
