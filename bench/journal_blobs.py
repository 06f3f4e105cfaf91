"""What keeping large blobs in files beside the journal costs and saves (issue 13, item 3).

Two real journals on this disk, written the same way, one with ``blob_file_bytes`` (the
default 64 KiB: blobs in ``journal/blobs/``), one without (blobs inside the records, as with
``bus.journal.blob_file_kb = 0``), both with the default batch fsync policy:

- ``append``: 400 utterances of 100 kB speech with a chat line after every fourth, appended
  one by one: microseconds per append of speech, and of chat (the blob file is fsynced
  before its record, so speech costs one more fdatasync per utterance);
- ``catch_up``: a chat subscriber catching up over all of it from the disk (cache off),
  fetching ``chat.`` only, as memory does after a day stopped: milliseconds for the whole
  catch-up; with blobs in files it never reads the audio;
- ``records_mb``: what the journal's own segments hold, the budget chat shares.

Ratios compare the two in the same run (the machine is shared): ``*_files_over_inline``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import shutil
import tempfile
import time
from typing import Any

from bench._common import emit, parser, progress
from hexbus.journal import Journal

AUDIO = 100_000


def workload(utterances: int) -> list[tuple[bytes, bytes, bytes | None]]:
    out: list[tuple[bytes, bytes, bytes | None]] = []
    for i in range(utterances):
        out.append((b"stt.segment.discord", b"segment %d" % i, bytes([i % 251]) * AUDIO))
        if i % 4 == 3:
            out.append((b"chat.message.discord", b"line %d: see you at eight" % i, None))
    return out


def measure(
    directory: Path, items: list[tuple[bytes, bytes, bytes | None]], files: bool
) -> dict[str, Any]:
    speech: list[float] = []
    chat: list[float] = []
    with Journal(directory, blob_file_bytes=(64 << 10) if files else None) as journal:
        for seq, (topic, envelope, blob) in enumerate(items, start=1):
            t = time.perf_counter()
            journal.append(1, seq, topic, envelope, blob)
            (speech if blob is not None else chat).append(time.perf_counter() - t)
    records = sum(p.stat().st_size for p in directory.glob("*.seg"))
    with Journal(
        directory, blob_file_bytes=(64 << 10) if files else None, cache_bytes=0
    ) as journal:
        t = time.perf_counter()
        after, lines = 0, 0
        while after < journal.head:
            got, after = journal.read(after, prefixes=(b"chat.",), max_scan=20000)
            lines += len(got)
        catch_up = time.perf_counter() - t
    return {
        "append_speech_us": round(1e6 * sorted(speech)[len(speech) // 2], 1),
        "append_chat_us": round(1e6 * sorted(chat)[len(chat) // 2], 1),
        "catch_up_ms": round(1e3 * catch_up, 1),
        "catch_up_lines": lines,
        "records_mb": round(records / (1 << 20), 2),
    }


def main() -> None:
    args = parser(__doc__).parse_args()
    utterances = 100 if args.quick else 400
    items = workload(utterances)
    root = Path(tempfile.mkdtemp(prefix="hxjb", dir="/tmp"))
    try:
        progress(f"{utterances} utterances, blobs inside the records")
        inline = measure(root / "inline", items, files=False)
        progress("the same, blobs in files")
        files = measure(root / "files", items, files=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {
        "bench": "journal_blobs",
        "quick": args.quick,
        "utterances": utterances,
        "inline": inline,
        "files": files,
    }
    for key in ("append_speech_us", "append_chat_us", "catch_up_ms", "records_mb"):
        result[f"{key}_files_over_inline"] = (
            round(files[key] / inline[key], 3) if inline[key] else None
        )
    emit(result)


if __name__ == "__main__":
    main()
