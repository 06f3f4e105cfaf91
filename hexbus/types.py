"""Type aliases shared across hexbus."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import zmq

Frames: TypeAlias = Sequence[bytes | zmq.Frame]
Topic: TypeAlias = str
Offset: TypeAlias = int
Session: TypeAlias = int
Seq: TypeAlias = int
