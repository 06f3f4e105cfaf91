"""structlog setup: one event per line, JSON when not on a terminal, secrets redacted."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|secret|password|api_?key|authorization)", re.I)
_SECRET_VALUES = re.compile(
    r"(?:[MN][A-Za-z\d_-]{23,}\.[\w-]{6}\.[\w-]{27,}|sk-[A-Za-z0-9_-]{16,})"
)


_EXTRA_SECRETS: set[str] = set()


def add_secret(value: str) -> None:
    """Redact ``value`` wherever it appears in a log line (a secret read from a file, not the environment)."""
    if len(value) >= 8:
        _EXTRA_SECRETS.add(value)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never log a secret: blank values of secret-named keys and token-shaped strings."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key) and value:
            event_dict[key] = "[redacted]"
        elif isinstance(value, str) and _SECRET_VALUES.search(value):
            event_dict[key] = _SECRET_VALUES.sub("[redacted]", value)
    secrets = {
        os.environ.get(name) or "" for name in ("DISCORD_TOKEN", "OPENAI_API_KEY")
    } | _EXTRA_SECRETS
    for secret in secrets:
        if len(secret) >= 8:
            for key, value in list(event_dict.items()):
                if isinstance(value, str) and secret in value:
                    event_dict[key] = value.replace(secret, "[redacted]")
    return event_dict


def configure(process: str, level: str = "info") -> None:
    """Configure structlog for this process; logs go to stderr."""
    renderer: Any
    if sys.stderr.isatty() and not os.environ.get("HEXBUS_LOG_JSON"):
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # One write per line (print() writes the line and its newline separately): processes that
        # share one log file, as the supervisor's children do, must never splice each other's lines.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process, pid=os.getpid())


class RateLimitedCounter:
    """Counts rejected frames by kind; logs the first of each kind and then at most every ``every_s``."""

    def __init__(self, logger: Any, every_s: float = 10.0) -> None:
        self.log = logger
        self.every_s = every_s
        self.counts: dict[str, int] = {}
        self.total = 0
        self._last_log: dict[str, float] = {}
        self._since_log: dict[str, int] = {}
        self.changed = False

    def count(self, kind: str) -> None:
        """Count one, for a caller that logs it in its own words."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.total += 1
        self.changed = True

    def add(self, kind: str, detail: str) -> None:
        self.count(kind)
        self._since_log[kind] = self._since_log.get(kind, 0) + 1
        now = time.monotonic()
        if now - self._last_log.get(kind, -1e9) >= self.every_s:
            self.log.warning(
                "bus.frame_rejected",
                kind=kind,
                detail=detail[:200],
                count=self._since_log[kind],
                total=self.counts[kind],
            )
            self._last_log[kind] = now
            self._since_log[kind] = 0
