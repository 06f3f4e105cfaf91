"""The Discord actor's configuration and its state (what a snapshot keeps), and the bot token.

In a module of their own so the actor's parts can read them without importing the actor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

__all__ = [
    "ASKED_KEPT",
    "DELIVERED_KEPT",
    "SETUP_FIXES",
    "WATCHED_KEPT",
    "Asked",
    "DiscordConfig",
    "DiscordState",
    "PendingReply",
    "env_names",
    "read_token",
]

WATCHED_KEPT = 1000  # channels whose last seen message is remembered, the most recent
DELIVERED_KEPT = 2000  # reply ids remembered as delivered, so a replayed reply is not posted twice
# Message event ids remembered with their Discord message, to answer with a reference.
ASKED_KEPT = 2000
SETUP_FIXES = "README.md, 'Discord' has the steps"


TOKEN_ENV = "DISCORD_TOKEN"


def env_names(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The variables this actor reads (the ``hexbus.env`` entry point): the supervisor passes
    them to its process, and no other actor gets them."""
    return (str(config.get("token_env") or TOKEN_ENV),)


class DiscordConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token_env: str = TOKEN_ENV  # the environment variable (or .env line) holding the token
    api_base: str = ""  # "" = Discord itself; a compatible server's ".../api/v10" (tests, a proxy)
    gateway_url: str = ""  # that server's gateway websocket ("" = Discord's)
    guild_ready_timeout_s: float = 2.0  # discord.py waits this long for guilds before READY counts
    # Extra CA certificates (PEM) to trust: a proxy's, or the loopback test server's.
    ca_file: str = ""
    voice_connect_timeout_s: float = 20.0
    owners: tuple[str, ...] = ()  # Discord user ids allowed /restart, /killswitch and approvals
    channels: tuple[str, ...] = ()  # channel ids answered without a mention (DMs always are)
    # Other bots' messages are ignored unless this is set (never Hex's own).
    answer_bots: bool = False
    # Sync slash commands to this guild at once (global commands can take an hour).
    guild_id: str = ""
    sync_commands: bool = True
    edit_interval_s: float = 1.2  # a streamed reply's message is edited at most this often
    # The typing indicator is kept up this long at most while the brain thinks.
    typing_s: float = 120.0
    attempts: int = 5  # tries per Discord request on top of discord.py's own 429/5xx handling
    backoff_s: float = 1.0  # first pause between tries, doubled each time
    redeliver_s: float = 30.0  # a reply still undelivered after its tries is tried again this often
    # Missed messages per channel answered one by one; more become one summary.
    catch_up_limit: int = 10
    catch_up_max_age_h: float = 24.0  # older missed messages are not answered
    # After a reconnect, only DM channels with a message seen in this window are walked for
    # missed messages, the most recent first, at most catch_up_channels of them (configured
    # channels always): a bot many people once wrote to does not walk every DM on each reconnect.
    # A message sent during an outage in a DM channel outside these is answered only when its
    # person writes again.
    catch_up_window_h: float = 720.0
    catch_up_channels: int = 50
    # Channel ids for memory suggestions (none: the owners' DMs).
    suggestions_to: tuple[str, ...] = ()
    voice: bool = True
    # Members' online status (online, idle, do not disturb, offline) for when Hex may write
    # first: the privileged PRESENCE intent, to be enabled in the developer portal too.
    presence: bool = False
    # Setup waits this long for the gateway before going live regardless.
    ready_timeout_s: float = 30.0


class Asked(msgspec.Struct, frozen=True, kw_only=True):
    """A person's Discord message that became a chat.message: where to answer it."""

    channel_id: int
    message_id: int


class PendingReply(msgspec.Struct, kw_only=True):
    """A final reply Discord does not have whole yet."""

    reply_to: str
    channel_id: int
    reference: int | None
    text: str
    # Parts already posted (adopted after a crash, or posted by this incarnation).
    message_ids: list[int] = []


class DiscordState(msgspec.Struct, kw_only=True):
    last_seen: dict[str, int] = {}  # watched channel id → newest Discord message id seen there
    # Channel id → where a catch-up owed since a gateway session began starts: live messages
    # move last_seen past the gap at once, so it is kept until the catch-up has walked it.
    catch_from: dict[str, int] = {}
    asked: dict[str, Asked] = {}  # chat.message event id → its Discord message
    pending: dict[str, PendingReply] = {}  # reply_to → a final reply not yet shown whole
    delivered: list[str] = []  # reply_to ids shown whole (newest last, bounded)
    voice: dict[str, int] = {}  # guild id → the voice channel Hex was asked to be in
    # Memory id → (channel id, message id) of its approval prompt.
    suggestions: dict[str, list[int]] = {}
    # Her proposal's id → the channels its prompt went to (where what came of it is told), and
    # what was told there already (``selfmod.changed`` outcomes: "applied", "error:..."), once.
    proposals: dict[str, list[int]] = {}
    verdicts: dict[str, list[str]] = {}
    # The slash commands last registered, so unchanged ones are not re-synced.
    commands_digest: str = ""


def read_token(env_name: str, folders: list[Path]) -> str | None:
    """The bot token from the environment, else from a ``.env`` in one of ``folders``."""
    value = os.environ.get(env_name, "").strip()
    if value:
        return value
    from dotenv import dotenv_values  # a dependency of the [discord] extra only

    for folder in folders:
        path = folder / ".env"
        if path.is_file():
            found = (dotenv_values(path).get(env_name) or "").strip()
            if found:
                return found
    return None
