"""The Discord actor end to end, setting up: the token, its refusals, the intents, each a line
in `hexbus status`.

discord.py's real client in the actor's process, against a Discord-compatible server on loopback
(tests/support/fakediscord), through a real supervisor and bus (tests/support/discord/hexes.py).
Every test here starts real processes: marked slow.
"""

from __future__ import annotations

import time

import pytest

from tests.support.discord.hexes import (
    BRAIN,
    discord_toml,
    start,
    wait_reply,
)
from tests.support.fakediscord import FakeDiscord, Intent
from tests.support.harness import FAST_BUS, Hex, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


def test_no_token_is_one_clear_line_in_status_and_no_restart_loop(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    hx = Hex(FAST_BUS + discord_toml(fake, token=None)).start(wait_live=False)
    hexes.append(hx)
    status = hx.wait_state({"discord": "failed"}, timeout=30)
    reason = status["discord"]["reason"]
    assert "DISCORD_TOKEN is not set" in reason and ".env" in reason, reason
    time.sleep(1.0)
    assert hx.status()["discord"]["restarts"] == 0


def test_the_token_may_come_from_a_dot_env_file_beside_supervisor_toml(
    fake: FakeDiscord, hexes: list[Hex]
) -> None:
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    (root / ".env").write_text('# Hex secrets\nDISCORD_TOKEN="test-token"\n')
    hx = Hex(FAST_BUS + BRAIN + discord_toml(fake, token=None), root=root).start()
    hexes.append(hx)
    poll_for(lambda: fake.connected, 20, what="a gateway session with the token from .env")
    ana = fake.add_user("ana")
    dm = fake.dm_channel(ana)
    wait_reply(fake, dm, fake.post(dm, ana, "hello"), "You said: hello")
    assert "test-token" not in hx.log()


def test_a_wrong_token_is_reported_as_refused(fake: FakeDiscord, hexes: list[Hex]) -> None:
    hx = Hex(FAST_BUS + discord_toml(fake, token="not-the-token")).start(wait_live=False)
    hexes.append(hx)
    status = hx.wait_state({"discord": "failed"}, timeout=30)
    assert "refused the token" in status["discord"]["reason"]
    assert "not-the-token" not in hx.log()  # never log a secret


def test_missing_privileged_intents_name_the_portal_switch(hexes: list[Hex]) -> None:
    with FakeDiscord(token="test-token", approved_intents=Intent.GUILD_MEMBERS) as fake:
        hx = Hex(FAST_BUS + discord_toml(fake)).start(wait_live=False)
        hexes.append(hx)
        status = hx.wait_state({"discord": "failed"}, timeout=30)
        assert "MESSAGE CONTENT" in status["discord"]["reason"], status["discord"]


def test_the_intents_hex_asks_for(fake: FakeDiscord, hexes: list[Hex]) -> None:
    hexes.append(start(fake))
    wanted = (
        Intent.GUILDS
        | Intent.GUILD_MEMBERS
        | Intent.GUILD_VOICE_STATES
        | Intent.GUILD_MESSAGES
        | Intent.DIRECT_MESSAGES
        | Intent.MESSAGE_CONTENT
    )
    assert fake.intents is not None and fake.intents & wanted == wanted
    assert not fake.intents & Intent.GUILD_PRESENCES  # privileged and not needed: not asked for
