from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.memory import Parts, open_parts


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    """The memory actor's plain classes on a fresh DuckDB file, with the real embedding model."""
    opened = open_parts(tmp_path)
    yield opened
    opened.close()
