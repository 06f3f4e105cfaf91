"""The chaos soak's invariant checker: what people said, against the journal, Discord and memory.

A *line* is one thing a person sent: a console line (its chat.message event id) or a Discord
message (its Discord id; the chat.message events discord_io published for it carry that id).
Each line must have exactly one final answer in the journal: a ``chat.reply`` to one of its
events, complete, failed, or cancelled (merged into the answer to a later line of the same
turn, superseded by someone else's newer message in a shared channel, or interrupted by the
person's next line after Hex had begun to answer). None is a lost line, more than one a
duplicated one; the answers are counted by kind. On
Discord, a complete answer must be shown once, replying to the line. In memory, every
journaled message and complete reply has its turn, and no line is stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexbus.codec import Envelope
from schemas import ChatMessage, Reply
from tests.support.discord.hexes import journal
from tests.support.fakediscord import FakeDiscord
from tests.support.harness import Hex


def answer_kind(reply: Reply) -> str:
    return "merged" if reply.merged_into else reply.status


def norm(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Books:
    """What the people sent, and what the run saw of the answers."""

    sent: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # text -> line
    discord_channels: dict[str, int] = field(default_factory=dict)  # Discord id -> channel
    answers: dict[str, set[str]] = field(default_factory=dict)  # message event id -> replies
    events_of: dict[str, set[str]] = field(default_factory=dict)  # Discord id -> event ids

    def reply(self, envelope: Envelope) -> None:
        body = envelope.body
        if isinstance(body, ChatMessage) and body.message_id:
            self.events_of.setdefault(body.message_id, set()).add(envelope.id)
        elif isinstance(body, Reply):  # each is final: the rest streams as chunks
            self.answers.setdefault(body.reply_to, set()).add(envelope.id)

    def answered(self, event_id: str) -> bool:
        return bool(self.answers.get(event_id))

    def settled(self, ref: str) -> bool:
        """Whether a line (console event id or Discord id) has an answer yet."""
        ids = self.events_of.get(ref, {ref})
        return any(self.answered(i) for i in ids)

    def bot_replies(self, fake: FakeDiscord, channel: int) -> set[str]:
        """The Discord ids in ``channel`` that the bot has replied to."""
        return {
            str((m.get("message_reference") or {}).get("message_id"))
            for m in fake.messages(channel)
            if m["author"]["id"] == str(fake.bot_id) and m.get("message_reference")
        }

    def read_journal(self, hx: Hex) -> list[Envelope]:
        """Every chat.message and chat.reply journaled."""

        return journal(hx, ["chat.message", "chat.reply"], timeout=60)


def check(books: Books, journal: list[Envelope], fake: FakeDiscord, memory: Path) -> dict[str, Any]:
    events: dict[str, list[str]] = {}  # line ref -> its chat.message event ids
    replies: dict[str, dict[str, Reply]] = {}  # message event id -> final replies by id
    complete: dict[str, Reply] = {}  # reply event id -> complete reply
    journaled: set[str] = set()
    seen_replies: set[str] = set()
    repeats = 0  # chat.reply records journaled again under an id already seen
    for envelope in journal:
        body = envelope.body
        if isinstance(body, ChatMessage):
            journaled.add(envelope.id)
            ref = body.message_id or envelope.id
            if envelope.id not in events.setdefault(ref, []):
                events[ref].append(envelope.id)
        elif isinstance(body, Reply):  # each is final: the rest streams as chunks
            repeats += envelope.id in seen_replies
            seen_replies.add(envelope.id)
            replies.setdefault(body.reply_to, {})[envelope.id] = body
            if body.status == "complete" and body.text:
                complete[envelope.id] = body

    lost: list[str] = []
    duplicated: list[str] = []
    once = 0
    kinds: dict[str, int] = {}
    discord: dict[str, list[str]] = {"unshown": [], "shown_twice": [], "mismatched": []}
    for text, (platform, ref, _) in books.sent.items():
        answers = {rid: r for i in events.get(ref, []) for rid, r in replies.get(i, {}).items()}
        if not answers:
            lost.append(f"{text} (journaled: {bool(events.get(ref))})")
            continue
        if len(answers) > 1:
            duplicated.append(text)
            continue
        once += 1
        (answer,) = answers.values()
        kinds[answer_kind(answer)] = kinds.get(answer_kind(answer), 0) + 1
        if platform != "discord":
            continue
        shown = norm(
            "\n".join(
                m["content"]
                for m in fake.messages(books.discord_channels[ref])
                if m["author"]["id"] == str(fake.bot_id)
                and str((m.get("message_reference") or {}).get("message_id")) == ref
            )
        )
        said = norm(answer.text)
        if said and shown.count(said) > 1:
            discord["shown_twice"].append(text)
        elif answer.status == "complete" and not answer.merged_into and not shown:
            discord["unshown"].append(text)
        elif answer.status == "complete" and not answer.merged_into and shown != said:
            discord["mismatched"].append(f"{text}: said {said[:120]!r}, shown {shown[:120]!r}")
    memory_lost, memory_duplicated = memory_books(memory, journaled, set(complete), books)
    return {
        "messages": len(books.sent),
        "journaled": len(journaled),
        "answered_once": once,
        "answers_by_kind": kinds,
        "lost": len(lost) + len(discord["unshown"]),
        "duplicated": len(duplicated) + len(discord["shown_twice"]),
        "discord_mismatched": len(discord["mismatched"]),
        "reply_records_repeated": repeats,
        "memory_lost": memory_lost,
        "memory_duplicated": memory_duplicated,
        "examples": {
            "lost": lost[:5],
            "duplicated": duplicated[:5],
            **{f"discord_{k}": v[:5] for k, v in discord.items()},
        },
    }


def memory_books(
    path: Path, messages: set[str], replies: set[str], books: Books
) -> tuple[int, int]:
    """Turns missing from memory's DuckDB file, and lines stored more than once."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        ids = {row[0] for row in con.execute("SELECT id FROM turns").fetchall()}
        counts = dict(
            con.execute(
                "SELECT text, count(*) FROM turns WHERE role = 'user' GROUP BY text"
            ).fetchall()
        )
    finally:
        con.close()
    lost = len(messages - ids) + len(replies - ids)
    duplicated = sum(1 for text in books.sent if counts.get(text, 0) > 1)
    return lost, duplicated
