"""What keeps journal offsets from ever being reused: a mark beside the journal and its starts.

Actors skip every durable event at or below the offset they applied, so an offset handed out
twice is an event silently skipped. Two small files prevent that, and make a loss loud:

- The **mark** (``journal.mark``, beside the journal folder, so it outlives that folder's
  deletion) holds the journal's epoch, the highest offset the broker may hand out before it
  writes the mark again (``reserved``: reserved ``RESERVE`` offsets at a time, one atomic write
  each time), and, after a clean close, the head it closed at. Every offset ever handed out is
  at or below ``reserved``.
- The **starts** (``epochs`` in the journal folder) list where numbering jumped: after an unclean
  stop the journal goes on from ``reserved + 1`` (offsets a crashed broker may have handed out are
  never reused), and when history was lost (the folder gone or replaced, a damaged record, a
  segment set aside) it goes on from there in a new *epoch*, which every subscriber sees in its
  fetch replies and reconciles, loudly. Recovery accepts a gap between segments only at a start.

Mark format (``<4sB16sQQBI``, 42 bytes): magic ``HXMK``, version 1, epoch (16 ASCII hex
digits), reserved, head at a clean close, clean (0/1), CRC-32 of everything before it.
Starts format: one line per start, ``<epoch> <first offset> <lost after>``, where ``lost
after`` is the offset after which records were lost (``first - 1`` when none were).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Final, NamedTuple

from hexbus.files import write_atomic

RESERVE: Final = 16384  # offsets reserved per write of the mark
_MARK: Final = struct.Struct("<4sB16sQQB")
_CRC: Final = struct.Struct("<I")
_MAGIC: Final = b"HXMK"
STARTS_NAME: Final = "epochs"


class MarkUnreadable(Exception):
    """The mark exists but is damaged: the journal must be treated as having lost history."""


class Mark(NamedTuple):
    epoch: str
    reserved: int  # no offset above this was ever handed out
    head: int  # the head at a clean close
    clean: bool

    def encode(self) -> bytes:
        body = _MARK.pack(
            _MAGIC, 1, self.epoch.encode("ascii"), self.reserved, self.head, int(self.clean)
        )
        return body + _CRC.pack(zlib.crc32(body))


def mark_path(directory: Path) -> Path:
    """The mark of the journal in ``directory``: beside it, so deleting the folder keeps it."""
    return directory.parent / f"{directory.name}.mark"


def read_mark(path: Path) -> Mark | None:
    """The mark at ``path``; ``None`` if there is none; :class:`MarkUnreadable` if damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if (
        len(data) != _MARK.size + _CRC.size
        or zlib.crc32(data[: _MARK.size]) != _CRC.unpack(data[_MARK.size :])[0]
    ):
        raise MarkUnreadable(f"{path}: damaged ({len(data)} bytes, or its checksum is wrong)")
    magic, version, epoch, reserved, head, clean = _MARK.unpack(data[: _MARK.size])
    if magic != _MAGIC or version != 1:
        raise MarkUnreadable(f"{path}: not a journal mark (magic {magic!r}, version {version})")
    return Mark(epoch.decode("ascii"), reserved, head, bool(clean))


def write_mark(path: Path, mark: Mark, *, durable: bool = True) -> None:
    write_atomic(path, mark.encode(), durable=durable)


class Start(NamedTuple):
    epoch: str
    first: int  # the first offset numbered from here
    lost_after: int  # records after this offset and before ``first`` were lost (first - 1: none)


def read_starts(directory: Path) -> list[Start]:
    """The journal's starts, oldest first; a line that does not parse ends the list."""
    try:
        text = (directory / STARTS_NAME).read_text("ascii")
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    starts: list[Start] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            break
        starts.append(Start(parts[0], int(parts[1]), int(parts[2])))
    return starts


def write_starts(directory: Path, starts: list[Start], *, durable: bool = True) -> None:
    text = "".join(f"{s.epoch} {s.first} {s.lost_after}\n" for s in starts)
    write_atomic(directory / STARTS_NAME, text.encode("ascii"), durable=durable)


def new_epoch() -> str:
    return os.urandom(8).hex()
