"""Chat history files for ``hexbus memory import``: JSON Lines of past turns, checked line by
line, or a chat app's own export (WhatsApp, Telegram, Discord: :mod:`actors.memory.exports`).

Each line is an object with ``id``, ``conversation``, ``speaker``, ``text`` and
``timestamp`` (ISO 8601, or unix seconds); ``person_id`` and ``role`` are read
when present, and every other field is kept as metadata. A bad line is reported
with its number and skipped; nothing else in the file is lost.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import msgspec

from actors.memory.exports import ZIP_MAGIC, identify, read_export, zip_chat
from schemas import ImportedTurn, MemoryImport

REQUIRED: Final = ("id", "conversation", "speaker", "text", "timestamp")
KNOWN: Final = (*REQUIRED, "person_id", "role")
BATCH_TURNS: Final = 200
BATCH_BYTES: Final = 256 << 10  # well under the bus's 1 MiB envelope limit
MAX_TEXT: Final = 20_000


class HistoryError(Exception):
    """The file as a whole cannot be imported (missing, unreadable, or no usable line)."""


def _timestamp(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("timestamp is a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # a naive time is taken as UTC, like most exports
        return parsed.timestamp()
    raise ValueError(f"timestamp must be ISO 8601 text or unix seconds, not {type(value).__name__}")


def parse_line(line: str, assistants: frozenset[str]) -> ImportedTurn:
    """One line as a turn; ValueError with the reason when it is not one."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for key in ("conversation", "speaker", "text"):
        if not isinstance(data[key], str):
            raise ValueError(f"{key} must be text")
    if (
        not isinstance(data["id"], str | int)
        or isinstance(data["id"], bool)
        or str(data["id"]).strip() == ""
    ):
        raise ValueError("id must be non-empty text or a number")
    if not data["text"].strip():
        raise ValueError("text is empty")
    if len(data["text"]) > MAX_TEXT:
        raise ValueError(f"text is longer than {MAX_TEXT} characters")
    if not data["conversation"].strip():
        raise ValueError("conversation is empty")
    try:
        at = _timestamp(data["timestamp"])
    except ValueError as exc:
        raise ValueError(f"bad timestamp {data['timestamp']!r}: {exc}") from None
    given = data.get("role")
    if given not in (None, "user", "assistant"):
        raise ValueError("role must be user or assistant")
    role: Literal["user", "assistant"] = given or (
        "assistant" if data["speaker"].strip().casefold() in assistants else "user"
    )
    person_id = data.get("person_id", "")
    meta = {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items() if k not in KNOWN
    }
    conversation = data["conversation"].strip()
    return ImportedTurn(
        id=str(data["id"]).strip(),
        conversation=conversation if ":" in conversation else f"import:{conversation}",
        speaker=data["speaker"].strip(),
        text=data["text"],
        at=at,
        person_id=str(person_id).strip() if isinstance(person_id, str | int) else "",
        role=role,
        meta=meta,
    )


# What reading a damaged zip or document raises (zlib and EOF errors from a cut zip).
EXPORT_ERRORS: Final = (
    ValueError,
    RuntimeError,
    NotImplementedError,
    EOFError,
    zlib.error,
    zipfile.BadZipFile,
)


def _fits(turn: ImportedTurn, problems: list[str]) -> bool:
    """An export's turn within what a JSON Lines one may be; else said in ``problems``."""
    if not math.isfinite(turn.at):
        problems.append(f"{turn.id}: its time is not a number")
        return False
    if len(turn.text) > MAX_TEXT:
        problems.append(f"{turn.id}: text is longer than {MAX_TEXT} characters")
        return False
    return True


def read_history(
    path: Path, assistants: tuple[str, ...] = ("Hex",)
) -> tuple[list[ImportedTurn], list[str]]:
    """The turns of a history file and, for every line skipped, ``"line N: reason"``."""
    try:
        with path.open("rb") as file:
            zipped = file.read(4) == ZIP_MAGIC
        # A WhatsApp zip is read for its chat in place: the media beside it are not loaded.
        raw = zip_chat(path) if zipped else path.read_bytes()
    except OSError as exc:
        raise HistoryError(f"cannot read {path}: {exc.strerror or exc}") from None
    except EXPORT_ERRORS as exc:
        raise HistoryError(f"{path} looks like a WhatsApp zip but is not one: {exc}") from None
    return parse_history(raw, str(path), assistants)


def parse_history(
    raw: bytes, name: str, assistants: tuple[str, ...] = ("Hex",), first_line: int = 1
) -> tuple[list[ImportedTurn], list[str]]:
    """The turns of a history file's bytes (``name`` for messages), as :func:`read_history`;
    lines are numbered from ``first_line`` (a part of a longer file). A WhatsApp, Telegram or
    Discord export (:mod:`actors.memory.exports`) is read whole, by its own reader."""
    who = frozenset(a.casefold() for a in assistants)
    kind, content = identify(raw) if first_line == 1 else ("jsonl", raw)
    if kind != "jsonl":
        try:
            exported, skipped = read_export(content, name, kind, who)
        except (*EXPORT_ERRORS, AttributeError, KeyError, TypeError) as exc:
            raise HistoryError(
                f"{name} looks like a {kind} export but is not one this version reads: {exc!r}"
            ) from None
        exported = [t for t in exported if _fits(t, skipped)]
        if not exported:
            raise HistoryError(
                f"{name} ({kind} export) has no usable turns"
                + (f" ({skipped[0]}{'…' if len(skipped) > 1 else ''})" if skipped else "")
            )
        return exported, skipped
    turns: list[ImportedTurn] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line_bytes in enumerate(raw.splitlines(), start=first_line):
        try:
            line = line_bytes.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            problems.append(f"line {number}: not UTF-8 text")
            continue
        if not line.strip():
            continue
        try:
            turn = parse_line(line, who)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if turn.id in seen:
            problems.append(f"line {number}: id {turn.id!r} already used on line {seen[turn.id]}")
            continue
        seen[turn.id] = number
        turns.append(turn)
    if not turns:
        raise HistoryError(
            f"{name} has no usable turns"
            + (
                f" ({problems[0]}{'…' if len(problems) > 1 else ''})"
                if problems
                else " (it is empty)"
            )
        )
    return turns, problems


def batches(turns: list[ImportedTurn], source: str, by: str = "") -> Iterator[MemoryImport]:
    """Import events of at most BATCH_TURNS turns and about BATCH_BYTES each, in file order."""
    encode = msgspec.msgpack.encode
    batch: list[ImportedTurn] = []
    size = 0
    for turn in turns:
        turn_size = len(encode(turn))
        if batch and (len(batch) >= BATCH_TURNS or size + turn_size > BATCH_BYTES):
            yield MemoryImport(turns=tuple(batch), source=source, by=by)
            batch, size = [], 0
        batch.append(turn)
        size += turn_size
    if batch:
        yield MemoryImport(turns=tuple(batch), source=source, by=by)
