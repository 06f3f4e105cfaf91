"""The tabs' queues and the chat commands, in-process: a stalled tab is dropped with a notice
and never holds up another; malformed commands are answered, not raised; replies are rendered
with raw HTML escaped."""

from __future__ import annotations

import asyncio
import json
import re

from hypothesis import given
from hypothesis import strategies as st

from actors.web.chat import WebChat, markdown_renderer
from actors.web.config import WebConfig
from actors.web.hub import Client, Hub
from schemas import BargeIn, ChatMessage, Reply, ReplyChunk
from tests.support.web import Published

render = markdown_renderer()


def drain(client: Client) -> list[dict[str, object]]:
    out = []
    while not client.queue.empty():
        out.append(json.loads(client.queue.get_nowait()))
    return out


def make_chat(**config: object) -> tuple[Hub, WebChat, Published]:
    cfg = WebConfig(**config)  # type: ignore[arg-type]
    hub = Hub(max_clients=cfg.max_clients, queue_size=cfg.client_queue)
    published = Published()
    return hub, WebChat(cfg, hub, published, render), published


def test_a_stalled_tab_is_dropped_with_a_notice_and_the_others_keep_everything() -> None:
    async def run() -> None:
        hub, chat, _ = make_chat(client_queue=8)
        stalled, reading = hub.join("owner", True), hub.join("owner", True)
        assert isinstance(stalled, Client) and isinstance(reading, Client)
        for c in (stalled, reading):
            c.watching.add("owner/main")
        got: list[dict[str, object]] = []
        for i in range(50):
            chat.chunk(ReplyChunk(reply_to="m1", channel="owner/main", index=i, text=f"w{i} "))
            got += drain(reading)  # this tab reads; the other never does
        assert [m["index"] for m in got] == list(range(50))
        assert stalled.dropped and stalled not in hub.clients
        assert drain(stalled) == [{"t": "dropped", "text": stalled.dropped}]
        assert hub.dropped_total == 1

    asyncio.run(run())


def test_tabs_past_the_limit_are_refused_with_the_reason() -> None:
    async def run() -> None:
        hub = Hub(max_clients=2, queue_size=8)
        assert isinstance(hub.join("a", False), Client)
        assert isinstance(hub.join("a", False), Client)
        refused = hub.join("a", False)
        assert isinstance(refused, str) and "max_clients" in refused

    asyncio.run(run())


def test_malformed_commands_are_answered_and_nothing_is_published() -> None:
    async def run() -> None:
        hub, chat, published = make_chat(max_message_chars=100)
        client = hub.join("owner", True)
        assert isinstance(client, Client)
        bad: object
        for bad in (
            [],
            "say",
            {"t": "shout"},
            {"t": "say", "text": "   "},
            {"t": "say", "text": 7},
            {"t": "say", "text": "x" * 101},
            {"t": "say", "text": "hi", "conversation": "../etc"},
            {"t": "watch", "conversation": ""},
            {"t": "say", "text": "hi", "conversation": "a" * 65},
        ):
            await chat.command(client, bad)
        replies = drain(client)
        assert len(replies) == 9 and all(r["t"] == "error" for r in replies), replies
        assert "limit is 100" in str(replies[5]["text"])
        assert published.events == []

    asyncio.run(run())


def test_a_line_becomes_a_web_message_and_stop_says_what_was_seen() -> None:
    async def run() -> None:
        hub, chat, published = make_chat(person_id="ana", display_name="Ana")
        client = hub.join("ana", True)
        assert isinstance(client, Client)
        await chat.command(
            client, {"t": "say", "conversation": "main", "text": "hi", "local": "l1"}
        )
        message = published.events[0]
        assert isinstance(message, ChatMessage)
        assert (message.platform, message.person_id, message.display_name, message.channel) == (
            "web",
            "ana",
            "Ana",
            "ana/main",
        )
        assert drain(client) == [{"t": "sent", "local": "l1", "id": "e1"}]
        chat.chunk(ReplyChunk(reply_to="e1", channel="ana/main", index=1, text="there"))
        chat.chunk(ReplyChunk(reply_to="e1", channel="ana/main", index=0, text="Hello "))
        await chat.command(client, {"t": "stop", "conversation": "main"})
        stop = published.events[1]
        assert isinstance(stop, BargeIn)
        assert (stop.channel, stop.said) == ("ana/main", "Hello there")
        chat.reply(Reply(reply_to="e1", channel="ana/main", text="Hello there", status="cancelled"))
        final = [m for m in drain(client) if m["t"] == "reply"]
        assert final and final[0]["status"] == "cancelled"
        other = hub.join("bo", True)  # another person's tab never sees Ana's conversation
        assert isinstance(other, Client)
        await chat.command(other, {"t": "watch", "conversation": "main"})
        chat.reply(Reply(reply_to="e2", channel="ana/main", text="private"))
        assert not [m for m in drain(other) if m["t"] == "reply"]

    asyncio.run(run())


MARKUP = st.sampled_from(
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "[click](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "![i](data:text/html;base64,PHNjcmlwdD4=)",
        '<a href="javascript:alert(1)">a</a>',
        "<svg onload=alert(1)>",
        "<iframe src=//evil>",
        "```\n<script>x</script>\n```",
        "**bold** and `code`",
        "[a page](https://example.org/a?b=<c>)",
        "| a | b |\n|---|---|\n| <b>1</b> | 2 |",
        "\n\n",
        "<",
        "&lt;script&gt;",
    ]
)


@given(st.lists(st.one_of(MARKUP, st.text(max_size=20)), max_size=8).map("".join))
def test_rendered_replies_carry_no_markup_from_the_text(text: str) -> None:
    html = render(text)
    assert not re.search(r"<(script|img|svg|iframe|a\s[^>]*javascript)", html, re.I), html
    assert not re.search(r"<[^>]+\son\w+\s*=", html, re.I), html
    assert 'href="javascript' not in html.lower() and 'src="data:text' not in html.lower()
    links = re.findall(r"<a\s[^>]*>", html)
    assert all('target="_blank"' in a and 'rel="noopener noreferrer"' in a for a in links), links


def test_a_tab_shows_one_conversation_at_a_time() -> None:
    async def run() -> None:
        hub, chat, _ = make_chat()
        client = hub.join("owner", True)
        assert isinstance(client, Client)
        await chat.command(client, {"t": "watch", "conversation": "main"})
        await chat.command(client, {"t": "watch", "conversation": "chat-2"})
        drain(client)
        chat.chunk(ReplyChunk(reply_to="m1", channel="owner/main", index=0, text="old"))
        chat.chunk(ReplyChunk(reply_to="m2", channel="owner/chat-2", index=0, text="new"))
        assert [m["text"] for m in drain(client)] == ["new"]

    asyncio.run(run())
