"""Fixtures of the hexbus tests: a fresh journal that never fsyncs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hexbus.journal import Journal
from tests.support.journal import NEVER


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "j", fsync=NEVER) as j:
        yield j
