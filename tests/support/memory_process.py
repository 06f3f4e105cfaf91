"""Helpers of the memory actor's process tests: starting it, its export, its change events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.support.harness import Hex
from tests.support.memory import memory_config


def start(hex_factory: Callable[..., Hex], extra: str = "", **config: Any) -> Hex:
    config.setdefault("summaries", False)
    return hex_factory(memory_config(**config) + extra).start()


def export(hx: Hex) -> list[dict[str, Any]]:
    out = hx.cli("memory", "export")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def journal_files(hx: Hex) -> dict[str, str]:
    root = hx.data_dir / "actors" / "memory" / "journals"
    return (
        {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.md"))}
        if root.exists()
        else {}
    )
