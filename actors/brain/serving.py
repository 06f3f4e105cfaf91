"""Which backend is answering which message, in a file that outlives a killed brain.

A backend that hangs without failing (a server that accepts the request and never
sends a token) keeps the brain's loop turning and its message pending; the
supervisor kills the brain once that message is older than ``work_timeout_s``.
The next incarnation reads here what the last one was doing when it died: every
backend named is suspended (cooled down) before the first reply, so the message
is answered by the next backend in the chain, and a message that was being
answered when ``HANG_LIMIT`` incarnations died is given up on with a failed reply
rather than killing brains forever.

The file is small JSON, rewritten (without fsync: it must survive a killed
process, not a power cut) whenever a reply starts on a backend or ends.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec

HANG_LIMIT = 3  # incarnations that died answering one message before it is given up on


class Serving(msgspec.Struct, kw_only=True):
    backend: str = ""  # the backend asked last; empty before one was
    starts: int = 1  # incarnations that started answering the message, this one included


class ServingRecord:
    """``previous``: what the last incarnation left (message id → Serving); ``now``: this one's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous: dict[str, Serving] = {}
        with contextlib.suppress(FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            self.previous = msgspec.json.decode(path.read_bytes(), type=dict[str, Serving])
        self.now: dict[str, Serving] = {}

    def suspects(self) -> set[str]:
        """Backends that were answering when the last incarnation died."""
        return {s.backend for s in self.previous.values() if s.backend}

    def start(self, message_id: str) -> int:
        """This incarnation starts answering ``message_id``: the incarnations that have, counting
        this one (1 the first time)."""
        before = self.previous.get(message_id)
        serving = self.now[message_id] = Serving(starts=before.starts + 1 if before else 1)
        self._write()
        return serving.starts

    def asking(self, message_id: str, backend: str) -> None:
        serving = self.now.get(message_id)
        if serving is not None and serving.backend != backend:
            serving.backend = backend
            self._write()

    def done(self, message_id: str) -> None:
        self.previous.pop(message_id, None)
        if self.now.pop(message_id, None) is not None:
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(msgspec.json.encode(self.now))
