"""Notes an actor leaves for its user's commands: a line ``hexbus status`` prints under the
table (the web page's address with its token), with data for the actor's own command.

They are files in the run directory (0700, this user's only), ``notes/<actor>.json`` (0600),
written whole or not at all; a note whose process is gone is not shown, so a crashed actor's
last note never misleads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hexbus.files import write_atomic

__all__ = ["read", "remove", "write"]


def _path(run_dir: Path, actor: str) -> Path:
    return run_dir / "notes" / f"{actor}.json"


def write(run_dir: Path, actor: str, line: str, **data: Any) -> None:
    """Leave ``line`` (and ``data``) for ``actor``, replacing its last note."""
    path = _path(run_dir, actor)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    note = json.dumps({**data, "line": line, "pid": os.getpid()}).encode()
    write_atomic(path, note, durable=False, mode=0o600)


def read(run_dir: Path, actor: str | None = None) -> dict[str, dict[str, Any]]:
    """The notes of live processes by actor name (only ``actor``'s when given)."""
    notes = {}
    paths = [_path(run_dir, actor)] if actor else sorted((run_dir / "notes").glob("*.json"))
    for path in paths:
        try:
            note = json.loads(path.read_text(encoding="utf-8"))
            os.kill(int(note["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(note, dict):
            notes[path.stem] = note
    return notes


def remove(run_dir: Path, actor: str) -> None:
    try:
        _path(run_dir, actor).unlink()
    except FileNotFoundError:
        pass
