"""Chat in the page: what a tab asks for becomes bus events, and replies become tab messages.

A tab sends JSON objects with a type ``t``:

* ``{"t": "watch", "conversation": "main"}``: show this conversation's replies (instead of the
  one shown before).
* ``{"t": "say", "conversation": "main", "text": "...", "local": "l3"}``: a line typed; it is
  published as a durable ``chat.message.web`` and the tab gets ``{"t": "sent", "local", "id"}``
  with the event id its reply will name.
* ``{"t": "stop", "conversation": "main"}``: the stop button; a ``chat.bargein`` with what the
  person had seen of the reply, so the brain records what was said and drops the rest.
* ``{"t": "history", "conversation": "main", "before": 1780000000.0}``: older turns, from
  memory (a ``watch`` asks for the newest by itself); answered with ``history``.
* ``{"t": "conversations"}``: this person's conversations in memory, latest first.

It receives ``ack`` (typing), ``chunk`` (a streamed piece, shown as plain text), ``reply`` (the
final text, rendered from Markdown on the server with raw HTML escaped: the model's or a
person's ``<script>`` is text, never markup), ``notice``, ``error`` and ``dropped``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from actors.web.config import WebConfig
from actors.web.hub import Client, Hub
from hexbus import RequestTimeout
from hexbus.codec import Envelope
from schemas import (
    BargeIn,
    ChatAck,
    ChatMessage,
    Event,
    MemoryHistory,
    MemoryHistoryResult,
    Notice,
    Reply,
    ReplyChunk,
)

__all__ = ["CONVERSATION", "WebChat", "markdown_renderer"]

CONVERSATION = re.compile(r"[A-Za-z0-9_-]{1,64}")
STREAMS_KEPT = 1000  # replies in flight whose streamed text is kept (for a stop's "what was seen")
FINISHED_KEPT = 1000  # replies whose final came, so a late piece of one is not taken for a new one
RECENT_KEPT = 20  # final replies kept per conversation, sent again to a tab that (re)connects
CHANNELS_KEPT = 1000  # conversations whose recent finals are kept
HISTORY_TURNS = 50  # turns a tab gets from memory per page of history
HISTORY_TIMEOUT_S = 5.0


async def _inline(fn: Callable[[], Any]) -> Any:
    return fn()


def markdown_renderer() -> Callable[[str], str]:
    """CommonMark with tables and strikethrough; raw HTML is escaped and links are checked
    (markdown-it refuses javascript:, vbscript:, file: and non-image data: URLs)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        # A link opens beside the chat, never in its place, and tells the target nothing.
        tokens[idx].attrSet("target", "_blank")
        tokens[idx].attrSet("rel", "noopener noreferrer")
        return str(renderer.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    return md.render


class WebChat:
    def __init__(
        self,
        config: WebConfig,
        hub: Hub,
        publish: Callable[[Event], Awaitable[Envelope]],
        render: Callable[[str], str],
        *,
        request: Callable[..., Awaitable[Any]] | None = None,
        spawn: Callable[[Coroutine[Any, Any, Any], str], object] | None = None,
        memory_up: Callable[[], bool] = lambda: True,
        offload: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.config = config
        self.hub = hub
        self.publish = publish
        self.render = render
        self.request = request  # memory's history, when there is a bus to ask it on
        self.spawn = spawn
        self.memory_up = memory_up  # whether the supervisor runs a memory actor to ask
        self.offload = offload or _inline
        self.asking: set[str] = set()  # "<what>-<tab>" requests to memory in flight
        # channel -> (reply_to, pieces streamed so far), the most recent STREAMS_KEPT
        self.streams: OrderedDict[str, tuple[str, dict[int, str]]] = OrderedDict()
        self.finished: OrderedDict[str, None] = OrderedDict()
        # channel -> its last RECENT_KEPT final replies as sent to tabs: a reply that came while
        # a tab was reconnecting (or the actor restarting) reaches it when it watches again.
        self.recent: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    @staticmethod
    def channel(person_id: str, conversation: str) -> str:
        return f"{person_id}/{conversation}"

    async def command(self, client: Client, message: Any) -> None:
        """One object from a tab; anything malformed is answered with an error, never raised."""
        if not isinstance(message, dict):
            self.hub.send(client, {"t": "error", "text": "send a JSON object with a type 't'"})
            return
        kind = message.get("t")
        conversation = message.get("conversation", "main")
        if kind == "conversations":
            self._later(self.conversations(client), f"conversations-{client.id}")
            return
        if kind not in ("watch", "say", "stop", "history"):
            self.hub.send(client, {"t": "error", "text": f"unknown message type {kind!r}"})
            return
        if not isinstance(conversation, str) or not CONVERSATION.fullmatch(conversation):
            self.hub.send(
                client,
                {"t": "error", "text": "a conversation is 1 to 64 letters, digits, - or _"},
            )
            return
        channel = self.channel(client.person_id, conversation)
        if kind == "watch":  # a tab shows one conversation at a time
            client.watching = {channel}
            self.hub.send(client, {"t": "watching", "conversation": conversation})
            for final in self.recent.get(channel, ()):
                self.hub.send(client, {**final, "again": True})
            self._later(self.history(client, conversation, 0.0), f"history-{client.id}")
        elif kind == "history":
            before, before_id = message.get("before", 0.0), message.get("before_id", "")
            before = float(before) if isinstance(before, int | float) and 0 < before < 1e12 else 0.0
            before_id = before_id[:200] if isinstance(before_id, str) else ""
            self._later(
                self.history(client, conversation, before, before_id), f"history-{client.id}"
            )
        elif kind == "say":
            await self.say(client, channel, message)
        else:
            await self.stop(client, channel)

    def _later(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Memory's answers come while the tab goes on talking (a slow memory never holds it);
        one such request per tab at a time (a tab that asks again meanwhile is not answered
        twice)."""
        if (
            self.request is None
            or self.spawn is None
            or not self.memory_up()
            or name in self.asking
        ):
            coro.close()
            return
        self.asking.add(name)

        async def once() -> None:
            try:
                await coro
            finally:
                self.asking.discard(name)

        self.spawn(once(), name)

    async def history(
        self, client: Client, conversation: str, before: float, before_id: str = ""
    ) -> None:
        """A page of this conversation's turns from memory, oldest first, as the page shows them
        (Hex's rendered from Markdown off the loop: a page of long replies takes a while)."""
        assert self.request is not None
        channel = self.channel(client.person_id, conversation)
        try:
            result = await self.request(
                MemoryHistory(
                    conversation=f"web:{channel}",
                    before=before,
                    before_id=before_id,
                    limit=HISTORY_TURNS,
                ),
                MemoryHistoryResult,
                timeout=HISTORY_TIMEOUT_S,
            )
        except RequestTimeout:
            self.hub.send(
                client,
                {
                    "t": "history",
                    "conversation": conversation,
                    "turns": [],
                    "more": False,
                    "error": "memory did not answer: older messages are not shown",
                },
            )
            return
        html = await self.offload(
            lambda: [self.render(t.text) if t.role == "assistant" else "" for t in result.turns]
        )
        turns = [
            {
                "id": t.id,
                "role": t.role,
                "text": t.text,
                "html": rendered,
                "at": t.at,
                "reply_to": t.meta.get("reply_to", ""),
                "recalled": t.meta.get("recalled", "").split(),
            }
            for t, rendered in zip(result.turns, html, strict=True)
        ]
        self.hub.send(
            client,
            {
                "t": "history",
                "conversation": conversation,
                "turns": turns,
                "more": result.more,
                "before": before,
                "error": result.error,
            },
        )

    async def conversations(self, client: Client) -> None:
        assert self.request is not None
        prefix = f"web:{client.person_id}/"
        try:
            result = await self.request(
                MemoryHistory(prefix=prefix, limit=100),
                MemoryHistoryResult,
                timeout=HISTORY_TIMEOUT_S,
            )
        except RequestTimeout:
            return
        listed = [
            {
                "conversation": c.conversation[len(prefix) :],
                "last_at": c.last_at,
                "turns": c.turns,
                "preview": c.preview,
            }
            for c in result.conversations
            if CONVERSATION.fullmatch(c.conversation[len(prefix) :])
        ]
        self.hub.send(client, {"t": "conversations", "conversations": listed})

    async def say(self, client: Client, channel: str, message: dict[str, Any]) -> None:
        text, local = message.get("text"), str(message.get("local", ""))[:64]
        if not isinstance(text, str) or not text.strip():
            self.hub.send(client, {"t": "error", "local": local, "text": "the message is empty"})
            return
        if len(text) > self.config.max_message_chars:
            self.hub.send(
                client,
                {
                    "t": "error",
                    "local": local,
                    "text": f"the message has {len(text)} characters; the limit is "
                    f"{self.config.max_message_chars} (max_message_chars)",
                },
            )
            return
        client.watching = {channel}
        envelope = await self.publish(
            ChatMessage(
                platform="web",
                person_id=client.person_id,
                display_name=self.config.display_name or client.person_id,
                channel=channel,
                text=text,
                direct=True,
            )
        )
        self.hub.send(client, {"t": "sent", "local": local, "id": envelope.id})

    async def stop(self, client: Client, channel: str) -> None:
        reply_to, pieces = self.streams.get(channel, ("", {}))
        seen = "".join(pieces[i] for i in sorted(pieces))
        await self.publish(BargeIn(channel=channel, person_id=client.person_id, said=seen))
        self.hub.send(client, {"t": "stopping", "reply_to": reply_to})

    # -- from the bus ------------------------------------------------------------------

    def ack(self, event: ChatAck) -> None:
        self.hub.to_channel(event.channel, {"t": "ack", "id": event.message_event_id})

    def chunk(self, event: ReplyChunk) -> None:
        if event.reply_to in self.finished:
            return  # a piece that came after its final (pieces and finals travel apart)
        reply_to, pieces = self.streams.get(event.channel, ("", {}))
        if reply_to != event.reply_to:
            pieces = {}
        pieces[event.index] = event.text
        self.streams[event.channel] = (event.reply_to, pieces)
        self.streams.move_to_end(event.channel)
        while len(self.streams) > STREAMS_KEPT:
            self.streams.popitem(last=False)
        self.hub.to_channel(
            event.channel,
            {"t": "chunk", "reply_to": event.reply_to, "index": event.index, "text": event.text},
        )

    def reply(self, event: Reply) -> None:
        if self.streams.get(event.channel, ("",))[0] == event.reply_to:
            del self.streams[event.channel]
        self.finished[event.reply_to] = None
        while len(self.finished) > FINISHED_KEPT:
            self.finished.popitem(last=False)
        final = {
            "t": "reply",
            "reply_to": event.reply_to,
            "status": event.status,
            "text": event.text,
            "html": self.render(event.text) if event.text else "",
            "merged": list(event.merged),
            "merged_into": event.merged_into,
            "recalled": list(event.recalled),
        }
        recent = self.recent.setdefault(event.channel, [])
        recent[:] = [r for r in recent if r["reply_to"] != event.reply_to][-(RECENT_KEPT - 1) :]
        recent.append(final)
        self.recent.move_to_end(event.channel)
        while len(self.recent) > CHANNELS_KEPT:
            self.recent.popitem(last=False)
        self.hub.to_channel(event.channel, final)

    def notice(self, event: Notice) -> None:
        self.hub.to_channel(event.channel, {"t": "notice", "kind": event.kind, "text": event.text})
