"""A brain stand-in for Discord tests that need replies of a known length and shape.

It is a real actor on the real bus speaking the brain's reply protocol (volatile
``chat.reply.chunk.<platform>`` pieces, then one durable ``chat.reply.<platform>`` with the id
the real brain derives); only the words are scripted, because the tests check how Discord shows a
reply (streamed edits, splits, code blocks), which a 135M model cannot be asked to produce on
cue. The real brain answering a Discord DM is tested too (tests/actors/discord_io/test_discord_commands.py).

What it says to a message:
- ``long N``: N characters of numbered sentences; ``code N``: prose, then an N-line Python block;
- ``slow S ...``: waits S seconds before streaming (to kill something mid-reply);
- anything else: ``You said: <text>``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import msgspec

from hexbus import Actor, NoState, on
from hexbus.codec import derived_id
from schemas import ChatMessage, Reply, ReplyChunk


class ScriptConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    chunks: int = 8  # pieces a reply streams in
    chunk_interval_s: float = 0.15


def script(text: str) -> tuple[float, str]:
    words = text.split()
    delay = 0.0
    if len(words) >= 2 and words[0] == "slow":
        delay, words = float(words[1]), words[2:]
    if len(words) == 2 and words[0] == "long" and words[1].isdigit():
        n, out, i = int(words[1]), "", 0
        while len(out) < n:
            i += 1
            out += f"Sentence number {i} is here to make this reply long. "
        return delay, out[:n].rstrip() + "."
    if len(words) == 2 and words[0] == "code" and words[1].isdigit():
        body = "\n".join(f"print('line {i}')" for i in range(int(words[1])))
        return (
            delay,
            "Here is the code you asked for, all of it in one block.\n\n```python\n"
            + body
            + "\n```\nDone.",
        )
    return delay, "You said: " + " ".join(words)


class ScriptedBrain(Actor[ScriptConfig, NoState]):
    subscribes: ClassVar[tuple[str, ...]] = ("chat.message",)
    config_type = ScriptConfig

    @on(ChatMessage)
    async def on_message(self, event: ChatMessage) -> None:
        envelope = self.envelope
        assert envelope is not None
        self.spawn(self.answer(envelope.id, event), name=f"answer-{envelope.id}")

    async def answer(self, message_id: str, event: ChatMessage) -> None:
        delay, text = script(event.text)
        await asyncio.sleep(delay)
        n = self.config.chunks
        size = -(-len(text) // n)
        for index in range(n):
            piece = text[index * size : (index + 1) * size]
            if piece:
                self.bus.publish_volatile(
                    ReplyChunk(reply_to=message_id, channel=event.channel, index=index, text=piece),
                    key=event.platform,
                )
            await asyncio.sleep(self.config.chunk_interval_s)
        await self.publish(
            Reply(
                reply_to=message_id,
                channel=event.channel,
                text=text,
                platform=event.platform,
                person_id=event.person_id,
            ),
            key=event.platform,
            event_id=derived_id(message_id, "reply"),
            causation=message_id,
        )
