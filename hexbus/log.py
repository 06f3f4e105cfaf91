"""structlog setup: one event per line, JSON when not on a terminal, secrets redacted."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections import deque
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|secret|password|api_?key|authorization|cookie)", re.I)
# Names of environment variables that hold secrets (also actors/supervisor/environment.py's rule).
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|AUTH|CREDENTIAL|PRIVATE|(^|_)KEY($|_)", re.I)
_SECRET_VALUES = re.compile(
    # a Discord bot token (its first part is a user id in base64: starts with M, N or O)
    r"\b[MNO][A-Za-z\d_-]{23,27}\.[\w-]{6}\.[\w-]{27,40}"
    # an API key of any prefix: sk-..., sk-proj-..., gsk_..., hf_..., xai-..., ghp_...: a long
    # mixed-case body with digits (snake_case names, model names, paths and ids are not keys);
    # the lookaheads are bounded, so a long run without spaces costs linear time
    r"|\b(?:[a-z]{2,8}[-_]){1,3}(?=[a-z0-9_-]{0,40}[A-Z])(?=[A-Za-z_-]{0,40}\d)"
    r"[A-Za-z0-9_-]{32,200}"
    r"|\b(?i:bearer)\s+[A-Za-z0-9._~+/-]{12,}=*"
    r"|(?<=://)[^/\s:@]{1,64}:[^/\s@]{1,128}(?=@)"  # the user:password of a URL
)
_REDACTED = "[redacted]"

_EXTRA_SECRETS: set[str] = set()


def add_secret(value: str) -> None:
    """Redact ``value`` wherever it appears in a log line (a secret read from a file, not the environment)."""
    if len(value) >= 8:
        _EXTRA_SECRETS.add(value)


def _secrets() -> list[str]:
    """The values to blank: those of the variables this process's config names as secrets
    (``HEXBUS_SECRET_ENV``, set by the supervisor), of every variable named like a secret, and
    :func:`add_secret`'s; longest first, so a secret containing another is blanked whole."""
    named = set(filter(None, os.environ.get("HEXBUS_SECRET_ENV", "").split(",")))
    named |= {"DISCORD_TOKEN", "OPENAI_API_KEY"}
    values = {os.environ.get(name) or "" for name in named}
    # HEXBUS_SECRET_ENV holds names, not secrets: blanking them would hide "DISCORD_TOKEN is
    # not set" from the person who has to set it.
    values |= {
        v for k, v in os.environ.items() if SECRET_NAME.search(k) and k != "HEXBUS_SECRET_ENV"
    }
    values |= _EXTRA_SECRETS
    return sorted((v for v in values if len(v) >= 8), key=len, reverse=True)


def _clean(value: Any, secrets: list[str]) -> Any:
    """``value`` with every secret in it blanked, however deep (dicts, lists, tuples)."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, _REDACTED)
        return _SECRET_VALUES.sub(_REDACTED, value)
    if isinstance(value, Mapping):
        return {
            k: _REDACTED if _secret_entry(k, v) else _clean(v, secrets) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set):
        return [_clean(v, secrets) for v in value]
    if isinstance(value, bytes | bytearray):
        return _clean(bytes(value).decode("utf-8", "replace"), secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (an exception, a path) is rendered by its str: cleaned if it holds a secret.
    text = str(value)
    cleaned = _clean(text, secrets)
    return cleaned if cleaned != text else value


def _secret_entry(key: Any, value: Any) -> bool:
    """A text value under a secret-named key (not a count such as ``max_tokens``)."""
    return (
        isinstance(key, str)
        and bool(_SECRET_KEYS.search(key))
        and isinstance(value, str | bytes)
        and bool(value)
    )


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never log a secret: blank values of secret-named keys, the values of secret variables
    and token-shaped strings, at any depth, tracebacks included (this runs after they are
    formatted)."""
    secrets = _secrets()
    for key, value in list(event_dict.items()):
        if _secret_entry(key, value):
            event_dict[key] = _REDACTED
        else:
            event_dict[key] = _clean(value, secrets)
    return event_dict


class RecentLines:
    """The process's last ``size`` log events (already redacted), numbered, so an interface can
    show them (the supervisor's, in the page's runtime panel) and ask only for what is new."""

    def __init__(self, size: int) -> None:
        self.lines: deque[tuple[int, dict[str, Any]]] = deque(maxlen=size)
        self.seq = 0

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.seq += 1
        self.lines.append((self.seq, {k: _plain(v) for k, v in event_dict.items()}))
        return event_dict

    def after(self, seq: int, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """The events numbered after ``seq`` (at most the last ``limit``), and the last number."""
        found = [{"seq": n, **event} for n, event in self.lines if n > seq]
        return found[-limit:], self.seq


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | bool | int | float) else str(value)


recent: RecentLines | None = None  # set by configure(keep=N)


def configure(process: str, level: str = "info", *, keep: int = 0) -> None:
    """Configure structlog for this process; logs go to stderr. ``keep`` > 0 also keeps the
    last ``keep`` events in :data:`recent`."""
    global recent
    recent = RecentLines(keep) if keep > 0 else None
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
            structlog.processors.format_exc_info,
            redact,
            *([recent] if recent is not None else []),
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

    def count(self, kind: str, n: int = 1) -> None:
        """Count ``n``, for a caller that logs them in its own words."""
        self.counts[kind] = self.counts.get(kind, 0) + n
        self.total += n
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
