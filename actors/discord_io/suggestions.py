"""Memory suggestions and her proposals to change herself on Discord: a prompt with Approve and
Reject buttons for the owners.

The memory actor suggests remembering something (``memory.changed``, action ``suggested``); the
prompt goes to the configured channels, or else to each owner's DMs. Which memory each prompt is
about is kept in state, so a replayed suggestion is not posted again; an owner's click is
answered by ``buttons.SuggestionButton``. A proposal of hers that passed its sandbox run
(``selfmod.changed``, status ``ready``) is posted the same way, once, with its reason, flags,
audit before and after, and diff; ``buttons.ProposalButton`` answers. What came of it is told
in the same channels, once each: an owner's decision refused (``selfmod.apply`` off, expired),
applied, kept or rolled back after its trial, rejected, gone stale.
"""

from __future__ import annotations

import asyncio

import structlog

from actors.discord_io.config import DiscordConfig, DiscordState
from actors.discord_io.port import DiscordPort, StateChanged
from hexbus.codec import derived_id
from schemas import ProposalView, SelfmodChanged

__all__ = ["Suggestions"]

log = structlog.get_logger("actors.discord_io")


SUGGESTIONS_KEPT = 500  # approval prompts remembered (the state stays bounded)
# What came of a proposal, told to the channels its prompt went to: status → its mark.
OUTCOMES = {
    "applied": "✅",
    "kept": "✅",
    "rolled_back": "↩️",
    "rejected": "✖️",
    "expired": "⌛",
    "stale": "⌛",
    "failed": "⚠️",
}


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
        self.telling = asyncio.Lock()  # outcomes of her proposals, told one at a time

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

    async def propose_change(self, p: ProposalView) -> None:
        """Post a proposal that is ready for an owner's decision, once."""
        key = f"selfmod:{p.id}"
        if key in self.state.suggestions or key in self.posting:
            return
        self.posting.add(key)
        try:
            targets = await self.discord.suggestion_targets(
                self.config.suggestions_to, self.config.owners
            )
            if not targets:
                log.info("discord.proposal_unposted", proposal=p.id, hint="`hexbus selfmod list`")
                return
            # Known before the first post: an owner may decide on the first prompt before the
            # last is posted, and what comes of it is told wherever a prompt went.
            self.state.proposals[str(p.id)] = list(targets)
            for channel_id in targets:
                message_id = await self.discord.post_proposal(channel_id, p.id, proposal_text(p))
                self.state.suggestions[key] = [channel_id, message_id]
            while len(self.state.proposals) > SUGGESTIONS_KEPT:
                oldest = next(iter(self.state.proposals))
                del self.state.proposals[oldest]
                self.state.verdicts.pop(oldest, None)
            self.state_changed(now=True)
        finally:
            self.posting.discard(key)

    async def tell_outcome(self, event: SelfmodChanged, event_id: str) -> None:
        """Tell the channels a proposal's prompt went to what came of it, once per outcome
        (each refusal once per event: two refused clicks are two answers): the owner who
        pressed Approve learns there that it was applied, or why it was not. A channel that
        cannot take it (deleted, a DM blocked) is logged and skipped; the others still are
        told, and each post carries a nonce, so a post retried after a crash is one."""
        p = event.proposal
        if p is None or str(p.id) not in self.state.proposals:
            return  # a proposal never shown on Discord (`hexbus selfmod` has it)
        if event.error:
            outcome, text = f"error:{event_id}", f"⚠️ proposal {p.id}: {event.error}"
        elif p.status in OUTCOMES:
            outcome = p.status
            text = f"{OUTCOMES[p.status]} {event.line or f'proposal {p.id} {p.status}'}"
            if p.reason and p.status != "kept":
                text += f": {p.reason}"
        else:
            return
        async with self.telling:  # in the order they happened, each once
            told = self.state.verdicts.setdefault(str(p.id), [])
            if outcome in told:
                return  # told already (a replayed event)
            for channel_id in self.state.proposals[str(p.id)]:
                nonce = derived_id(f"selfmod-{p.id}", outcome, str(channel_id))[:25]
                try:
                    await self.discord.post(channel_id, text[:2000], nonce=nonce)
                except Exception as exc:  # one channel's failure never silences the others
                    log.warning(
                        "discord.outcome_unposted",
                        proposal=p.id,
                        channel=channel_id,
                        error=f"{type(exc).__name__}: {exc}"[:300],
                    )
            told.append(outcome)
            del told[:-20]  # bounded: the last outcomes are enough to tell each once
            self.state_changed(now=True)

    def settled(self, memory_id: str) -> None:
        """An owner approved or rejected it."""
        self.state.suggestions.pop(memory_id, None)
        self.state_changed()


def proposal_text(p: ProposalView) -> str:
    """The prompt for one proposal, within Discord's 2000 characters (the diff cut first)."""
    why = p.why[:400].replace("```", "`\u200b``")
    lines = [f"🛠️ I'd like to change myself (proposal {p.id}): {why}"]
    if p.flags:
        lines.append(f"⚠️ flags: {', '.join(p.flags)}")
    if p.before is not None and p.after is not None:
        lines.append(
            f"audit: {p.before.pass_rate:.2f} → {p.after.pass_rate:.2f} "
            f"({p.after.scenarios} scenarios, sandbox: {p.sandbox})"
        )
    lines.append(f"changes: {', '.join(p.keys) or ', '.join(p.files)}")
    head = "\n".join(lines) + "\n```diff\n"
    diff = p.diff.replace("```", "`\u200b``")  # a fence in the diff must not end the block
    tail = "\n```"
    if len(head) + len(diff) + len(tail) > 2000:
        more = f"\n… (the rest: `hexbus selfmod show {p.id}`)"
        diff = diff[: 2000 - len(head) - len(tail) - len(more)] + more
    return (head + diff + tail)[:2000]
