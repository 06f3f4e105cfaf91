"""Fixtures of the brain's persona tests: Hex's persona, its audit scenarios, a small persona."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.brain.persona import Persona, load_persona
from actors.brain.scenarios import Scenario, load_scenarios
from tests.support.persona import SMALL


@pytest.fixture(scope="module")
def hex_persona() -> Persona:
    return load_persona()


@pytest.fixture(scope="module")
def scenarios() -> list[Scenario]:
    return load_scenarios()


@pytest.fixture
def small(tmp_path: Path) -> Persona:
    path = tmp_path / "persona.toml"
    path.write_text(SMALL, encoding="utf-8")
    return load_persona(path)
