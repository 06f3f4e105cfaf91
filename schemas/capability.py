"""What Hex can do, each with an owner's switch: the catalogue and the change event.

The supervisor keeps the switches (outside the reach of the actors they restrain, like the kill
switch), gives every actor the table when it starts, and publishes each change as a durable
``capability.changed`` carrying the whole table, so an actor that obeys a switch applies the
newest table it has seen (``version`` orders them).
"""

from __future__ import annotations

from typing import Final

import msgspec

from schemas.base import Event


class Capability(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # dotted: "speak_first.discord" is on only while "speak_first" is on too
    default: bool
    description: str  # what it lets Hex do, as the owner reads it in `hexbus capability list`


# Conservative defaults: what reaches out, looks, or changes Hex herself starts off.
CAPABILITIES: Final = (
    Capability(
        name="answer", default=True, description="answer people in the channels and DMs she is set up for"
    ),
    Capability(
        name="speak_first", default=False, description="start a conversation on her own (where that platform's switch is on too)"
    ),
    Capability(name="speak_first.discord", default=True, description="start conversations in Discord DMs and channels"),
    Capability(name="speak_first.web", default=True, description="start conversations on the local page"),
    Capability(name="speak_first.voice", default=True, description="start conversations aloud, in a call she is in"),
    Capability(name="join_voice", default=True, description="join a voice call when someone asks her to"),
    Capability(name="camera", default=False, description="look through the webcam (faces, mood, presence)"),
    Capability(name="screen", default=False, description="look at the screen and the active window's title"),
    Capability(
        name="remember", default=True, description="remember on her own what people tell her"
    ),
    Capability(
        name="paid_backend", default=True, description="use a backend that costs money (an API endpoint)"
    ),
    Capability(
        name="selfmod.propose", default=False, description="propose changes to her own persona and settings"
    ),
    Capability(
        name="selfmod.apply", default=False, description="apply changes her owner approved"
    ),
    Capability(
        name="selfmod.plugins", default=False, description="propose plugins: small modules that react to events (level 3)"
    ),
    Capability(
        name="selfmod.logic", default=False, description="propose changes to the brain's prompt templates (level 4)"
    ),
    Capability(
        name="checkin", default=False, description="ask her owner once a week whether to dial anything up or down"
    ),
)  # fmt: skip


class Switch(msgspec.Struct, frozen=True, kw_only=True):
    """One setting: a capability on or off, for everyone (``person_id`` "") or one person."""

    name: str
    enabled: bool
    person_id: str = ""
    by: str = ""  # who set it ("hexbus capability", a person id)
    owner: bool = False  # set by an owner (a person's own "off" is theirs to take back)
    at: float = 0.0  # unix s


class CapabilityChanged(Event, frozen=True, kw_only=True, tag="capability.changed"):
    """The switches after a change (the whole table), and the change: who switched what."""

    version: int
    switches: tuple[Switch, ...] = ()
    name: str = ""
    person_id: str = ""
    enabled: bool = False
    by: str = ""
    via: str = ""  # the interface ("cli", "discord", "web")
