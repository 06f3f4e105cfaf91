"""Chat apps' exports read as import turns: WhatsApp text in its locales, Telegram Desktop's
JSON, DiscordChatExporter's JSON. The samples are written the way those apps write them
(U+200E marks, narrow no-break spaces, messages over several lines, system lines, media)."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.discord_io.names import message_event_id
from actors.memory.exports import chat_name, detect
from actors.memory.importer import HistoryError, parse_history, read_history
from schemas import ImportedTurn

NNBSP = "\u202f"
LRM = "\u200e"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


ANDROID_US = f"""12/24/23, 9:03{NNBSP}PM - Messages and calls are end-to-end encrypted. No one outside of this chat, not even WhatsApp, can read or listen to them. Tap to learn more.
12/24/23, 9:03{NNBSP}PM - Ana: did you see the snow?? 😍
12/24/23, 9:05{NNBSP}PM - Tomás: yes!! ok listen
I signed up for the pottery class
the thursday one at the community centre
12/24/23, 9:06{NNBSP}PM - Ana: <Media omitted>
12/24/23, 9:06{NNBSP}PM - Ana: This message was deleted
12/24/23, 9:06{NNBSP}PM - Ana: that one?
12/24/23, 9:07{NNBSP}PM - Tomás: Yes, that one! <This message was edited>
12/25/23, 12:15{NNBSP}AM - Ana changed the group description
1/2/24, 7:30{NNBSP}AM - Tomás: happy new year, time: 7:30 and still up
"""

IOS_DMY = f"""[24/12/2023, 21:03:11] Ana: {LRM}Messages and calls are end-to-end encrypted.
[24/12/2023, 21:03:40] Ana: did you see the snow??
[24/12/2023, 21:05:02] Tomás: yes!! ok listen
I signed up for the pottery class
[24/12/2023, 21:06:00] Ana: {LRM}<attached: 00000012-PHOTO-2023-12-24-21-06-00.jpg>
[24/12/2023, 21:06:30] Tomás: {LRM}image omitted
[24/12/2023, 21:07:00] Tomás: {LRM}Missed voice call
[02/01/2024, 07:30:59] Tomás: happy new year
"""

GERMAN = """24.12.23, 21:03 - Ana: hast du den Schnee gesehen?
24.12.23, 21:05 - Tomás: ja! ich mache jetzt den Töpferkurs
13.01.24, 10:00 - Ana: wie war der erste Kurs?
"""


def read(
    text: str, name: str = "WhatsApp Chat with Ana.txt", assistants: tuple[str, ...] = ("Hex",)
) -> tuple[list[ImportedTurn], list[str]]:
    return parse_history(text.encode(), name, assistants)


def test_an_android_export_in_us_dates_keeps_long_messages_media_and_edits_and_names_what_is_not_a_turn() -> (
    None
):
    turns, problems = read(ANDROID_US)
    assert [(t.speaker, t.text) for t in turns] == [
        ("Ana", "did you see the snow?? 😍"),
        (
            "Tomás",
            "yes!! ok listen\nI signed up for the pottery class\nthe thursday one at the community centre",
        ),
        ("Ana", "<Media omitted>"),
        ("Ana", "that one?"),
        ("Tomás", "Yes, that one!"),
        ("Tomás", "happy new year, time: 7:30 and still up"),
    ]
    assert turns[0].at == utc(2023, 12, 24, 21, 3)
    assert turns[-1].at == utc(2024, 1, 2, 7, 30)  # month first: 12/24 says so
    assert turns[4].meta["edited"] == "true"
    assert {t.conversation for t in turns} == {"whatsapp:Ana"}
    assert all(t.role == "user" and t.person_id == "" for t in turns)
    assert len({t.id for t in turns}) == len(turns)
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 7", "line 10"]
    assert "deleted" in problems[1] and "system message" in problems[2]


def test_an_ios_export_in_day_first_dates_with_seconds_and_marks() -> None:
    turns, problems = read(IOS_DMY, "_chat.txt")
    assert [t.text for t in turns] == [
        "did you see the snow??",
        "yes!! ok listen\nI signed up for the pottery class",
        "<attached: 00000012-PHOTO-2023-12-24-21-06-00.jpg>",
        "image omitted",
        "happy new year",
    ]
    assert turns[-1].at == utc(2024, 1, 2, 7, 30, 59)  # 24/12 says day first
    assert turns[0].conversation == "whatsapp:chat"
    assert problems == [
        "line 1: a system message, not a turn "
        "('Ana: Messages and calls are end-to-end encrypted.')",
        "line 7: a system message, not a turn ('Tomás: Missed voice call')",
    ]


def test_a_german_export_and_the_assistant_named_in_it() -> None:
    turns, _ = read(GERMAN, "WhatsApp Chat mit Hex.txt", assistants=("Ana",))
    assert [t.at for t in turns] == [
        utc(2023, 12, 24, 21, 3),
        utc(2023, 12, 24, 21, 5),
        utc(2024, 1, 13, 10, 0),
    ]
    assert [t.role for t in turns] == ["assistant", "user", "assistant"]


def test_dates_that_never_pass_12_are_read_in_the_order_that_runs_forward() -> None:
    # 3 Jan, 5 Jan, 1 Feb, 4 Feb read day first; month first it would jump March -> May -> Jan
    lines = ["03/01/24, 10:00 - A: one", "05/01/24, 10:00 - B: two", "01/02/24, 10:00 - A: three"]
    turns, _ = read("\n".join([*lines, "04/02/24, 10:00 - B: four"]) + "\n")
    assert [datetime.fromtimestamp(t.at, UTC).date().isoformat() for t in turns] == [
        "2024-01-03",
        "2024-01-05",
        "2024-02-01",
        "2024-02-04",
    ]


def test_lines_that_start_with_a_date_inside_a_message_stay_in_it() -> None:
    plan = (
        "12/20/23, 9:00\u202fAM - Ana: the plan:\n2024-01-05 10:00 dentist\n"
        "25/12/2023, 18:00 dinner at mom's\n26/12/2023 10:00 brunch: bring cake\n"
        "12/21/23, 9:00\u202fAM - Tomás: ok\n"
    )
    turns, problems = read(plan)
    assert [t.speaker for t in turns] == ["Ana", "Tomás"] and problems == []
    assert turns[0].text.endswith("brunch: bring cake") and turns[1].at == utc(2023, 12, 21, 9)


def test_a_short_day_first_chat_with_a_12_hour_clock_is_read_day_first() -> None:
    """India writes 03/01/24, 9:03 pm: days 3 to 9 of January, not March to September."""
    week = "".join(f"0{d}/01/24, 9:0{d} pm - Ana: day {d}\n" for d in range(3, 10))
    turns, _ = read(week)
    assert [datetime.fromtimestamp(t.at, UTC).date().day for t in turns] == list(range(3, 10))
    assert {datetime.fromtimestamp(t.at, UTC).month for t in turns} == {1}


def test_a_system_line_quoting_a_group_name_with_a_colon_is_not_a_turn() -> None:
    turns, problems = read(
        '12/24/23, 9:03\u202fPM - Ana created group "Trip: 2024"\n'
        "12/24/23, 9:04\u202fPM - Ana: hi all\n"
    )
    assert [t.text for t in turns] == ["hi all"] and problems[0].startswith("line 1: a system")


def test_ids_stay_the_same_in_a_later_export_of_the_same_chat() -> None:
    first, _ = read(ANDROID_US)
    later, _ = read(ANDROID_US + "1/3/24, 8:00\u202fAM - Ana: morning\n")
    assert [t.id for t in later[: len(first)]] == [t.id for t in first]
    repeated, _ = read("1/2/24, 7:30 AM - Ana: ok\n1/2/24, 7:30 AM - Ana: ok\n")
    assert len({t.id for t in repeated}) == 2  # the same words twice in a minute: two turns


def test_a_chat_name_from_the_file_name() -> None:
    assert chat_name("WhatsApp Chat with Ana Lopez.txt") == "Ana Lopez"
    assert chat_name("WhatsApp Chat - Family.zip") == "Family"
    assert chat_name("_chat.txt") == "chat"
    assert chat_name("WhatsApp Chat with Ana (1).txt") == "Ana"
    assert chat_name("WhatsApp-Chat mit Ana.txt") == "Ana"
    assert chat_name("Chat de WhatsApp con Ana.zip") == "Ana"


NAMES = st.sampled_from(["Ana", "Tomás", "+49 151 2345678", "Lucho 🧗", "Dr. Who", "李雷"])
WORD = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")).filter(
        lambda c: c not in "\u2028\u2029\x85" and c.isprintable()
    ),
    min_size=1,
    max_size=20,
)
LINE = WORD.filter(lambda w: w.strip() and not (w[0].isdigit() or w[0] == "[")).map(str.strip)
TEXT = st.lists(LINE.filter(bool), min_size=1, max_size=3).map("\n".join)
STYLES = {
    "android-us": lambda d: (
        f"{d.month}/{d.day}/{d:%y}, {(d.hour % 12) or 12}:{d:%M}{NNBSP}{'AM' if d.hour < 12 else 'PM'} - "
    ),
    "android-24h": lambda d: f"{d:%d/%m/%Y}, {d:%H:%M} - ",
    "ios": lambda d: f"[{d:%d/%m/%Y}, {d:%H:%M:%S}] ",
    "ios-us": lambda d: (
        f"[{d.month}/{d.day}/{d:%y}, {(d.hour % 12) or 12}:{d:%M:%S} {'AM' if d.hour < 12 else 'PM'}] "
    ),
    "german": lambda d: f"{d:%d.%m.%y}, {d:%H:%M} - ",
}


@settings(max_examples=60, deadline=None)
@given(
    style=st.sampled_from(sorted(STYLES)),
    start=st.datetimes(datetime(2015, 1, 1), datetime(2030, 1, 1)),
    messages=st.lists(st.tuples(NAMES, TEXT, st.integers(0, 40 * 86_400)), min_size=1, max_size=25),
)
def test_any_whatsapp_chat_written_out_reads_back_as_said(
    style: str, start: datetime, messages: list[tuple[str, str, int]]
) -> None:
    """Who said what and when, through every style: a day past the 12th is always among the
    dates (the first message is on the 13th or later), as in any chat of more than two weeks."""
    start = start.replace(day=max(start.day, 13), microsecond=0)
    if "ios" not in style:
        start = start.replace(second=0)
    times, at = [], start.replace(tzinfo=UTC).timestamp()
    for i, (_, _, gap) in enumerate(messages):
        at += (gap - gap % (1 if "ios" in style else 60)) if i else 0
        times.append(datetime.fromtimestamp(at, UTC).replace(tzinfo=None))
    text = "".join(
        STYLES[style](when) + f"{who}: {said}\n"
        for (who, said, _), when in zip(messages, times, strict=True)
    )
    turns, problems = read(text)
    assert problems == []
    assert [(t.speaker, t.text) for t in turns] == [(who, said) for who, said, _ in messages]
    assert [t.at for t in turns] == [w.replace(tzinfo=UTC).timestamp() for w in times]


# -- Telegram ---------------------------------------------------------------------------------

TELEGRAM_CHAT: dict[str, Any] = {
    "name": "Ana",
    "type": "personal_chat",
    "id": 4242,
    "messages": [
        {
            "id": 1,
            "type": "service",
            "date": "2023-12-24T21:00:00",
            "date_unixtime": "1703451600",
            "actor": "Ana",
            "action": "phone_call",
            "text": "",
        },
        {
            "id": 2,
            "type": "message",
            "date": "2023-12-24T21:03:11",
            "date_unixtime": "1703451791",
            "from": "Ana",
            "from_id": "user4242",
            "text": ["look at ", {"type": "link", "text": "https://example.org/snow"}, " !!"],
        },
        {
            "id": 3,
            "type": "message",
            "date": "2023-12-24T21:04:00",
            "date_unixtime": "1703451840",
            "from": "Tomás",
            "from_id": "user7",
            "photo": "photos/photo_1.jpg",
            "text": "the pottery class",
            "reply_to_message_id": 2,
        },
        {
            "id": 4,
            "type": "message",
            "date": "2023-12-24T21:05:00",
            "from": "Ana",
            "from_id": "user4242",
            "file": "stickers/sticker.webp",
            "media_type": "sticker",
            "sticker_emoji": "😂",
            "text": "",
        },
        {
            "id": 5,
            "type": "message",
            "date": "2023-12-24T21:06:00",
            "date_unixtime": "1703451960",
            "from": "Hex",
            "from_id": "user9",
            "file": "voice_messages/audio_1.ogg",
            "media_type": "voice_message",
            "text": "",
        },
    ],
}


def test_a_telegram_chat_export_keeps_links_photos_stickers_and_voice_and_names_the_calls() -> None:
    raw = json.dumps(TELEGRAM_CHAT, indent=1, ensure_ascii=False).encode()
    assert detect(raw) == "telegram"
    turns, problems = parse_history(raw, "result.json")
    assert [(t.id, t.speaker, t.text, t.role) for t in turns] == [
        ("telegram:4242:2", "Ana", "look at https://example.org/snow !!", "user"),
        ("telegram:4242:3", "Tomás", "[photo]\nthe pottery class", "user"),
        ("telegram:4242:4", "Ana", "[sticker 😂]", "user"),
        ("telegram:4242:5", "Hex", "[voice message]", "assistant"),
    ]
    assert turns[0].at == 1703451791 and turns[2].at == utc(2023, 12, 24, 21, 5)
    assert turns[1].meta["reply_to"] == "telegram:4242:2"
    assert {t.conversation for t in turns} == {"telegram:4242"}
    assert problems == ["chat Ana, message 1: a service message (phone_call), not a turn"]


def test_a_whole_telegram_account_export_reads_every_chat() -> None:
    other = {**TELEGRAM_CHAT, "id": 5, "name": "Lucho", "messages": TELEGRAM_CHAT["messages"][1:3]}
    raw = json.dumps({"about": "...", "chats": {"list": [TELEGRAM_CHAT, other]}}).encode()
    turns, _ = parse_history(raw, "result.json")
    assert [t.id for t in turns][-2:] == ["telegram:5:2", "telegram:5:3"] and len(turns) == 6


# -- Discord (DiscordChatExporter) ------------------------------------------------------------

DISCORD: dict[str, Any] = {
    "guild": {"id": "0", "name": "Direct Messages", "iconUrl": ""},
    "channel": {"id": "884512", "type": "DirectTextChat", "name": "maya", "topic": None},
    "dateRange": {"after": None, "before": None},
    "messages": [
        {
            "id": "1180000000000000001",
            "type": "Default",
            "timestamp": "2023-12-24T21:03:11.402+00:00",
            "timestampEdited": None,
            "isPinned": False,
            "content": "we named the kitten Biscuit",
            "author": {"id": "1001", "name": "maya", "nickname": "Maya", "isBot": False},
            "attachments": [],
            "embeds": [],
            "stickers": [],
            "reactions": [],
            "mentions": [],
        },
        {
            "id": "1180000000000000002",
            "type": "Reply",
            "timestamp": "2023-12-24T21:04:00+00:00",
            "content": "",
            "author": {"id": "2002", "name": "Hex", "nickname": "Hex", "isBot": True},
            "attachments": [{"id": "9", "url": "https://cdn/x.png", "fileName": "biscuit.png"}],
            "reference": {"messageId": "1180000000000000001"},
        },
        {
            "id": "1180000000000000004",
            "type": "Default",
            "timestamp": "2023-12-24T21:04:30",
            "content": "GG maya, you just advanced to level 3!",
            "author": {"id": "159985870458322944", "name": "MEE6", "isBot": True},
        },
        {
            "id": "1180000000000000003",
            "type": "ChannelPinnedMessage",
            "timestamp": "2023-12-24T21:05:00+00:00",
            "content": "Pinned a message.",
            "author": {"id": "1001", "name": "maya", "nickname": "Maya", "isBot": False},
        },
    ],
    "messageCount": 3,
}


def test_a_discord_export_keeps_the_ids_channel_and_people_the_live_discord_actor_uses() -> None:
    raw = json.dumps(DISCORD, indent=2).encode()
    assert detect(raw) == "discord"
    turns, problems = parse_history(raw, "Direct Messages - maya [884512].json")
    assert [t.id for t in turns] == [
        message_event_id(1180000000000000001),
        message_event_id(1180000000000000002),
    ]
    assert [(t.speaker, t.text, t.role, t.person_id) for t in turns] == [
        ("Maya", "we named the kitten Biscuit", "user", "discord:1001"),
        ("Hex", "[attached: biscuit.png]", "assistant", "discord:2002"),
    ]
    assert {t.conversation for t in turns} == {"discord:884512"}
    assert turns[0].at == pytest.approx(utc(2023, 12, 24, 21, 3, 11) + 0.402)
    assert problems == [
        "message 1180000000000000004: from the bot 'MEE6', not a person (--assistant)",
        "message 1180000000000000003: a ChannelPinnedMessage message, not a turn",
    ]


def test_saved_messages_without_a_name_and_an_overlong_message() -> None:
    saved = {k: v for k, v in TELEGRAM_CHAT.items() if k != "name"} | {"type": "saved_messages"}
    long = {**TELEGRAM_CHAT["messages"][1], "id": 6, "text": "x" * 20_001}
    raw = json.dumps({**saved, "messages": [*saved["messages"], long]}).encode()
    assert detect(raw) == "telegram"
    turns, problems = parse_history(raw, "result.json")
    assert len(turns) == 4 and problems[-1] == (
        "telegram:4242:6: text is longer than 20000 characters"
    )


def test_json_lines_stay_json_lines_and_a_broken_export_is_one_clear_error() -> None:
    line = {"id": "1", "conversation": "c", "speaker": "A", "text": "messages", "timestamp": 0}
    raw = (json.dumps(line) + "\n" + json.dumps({**line, "id": "2"}) + "\n").encode()
    assert detect(raw) == "jsonl" and len(parse_history(raw, "h.jsonl")[0]) == 2
    broken = json.dumps({**DISCORD, "messages": "not a list"}).encode()
    with pytest.raises(HistoryError, match="discord export"):
        parse_history(broken, "x.json")
    empty = json.dumps({**TELEGRAM_CHAT, "messages": TELEGRAM_CHAT["messages"][:1]}).encode()
    with pytest.raises(HistoryError, match=r"no usable turns .*phone_call"):
        parse_history(empty, "result.json")


def test_a_whatsapp_zip_is_read_through_its_chat_and_a_zip_without_one_is_one_clear_error() -> None:
    def zipped(files: dict[str, bytes]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        return out.getvalue()

    raw = zipped({"_chat.txt": IOS_DMY.encode(), "00000012-PHOTO-2023-12-24-21-06-00.jpg": b"\xff"})
    assert detect(raw) == "whatsapp-zip"
    turns, problems = parse_history(raw, "WhatsApp Chat - Ana.zip")
    assert [t.text for t in turns] == [t.text for t in read(IOS_DMY)[0]] and len(problems) == 2
    assert turns[0].conversation == "whatsapp:Ana"
    with pytest.raises(HistoryError, match="no chat in the zip"):
        parse_history(zipped({"a.txt": b"x", "b.txt": b"y"}), "photos.zip")
    android = zipped(
        {
            "WhatsApp Chat with Ana.txt": ANDROID_US.encode(),
            "notes.txt": b"a shared document",
            "__MACOSX/._WhatsApp Chat with Ana.txt": b"\x00\x05",
        }
    )
    assert len(parse_history(android, "WhatsApp Chat with Ana.zip")[0]) == 6
    with pytest.raises(HistoryError, match="whatsapp-zip export"):
        parse_history(b"PK\x03\x04 not really a zip", "broken.zip")
    # A zip damaged in its compressed chat, or cut short: one line each, never a traceback.
    chat_at = raw.index(b"_chat.txt") + len(b"_chat.txt")
    damaged = raw[:chat_at] + bytes(b ^ 0x5A for b in raw[chat_at : chat_at + 64])
    for bad in (damaged + raw[chat_at + 64 :], raw[: len(raw) // 2]):
        with pytest.raises(HistoryError):
            parse_history(bad, "WhatsApp Chat - Ana.zip")


def test_a_whatsapp_zip_with_its_media_is_read_from_disk_for_its_chat_alone(tmp_path: Path) -> None:
    """An export with "Attach media" can be gigabytes: the command reads the chat in place."""
    path = tmp_path / "WhatsApp Chat - Ana.zip"
    with zipfile.ZipFile(path, "w") as archive:  # stored: the media as big on disk as in memory
        archive.writestr("_chat.txt", IOS_DMY.encode())
        archive.writestr("00000013-VIDEO-2023-12-24-21-06-00.mp4", os.urandom(24 << 20))
    tracemalloc.start()
    try:
        turns, _ = read_history(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(turns) == 5 and turns[0].conversation == "whatsapp:Ana"
    assert peak < 8 << 20, f"{peak >> 20} MiB held to read a chat of {len(IOS_DMY)} bytes"
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(HistoryError, match=r"bad\.zip looks like a WhatsApp zip but is not one"):
        read_history(tmp_path / "bad.zip")
