"""Chat exports people already have, read as import turns: WhatsApp's "Export chat" text,
Telegram Desktop's JSON and DiscordChatExporter's JSON.

Nobody keeps two years of chat as Hex's JSON Lines; they have what their app exports. Each
reader keeps every message (an attachment or sticker as a bracketed placeholder, so a reply
to a photo keeps what it answered) and reports by number what is not a turn (a call, a
join, an empty line). Ids are stable across exports of the same chat, so importing a newer
export adds only what is new. A Discord message keeps the id the Discord actor gives it
live (``discord_io.names.message_event_id``), the live channel's conversation and the
author's person id: a channel Hex was in is not stored twice, and its people stay who they
were. Naive times (WhatsApp's, Telegram's without ``date_unixtime``) are taken as UTC, as
for JSON Lines.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, Final, Literal

from hexbus.codec import derived_id
from schemas import ImportedTurn

Read = tuple[list[ImportedTurn], list[str]]

# "12/31/23, 9:41 PM - Ana: hi" (Android), "[31/12/2023, 21:41:05] Ana: hi" (iOS),
# "31.12.23, 21:41 - Ana: hi" (German), "2023-12-31 21:41 - Ana: hi"; iOS puts U+200E
# marks before system lines and attachments, and newer exports a narrow no-break space
# before AM/PM.
DATE: Final = r"(?P<d1>\d{1,4})[./-](?P<d2>\d{1,2})[./-](?P<d3>\d{1,4})"
TIME: Final = (
    r"(?P<h>\d{1,2})[:.](?P<m>\d{2})(?:[:.](?P<s>\d{2}))?"
    r"(?:[\s\u202f\u00a0]*(?P<ampm>[AaPp]\.?\s?[Mm]\.?))?"
)
# A header has the app's own separator: "[date, time] " (iOS) or "date, time - " (Android);
# a message line that merely starts with a date ("25/12 18:00 dinner") is not one.
HEADERS: Final = (
    re.compile(rf"^\u200e?\[{DATE},?\s+{TIME}\]\s(?P<rest>.*)$"),
    re.compile(rf"^\u200e?{DATE},?\s+{TIME}\s[-\u2013]\s(?P<rest>.*)$"),
)


def header(line: str) -> re.Match[str] | None:
    """A WhatsApp message's first line, split into its date, time and the rest."""
    return HEADERS[0].match(line) or HEADERS[1].match(line)


EDITED: Final = "<This message was edited>"
DELETED: Final = frozenset(
    {"This message was deleted", "You deleted this message"}
)  # English exports
IOS_MEDIA: Final = re.compile(r"^\u200e(<attached: .*>|[\w ]+ omitted)$")
MARKS: Final = str.maketrans("", "", "\u200e\u200f\u202a\u202c")
SPEAKER_MAX: Final = 80
QUOTES: Final = '"\u201c\u201d\u00ab\u00bb\u201e'
ZIP_MAGIC: Final = b"PK\x03\x04"
MAX_ZIP_CHAT: Final = 128 << 20  # a chat's text unpacked from a zip; years of chat are ~10 MiB


def identify(raw: bytes) -> tuple[str, Any]:
    """Which reader a file needs (``whatsapp``, ``whatsapp-zip``: what iOS and "Attach media"
    export, ``telegram``, ``discord`` or ``jsonl``) and what that reader reads: a JSON
    export's document, parsed once here, or the file's bytes."""
    if raw.startswith(ZIP_MAGIC):
        return "whatsapp-zip", raw
    head = raw[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{") and b'"messages"' in raw:
        try:
            data = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            return "jsonl", raw  # JSON Lines (more than one document), or broken: its reader says
        if isinstance(data, dict):
            if "channel" in data and "guild" in data:
                return "discord", data
            if "chats" in data or "type" in data:  # Saved Messages have no "name"
                return "telegram", data
        return "jsonl", raw
    first = next((line for line in head.decode("utf-8", "replace").splitlines() if line), "")
    return ("whatsapp" if header(first) and not first.startswith("{") else "jsonl"), raw


def detect(raw: bytes) -> str:
    """Which reader a file needs (see :func:`identify`)."""
    return identify(raw)[0]


def read_export(content: Any, name: str, kind: str, assistants: frozenset[str]) -> Read:
    """The turns of an export of ``kind`` and what was not imported; ``content`` is what
    :func:`identify` gave for it."""
    readers: dict[str, Callable[[Any, str, frozenset[str]], Read]] = {
        "whatsapp": whatsapp,
        "whatsapp-zip": whatsapp_zip,
        "telegram": telegram,
        "discord": discord,
    }
    return readers[kind](content, name, assistants)


def _role(speaker: str, assistants: frozenset[str]) -> Literal["user", "assistant"]:
    return "assistant" if speaker.casefold() in assistants else "user"


def _turn(
    app: str,
    chat: str,
    ident: str,
    speaker: str,
    text: str,
    at: float,
    assistants: frozenset[str],
    meta: dict[str, str],
) -> ImportedTurn:
    """A turn of ``app``'s chat ``chat``, under the id ``app:ident``."""
    return ImportedTurn(
        id=f"{app}:{ident}",
        conversation=f"{app}:{chat}",
        speaker=speaker,
        text=text,
        at=at,
        role=_role(speaker, assistants),
        meta=meta,
    )


# -- WhatsApp ---------------------------------------------------------------------------------


def chat_name(file_name: str) -> str:
    """The chat a WhatsApp export is of, from its file name ("WhatsApp Chat with Ana.txt",
    "WhatsApp-Chat mit Ana (1).txt", "Chat de WhatsApp con Ana.zip" are all "Ana"), so a
    later export of the same chat, downloaded again, is the same conversation."""
    stem = re.sub(r"\.(txt|zip)$", "", file_name.rsplit("/", 1)[-1], flags=re.I)
    stem = re.sub(r"\s*\(\d+\)$", "", stem)  # a browser's second download
    stem = re.sub(
        r"^(_chat|whatsapp[- ]chat(\s+(with|mit|avec|met|con|com|z))?|chat de whatsapp con"
        r"|conversa do whatsapp com|discussion whatsapp avec)\b",
        "",
        stem.strip(),
        flags=re.I,
    )
    return stem.strip(" -_") or "chat"


def _date_order(dates: list[tuple[int, int, int]], times: list[int]) -> str:
    """``dmy``, ``mdy`` or ``ymd``, from the dates themselves: the order under which most of
    them are dates at all (a field over 12 is a day), then under which the chat runs forward
    in time, then the one whose chat spans the least time (days 3 to 9 of January read the
    other way round are March to September, forward too). No locale guess: a 12-hour clock
    is day first in India and month first in the US."""

    def score(order: str) -> tuple[int, int, float]:
        stamps = []
        for date, seconds in zip(dates, times, strict=True):
            try:
                stamps.append(_stamp(date, seconds, order))
            except ValueError:  # 30/02 read one way round: no such day
                continue
        invalid = len(dates) - len(stamps)
        backwards = sum(b < a for a, b in pairwise(stamps))
        return invalid, backwards, (max(stamps) - min(stamps)) if stamps else 0

    return min(("dmy", "mdy", "ymd"), key=score)


def _stamp(date: tuple[int, int, int], seconds: int, order: str) -> float:
    """Unix seconds of a WhatsApp date read in ``order`` and a time of day (taken as UTC);
    ValueError when there is no such day."""
    d1, d2, d3 = date
    year, month, day = (
        (d1, d2, d3) if order == "ymd" else (d3, d1, d2) if order == "mdy" else (d3, d2, d1)
    )
    year += 2000 if year < 100 else 0
    return datetime(year, month, day, tzinfo=UTC).timestamp() + seconds


def _seconds(match: re.Match[str]) -> int:
    hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"] or 0)
    if match["ampm"]:
        hour = hour % 12 + (12 if match["ampm"][0] in "Pp" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"no such time {match['h']}:{match['m']}")
    return hour * 3600 + minute * 60 + second


def whatsapp(raw: bytes, name: str, assistants: frozenset[str]) -> Read:
    """A WhatsApp "Export chat (without media)" text file: a header per message, the lines of
    a long message after it; system lines (encryption notice, joins, subject changes) are not
    turns and are reported."""
    chat = chat_name(name)
    problems: list[str] = []
    found: list[tuple[int, re.Match[str], list[str]]] = []  # (line, header, text lines)
    for number, line in enumerate(raw.decode("utf-8-sig", "replace").splitlines(), start=1):
        match = header(line)
        if match is not None:
            found.append((number, match, [match["rest"]]))
        elif found:
            found[-1][2].append(line)  # a message of several lines
        elif line.strip():
            problems.append(f"line {number}: not a WhatsApp message line")
    parsed: list[tuple[int, tuple[int, int, int], int, str]] = []
    for number, match, lines in found:
        try:
            date = (int(match["d1"]), int(match["d2"]), int(match["d3"]))
            parsed.append((number, date, _seconds(match), "\n".join(lines)))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    order = _date_order([p[1] for p in parsed], [p[2] for p in parsed])
    turns: list[ImportedTurn] = []
    seen: Counter[str] = Counter()
    for number, date, seconds, body in parsed:
        try:
            at = _stamp(date, seconds, order)
        except ValueError as exc:
            problems.append(f"line {number}: bad date ({exc}; read as {order})")
            continue
        speaker, sep, text = body.partition(": ")
        speaker = speaker.translate(MARKS)
        # iOS writes its notices as the chat's own lines, the text after a U+200E mark (as it
        # does attachments: "\u200e<attached: …>", "\u200eimage omitted", which are kept).
        notice = text.startswith("\u200e") and not IOS_MEDIA.match(text.strip())
        quoted = any(q in speaker for q in QUOTES)  # 'Ana created group "Trip: 2024"'
        if not sep or not speaker.strip() or len(speaker) > SPEAKER_MAX or notice or quoted:
            shown = body.translate(MARKS).strip()[:60]
            problems.append(f"line {number}: a system message, not a turn ({shown!r})")
            continue
        text = text.translate(MARKS)
        if text.strip().rstrip(".") in DELETED:
            problems.append(f"line {number}: a deleted message, nothing to import")
            continue
        meta = {"line": str(number)}
        if text.rstrip().endswith(EDITED):
            text, meta["edited"] = text.rstrip()[: -len(EDITED)].rstrip(), "true"
        if not text.strip():
            problems.append(f"line {number}: an empty message")
            continue
        speaker = speaker.strip()
        key = f"{at:.0f}/{speaker}/{text}"
        seen[key] += 1
        ident = derived_id("whatsapp", chat, key, str(seen[key]))
        turns.append(_turn("whatsapp", chat, ident, speaker, text, at, assistants, meta))
    return turns, problems


def zip_chat(source: str | Path | IO[bytes]) -> bytes:
    """The chat of a WhatsApp zip (``_chat.txt``, or its one text file), read without the
    media beside it (a zip with media may be gigabytes: a path is read in place)."""
    with zipfile.ZipFile(source) as archive:
        texts = [
            i
            for i in archive.infolist()
            if i.filename.lower().endswith(".txt") and not i.filename.startswith("__MACOSX/")
        ]
        named = [
            i
            for i in texts
            if i.filename.rsplit("/", 1)[-1] == "_chat.txt"
            or "whatsapp" in i.filename.rsplit("/", 1)[-1].lower()
        ]
        chat = named[0] if len(named) == 1 else texts[0] if len(texts) == 1 else None
        if chat is None:
            raise ValueError(
                f"no chat in the zip: {len(texts)} text files, and not one _chat.txt or "
                "WhatsApp Chat … .txt among them"
            )
        if chat.file_size > MAX_ZIP_CHAT:
            raise ValueError(f"{chat.filename} unpacks to {chat.file_size >> 20} MiB")
        return archive.read(chat)


def whatsapp_zip(raw: bytes, name: str, assistants: frozenset[str]) -> Read:
    """A WhatsApp export as a zip: its chat is read; the media are not (their placeholders
    in the chat are)."""
    return whatsapp(zip_chat(io.BytesIO(raw)), name, assistants)


# -- Telegram ---------------------------------------------------------------------------------


def _telegram_chats(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    chats = data.get("chats")
    if isinstance(chats, dict) and isinstance(chats.get("list"), list):
        yield from (c for c in chats["list"] if isinstance(c, dict))  # a whole account's export
    else:
        yield data  # one chat's result.json


def _telegram_text(message: dict[str, Any]) -> str:
    text = message.get("text", "")
    if isinstance(text, list):  # plain strings and entities ({"type": "link", "text": ...})
        text = "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in text)
    parts = [text] if isinstance(text, str) and text.strip() else []
    if message.get("photo"):
        parts.insert(0, "[photo]")
    if message.get("sticker_emoji"):
        parts.insert(0, f"[sticker {message['sticker_emoji']}]")
    elif message.get("file") or message.get("media_type"):
        kind = str(message.get("media_type", "file")).replace("_", " ")
        title = message.get("file_name") or message.get("title") or ""
        parts.insert(0, f"[{kind}{': ' + str(title) if title else ''}]")
    return "\n".join(parts)


def telegram(data: dict[str, Any], name: str, assistants: frozenset[str]) -> Read:
    """Telegram Desktop's "Export chat history" (JSON): one chat's ``result.json`` or a whole
    account's; service messages (calls, joins, pins) are not turns and are reported."""
    turns: list[ImportedTurn] = []
    problems: list[str] = []
    for chat in _telegram_chats(data):
        chat_id = str(chat.get("id", chat.get("name", "chat")))
        for i, message in enumerate(chat.get("messages") or [], start=1):
            number = message.get("id", i) if isinstance(message, dict) else i
            where = f"chat {chat.get('name', chat_id)!s}, message {number}"
            if not isinstance(message, dict) or message.get("type") != "message":
                action = message.get("action", "?") if isinstance(message, dict) else "?"
                problems.append(f"{where}: a service message ({action}), not a turn")
                continue
            speaker = str(message.get("from") or "").strip()
            text = _telegram_text(message)
            try:
                if "date_unixtime" in message:
                    at = float(message["date_unixtime"])
                else:
                    at = datetime.fromisoformat(message["date"]).replace(tzinfo=UTC).timestamp()
            except (KeyError, TypeError, ValueError):
                problems.append(f"{where}: no readable date")
                continue
            if not speaker or not text.strip():
                problems.append(f"{where}: no sender or nothing said")
                continue
            meta = {"from_id": str(message.get("from_id", ""))}
            if message.get("reply_to_message_id"):
                meta["reply_to"] = f"telegram:{chat_id}:{message['reply_to_message_id']}"
            ident = f"{chat_id}:{message.get('id', i)}"
            turns.append(_turn("telegram", chat_id, ident, speaker, text, at, assistants, meta))
    return turns, problems


# -- Discord (DiscordChatExporter) ------------------------------------------------------------

DISCORD_TURNS: Final = ("Default", "Reply")


def _discord_text(message: dict[str, Any]) -> str:
    parts = [str(message.get("content") or "")] if str(message.get("content") or "").strip() else []
    for attachment in message.get("attachments") or []:
        parts.append(f"[attached: {attachment.get('fileName', 'a file')}]")
    for sticker in message.get("stickers") or []:
        parts.append(f"[sticker: {sticker.get('name', '?')}]")
    if not parts:
        for embed in message.get("embeds") or []:
            title = embed.get("title") or embed.get("description") or embed.get("url") or ""
            if title:
                parts.append(f"[embed: {title}]")
    return "\n".join(parts)


def discord(data: dict[str, Any], name: str, assistants: frozenset[str]) -> Read:
    """A DiscordChatExporter JSON export of one channel or DM: turns under the ids, channel
    and person ids the Discord actor uses live; system messages (joins, pins, calls) are
    reported, not imported."""
    channel = str((data.get("channel") or {}).get("id", "")).strip()
    if not channel:
        return [], ["the export names no channel id"]
    turns: list[ImportedTurn] = []
    problems: list[str] = []
    for i, message in enumerate(data.get("messages") or [], start=1):
        where = f"message {message.get('id', i) if isinstance(message, dict) else i}"
        if not isinstance(message, dict) or message.get("type") not in DISCORD_TURNS:
            kind = message.get("type", "?") if isinstance(message, dict) else "?"
            problems.append(f"{where}: a {kind} message, not a turn")
            continue
        author = message.get("author") or {}
        speaker = str(author.get("nickname") or author.get("name") or "").strip()
        text = _discord_text(message)
        try:
            when = datetime.fromisoformat(str(message["timestamp"]).replace("Z", "+00:00"))
            at = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        except (KeyError, ValueError):
            problems.append(f"{where}: no readable timestamp")
            continue
        if not speaker or not text.strip() or not str(message.get("id", "")).strip():
            problems.append(f"{where}: no id, author or anything said")
            continue
        role: Literal["user", "assistant"] = (
            _role(speaker, assistants) if author.get("isBot") else "user"
        )
        if author.get("isBot") and role == "user":
            problems.append(f"{where}: from the bot {speaker!r}, not a person (--assistant)")
            continue
        meta = {"discord_id": str(message["id"])}
        if (message.get("reference") or {}).get("messageId"):
            meta["reply_to"] = str(message["reference"]["messageId"])
        turns.append(
            ImportedTurn(
                # discord_io.names.message_event_id: the id the live message has
                id=derived_id("discord", str(message["id"]).strip()),
                conversation=f"discord:{channel}",
                speaker=speaker,
                text=text,
                at=at,
                person_id=f"discord:{author['id']}" if author.get("id") else "",
                role=role,
                meta=meta,
            )
        )
    return turns, problems
