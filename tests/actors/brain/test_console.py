"""The text console's input: every line reaches the bus, whatever bytes a pipe carries."""

from __future__ import annotations

import asyncio
import io

from actors.brain.console import _lines


def test_bytes_that_are_not_utf8_become_replacement_characters_not_a_crash() -> None:
    raw = b"hello\n\x00\xff binary?\n"
    stream = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="surrogateescape")

    async def read() -> list[str]:
        return [line async for line in _lines(stream, "")]

    lines = asyncio.run(read())
    assert lines == ["hello", "\x00\ufffd binary?"]
    for line in lines:
        line.encode("utf-8")  # what the codec does with the message text
