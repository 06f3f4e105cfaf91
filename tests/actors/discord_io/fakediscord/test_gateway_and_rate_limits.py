"""FakeDiscord against discord.py's real client: rate limits, errors, gateway sessions, bad logins.

The client runs on its own thread and event loop (``BotThread``, tests/support/discord), as it
does in the bot's process, so the test thread only uses FakeDiscord's synchronous API.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import discord
import pytest

from tests.support.discord.botthread import TOKEN, BotThread, Recorder
from tests.support.discord.realclient import StartBot, aim_at, contents_seen, default_intents
from tests.support.fakediscord import FakeDiscord


def test_injected_429_is_waited_out_and_the_message_arrives_once(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    bot = start_bot()
    general = fake.general_channel_id
    fake.fail_next("POST", r"/channels/\d+/messages", 429, retry_after=0.3)
    started = time.monotonic()
    bot.call(lambda c: c.get_partial_messageable(general).send("patience"))

    assert time.monotonic() - started >= 0.3
    assert [m["content"] for m in fake.messages(general)] == ["patience"]
    sends = [r.status for r in fake.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert sends == [429, 200]
    assert fake.rate_limited == 1


def test_injected_500_is_retried_by_discord_py(fake: FakeDiscord, start_bot: StartBot) -> None:
    bot = start_bot()
    general = fake.general_channel_id
    fake.fail_next("POST", r"/channels/\d+/messages", 500, html=True)
    bot.call(lambda c: c.get_partial_messageable(general).send("eventually"))

    assert [m["content"] for m in fake.messages(general)] == ["eventually"]
    sends = [r.status for r in fake.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert sends == [500, 200]


def _raw(fd: FakeDiscord, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    request = urllib.request.Request(
        fd.api_base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bot {fd.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, json.loads(error.read() or b"null")


def test_message_bucket_answers_429_with_discord_headers_and_body() -> None:
    with FakeDiscord(TOKEN, message_rate=(2, 1.0)) as fd:
        path = f"/channels/{fd.general_channel_id}/messages"
        first, second, third = (_raw(fd, "POST", path, {"content": str(i)}) for i in range(3))
        other_channel = _raw(
            fd, "POST", f"/channels/{fd.add_channel('other')}/messages", {"content": "x"}
        )

        assert [first[0], second[0], third[0], other_channel[0]] == [200, 200, 429, 200]
        assert first[1]["X-RateLimit-Limit"] == "2" and first[1]["X-RateLimit-Remaining"] == "1"
        assert second[1]["X-RateLimit-Remaining"] == "0"
        assert float(second[1]["X-RateLimit-Reset-After"]) <= 1.0
        assert first[1]["X-RateLimit-Bucket"] == third[1]["X-RateLimit-Bucket"]
        assert third[2]["message"] == "You are being rate limited."
        assert 0 < third[2]["retry_after"] <= 1.0 and third[2]["global"] is False
        assert third[1]["Retry-After"] == "1" and third[1]["Via"]
        assert fd.rate_limited == 1
        assert _raw(fd, "GET", "/nowhere")[2] == {"message": "404: Not Found", "code": 0}
        assert ("GET", "/nowhere", 404) in [(r.method, r.path, r.status) for r in fd.requests]
        assert fd.errors == []


def test_discord_py_respects_the_bucket_without_tripping_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeDiscord(TOKEN, message_rate=(2, 0.5)) as fd:
        aim_at(monkeypatch, fd)
        bot = BotThread(lambda: Recorder(intents=default_intents())).start()
        try:
            bot.wait_ready()

            async def burst(client: Recorder) -> None:
                channel = client.get_partial_messageable(fd.general_channel_id)
                for i in range(5):
                    await channel.send(f"line {i}")

            started = time.monotonic()
            bot.call(burst)
            assert time.monotonic() - started >= 0.9  # five sends need three 0.5 s windows
            assert [m["content"] for m in fd.messages(fd.general_channel_id)] == [
                f"line {i}" for i in range(5)
            ]
        finally:
            bot.stop()
        assert fd.errors == []


def test_disconnect_resumes_and_replays_what_was_missed(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    alice = fake.add_user("alice")
    bot = start_bot()
    fake.disconnect(4000)
    fake.post(fake.general_channel_id, alice, "during the gap")
    fake.wait_until(lambda: fake.resume_count == 1)
    fake.post(fake.general_channel_id, alice, "after the resume")

    fake.wait_until(lambda: len(bot.client.seen) == 2)
    assert contents_seen(bot) == ["during the gap", "after the resume"]
    assert fake.identify_count == 1
    fake.wait_until(lambda: bot.client.resumed == 1)


def test_invalid_session_makes_discord_py_identify_again(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    alice = fake.add_user("alice")
    bot = start_bot()
    fake.disconnect(resumable=False)
    fake.wait_until(lambda: fake.identify_count == 2 and fake.connected)
    fake.post(fake.general_channel_id, alice, "new session")

    fake.wait_until(lambda: contents_seen(bot) == ["new session"])
    assert fake.resume_count == 0


@pytest.mark.slow
def test_outage_drops_the_gateway_until_it_ends(fake: FakeDiscord, start_bot: StartBot) -> None:
    start_bot()
    fake.outage(0.2)
    assert not fake.online
    fake.wait_until(lambda: fake.online and fake.connected, timeout=10)
    assert fake.resume_count == 1 and fake.identify_count == 1


def test_bad_token_fails_login(fake: FakeDiscord, start_bot: StartBot) -> None:
    bot = start_bot(token="not-the-token", ready=False)
    assert bot.done.wait(10)
    assert isinstance(bot.error, discord.LoginFailure)
    assert ("GET", "/users/@me", 401) in [(r.method, r.path, r.status) for r in fake.requests]


def test_unapproved_privileged_intent_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDiscord(TOKEN, approved_intents=0) as fd:
        aim_at(monkeypatch, fd)
        bot = BotThread(lambda: Recorder(intents=default_intents(content=True))).start()
        try:
            assert bot.done.wait(10)
            assert isinstance(bot.error, discord.PrivilegedIntentsRequired)
        finally:
            bot.stop()


def test_voice_state_request_is_recorded_and_answered(
    fake: FakeDiscord, start_bot: StartBot
) -> None:
    lounge = fake.add_voice_channel("Lounge")
    bot = start_bot()

    async def join(client: Recorder) -> None:
        guild = client.get_guild(fake.guild_id)
        assert guild is not None
        await guild.change_voice_state(channel=guild.get_channel(lounge), self_deaf=True)

    bot.call(join)
    fake.wait_until(lambda: fake.voice_state_requests)
    assert fake.voice_state_requests[0]["channel_id"] == lounge
    assert fake.voice_state_requests[0]["self_deaf"] is True

    def bot_in_lounge() -> bool:
        guild = bot.client.get_guild(fake.guild_id)
        voice = guild.me.voice if guild is not None else None
        return voice is not None and voice.channel is not None and voice.channel.id == lounge

    fake.wait_until(bot_in_lounge)
