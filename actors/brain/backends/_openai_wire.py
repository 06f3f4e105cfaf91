"""The OpenAI chat-completions wire format as the backend reads and writes it.

Only the fields read are declared; msgspec skips the rest. Errors come in
several shapes (an object, a bare string, FastAPI's ``detail``): :func:`error_text`
reads them all, and says whether one means "out of quota or rate-limited".
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from actors.brain.backends.base import ChatTurn

# Codes OpenAI, OpenRouter and DeepSeek use for "you are out of credit or rate-limited".
QUOTA_CODES: Final = frozenset(
    {"insufficient_quota", "rate_limit_exceeded", "quota_exceeded", "429", "402"}
)


class ChatRequest(msgspec.Struct, omit_defaults=True):
    model: str
    messages: list[ChatTurn]
    max_tokens: int
    temperature: float
    top_p: float
    stream: bool = False
    stream_options: dict[str, bool] | None = None
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None


class Delta(msgspec.Struct):
    content: str | None = None


class StreamChoice(msgspec.Struct):
    delta: Delta = msgspec.field(default_factory=Delta)
    finish_reason: str | None = None


class WireUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ErrorBody(msgspec.Struct):
    message: str = ""
    code: str | int | None = None
    type: str | None = None


class StreamChunk(msgspec.Struct):
    choices: list[StreamChoice] = []
    usage: WireUsage | None = None
    error: ErrorBody | str | None = None


class WireMessage(msgspec.Struct):
    content: str | None = None


class CompletionChoice(msgspec.Struct):
    message: WireMessage = msgspec.field(default_factory=WireMessage)


class Completion(msgspec.Struct):
    choices: list[CompletionChoice] = []
    usage: WireUsage | None = None
    error: ErrorBody | str | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody | str | None = None
    detail: Any = None


class TokenList(msgspec.Struct):
    tokens: list[Any]


ENCODER: Final = msgspec.json.Encoder()
CHUNK: Final = msgspec.json.Decoder(StreamChunk)
COMPLETION: Final = msgspec.json.Decoder(Completion)
ERROR: Final = msgspec.json.Decoder(ErrorEnvelope)
TOKENS: Final = msgspec.json.Decoder(TokenList)


def retry_after(headers: Mapping[str, str]) -> float | None:
    if ms := headers.get("retry-after-ms"):
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RateLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider said of its limits on its last answer (OpenAI-style ``x-ratelimit-*``
    headers, as OpenAI, Groq, OpenRouter and others send them); None where it did not say."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_s: float | None = None  # until the tighter of the two resets
    at: float = 0.0  # wall time of the answer

    def share_left(self) -> float | None:
        """The smaller share left of requests and tokens (0..1), or None without both figures."""
        shares = [
            remaining / limit
            for remaining, limit in (
                (self.remaining_requests, self.limit_requests),
                (self.remaining_tokens, self.limit_tokens),
            )
            if remaining is not None and limit
        ]
        return min(shares) if shares else None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def _duration(value: str) -> float | None:
    """OpenAI's reset durations ("6m0s", "1.5s", "20ms"), or plain seconds."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value.strip())
    if not parts or "".join(n + u for n, u in parts) != value.strip().replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def rate_limits(headers: Mapping[str, str], now: float | None = None) -> RateLimits | None:
    """The limits an answer's headers state, or None when it states none."""

    def number(name: str) -> int | None:
        value = headers.get(name)
        try:
            return int(float(value)) if value is not None else None
        except ValueError:
            return None

    resets = [
        d
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if (v := headers.get(name)) is not None and (d := _duration(v)) is not None
    ]
    limits = RateLimits(
        limit_requests=number("x-ratelimit-limit-requests"),
        remaining_requests=number("x-ratelimit-remaining-requests"),
        limit_tokens=number("x-ratelimit-limit-tokens"),
        remaining_tokens=number("x-ratelimit-remaining-tokens"),
        reset_s=max(resets) if resets else None,
        at=time.time() if now is None else now,
    )
    if limits.share_left() is None and limits.reset_s is None:
        return None
    return limits


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def error_text(error: ErrorBody | str | None) -> tuple[str, bool]:
    """The error's message and whether it says "quota" or "rate limit"."""
    if error is None:
        return "", False
    if isinstance(error, str):
        return error, False
    quota = str(error.code) in QUOTA_CODES or (error.type or "") in QUOTA_CODES
    return error.message or str(error.code or error.type or ""), quota
