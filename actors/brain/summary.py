"""The rolling summary: a conversation's oldest turns folded into a few sentences.

Once a conversation holds more than ``keep_turns`` turns, the oldest
``summary_batch`` of them are summarised (with the summary so far) and dropped;
the prompt carries the summary in their place. A summary that fails leaves the
turns whole, to be tried again after the next reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import structlog

from actors.brain.backends import BackendError, ChatTurn, Params
from actors.brain.backends.fallback import FallbackChain
from actors.brain.config import Conversation
from actors.brain.prompt import TurnRecord

log = structlog.get_logger("actors.brain")

INSTRUCTION: Final = (
    "Summarise this part of a conversation in at most three sentences. Keep names, facts and "
    "promises."
)
MAX_TOKENS: Final = 120


def due(conversation: Conversation, keep_turns: int, batch: int) -> list[TurnRecord]:
    """The turns to fold now: the oldest ``batch`` once there are more than ``keep_turns``."""
    if len(conversation.turns) <= keep_turns:
        return []
    return conversation.turns[:batch]


def request(summary: str, fold: Sequence[TurnRecord]) -> list[ChatTurn]:
    transcript = "\n".join(f"{t.name or t.role}: {t.text}" for t in fold)
    return [
        ChatTurn("system", INSTRUCTION),
        ChatTurn("user", (f"Summary so far: {summary}\n\n" if summary else "") + transcript),
    ]


def params(seed: int | None) -> Params:
    return Params(max_tokens=MAX_TOKENS, temperature=0.2, seed=seed)


def fold(conversation: Conversation, folded: int, summary: str) -> bool:
    """Put ``summary`` in place of the first ``folded`` turns; False (nothing changed) when empty."""
    summary = summary.strip()
    if not summary:
        return False
    conversation.summary = summary
    # Only what was summarised goes; anything added meanwhile stays.
    del conversation.turns[:folded]
    return True


async def summarise(
    backend: FallbackChain,
    conversation: Conversation,
    keep_turns: int,
    batch: int,
    seed: int | None,
) -> bool:
    """Fold the oldest turns into the rolling summary once the conversation outgrows
    ``keep_turns``; whether it changed. A failed model call leaves the turns whole (tried again
    next time)."""
    folding = due(conversation, keep_turns, batch)
    if not folding:
        return False
    stream = backend.stream(request(conversation.summary, folding), params(seed))
    try:
        async for _ in stream:
            pass
    except BackendError as exc:
        log.warning(
            "brain.summary_failed", error=str(exc), hint="the turns stay whole and are tried again"
        )
        return False
    finally:
        await stream.aclose()
    return fold(conversation, len(folding), stream.text)
