"""Memory suggestions on Discord: a prompt with Approve and Reject buttons for the owners.

The memory actor suggests remembering something (``memory.changed``, action ``suggested``); the
prompt goes to the configured channels, or else to each owner's DMs. Which memory each prompt is
about is kept in state, so a replayed suggestion is not posted again; an owner's click is
answered by ``commands.SuggestionButton``.
"""

from __future__ import annotations

import structlog

from actors.discord_io.config import DiscordConfig, DiscordState
from actors.discord_io.port import DiscordPort, StateChanged

__all__ = ["Suggestions"]

log = structlog.get_logger("actors.discord_io")


SUGGESTIONS_KEPT = 500  # approval prompts remembered (the state stays bounded)


class Suggestions:
    """Memory suggestions waiting for an owner's verdict."""

    def __init__(
        self,
        config: DiscordConfig,
        state: DiscordState,
        discord: DiscordPort,
        *,
        state_changed: StateChanged,
    ) -> None:
        self.config = config
        self.state = state
        self.discord = discord
        self.state_changed = state_changed
        self.posting: set[str] = set()  # memory ids whose prompt is being posted now

    async def propose(self, memory_id: str, text: str) -> None:
        """Post a suggestion where owners will see it, once."""
        if memory_id in self.state.suggestions or memory_id in self.posting:
            return  # already posted, or being posted (a replayed or retried event)
        self.posting.add(memory_id)
        try:
            await self.post(memory_id, text)
        finally:
            self.posting.discard(memory_id)

    async def post(self, memory_id: str, text: str) -> None:
        targets = await self.discord.suggestion_targets(
            self.config.suggestions_to, self.config.owners
        )
        if not targets:
            log.info(
                "discord.suggestion_unposted",
                memory=memory_id,
                hint="no owners or suggestions_to configured: use `hexbus memory review`",
            )
            return
        content = f"💭 I'd like to remember this — approve?\n> {text[:1500]}"
        for channel_id in targets:
            message_id = await self.discord.post_suggestion(channel_id, memory_id, content)
            self.state.suggestions[memory_id] = [channel_id, message_id]
        while len(self.state.suggestions) > SUGGESTIONS_KEPT:
            # The oldest prompt nobody answered is forgotten here (its buttons still work;
            # `hexbus memory review` has the suggestion too).
            del self.state.suggestions[next(iter(self.state.suggestions))]
        self.state_changed(now=True)  # a replayed suggestion must not be posted again

    def settled(self, memory_id: str) -> None:
        """An owner approved or rejected it."""
        self.state.suggestions.pop(memory_id, None)
        self.state_changed()
