"""The avatar actor's settings and what it keeps across restarts."""

from __future__ import annotations

import msgspec

# Hex's emotions (actors/brain/metadata.py) as VRM 0.x preset blendshapes.
VRM0_EXPRESSIONS = {
    "happy": "Joy",
    "amused": "Fun",
    "excited": "Joy",
    "smug": "Fun",
    "flustered": "Joy",
    "annoyed": "Angry",
    "sad": "Sorrow",
    "worried": "Sorrow",
}

# What Hex shows when the person looks a certain way (perception's emotions, held).
MIRROR = {"happy": "happy", "sad": "worried", "surprise": "excited", "angry": "worried"}


class VmcConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The VMC protocol (OSC over UDP) to VSeeFace, VNyan, VMagicMirror and the like."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 39539  # the VMC protocol's usual receiver port; check your receiver's setting
    mouth: str = "A"  # the blendshape lip-sync drives ("aa" on VRM 1.0 models)
    blink: str = "Blink"  # ("blink" on VRM 1.0)
    # Where she looks, as the look blendshapes: her left, right, up, down ("" to send none;
    # "lookLeft", ... on VRM 1.0).
    look: tuple[str, str, str, str] = ("LookLeft", "LookRight", "LookUp", "LookDown")
    expressions: dict[str, str] = msgspec.field(default_factory=lambda: dict(VRM0_EXPRESSIONS))
    # The model's Head bone at rest (its local position, metres, as the receiver's model has it):
    # set it to send head motion as /VMC/Ext/Bone/Pos. Empty: no bones (a receiver that applies
    # bone positions would otherwise pull the head onto the neck).
    head_rest: tuple[float, ...] = ()


class VtsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """VTube Studio's public API (a websocket; turn the API on in VTube Studio's settings)."""

    enabled: bool = False
    url: str = "ws://127.0.0.1:8001"
    plugin_name: str = "Hex"
    plugin_developer: str = "Hex companion"
    # Per model (its name or ID as VTube Studio reports it; "*" for any other model), Hex's emotion
    # to what shows it: an expression file ("Smile.exp3.json") or a hotkey ("hotkey:Wave", by
    # name or ID). Unmapped emotions show nothing.
    models: dict[str, dict[str, str]] = {}
    expression_fade_s: float = 0.4  # VTube Studio takes 0 to 2
    face_found: bool = False  # sent with the parameters: tell VTube Studio a face is tracked
    retry_denied_s: float = 600.0  # after "Deny" in VTube Studio's popup, ask again this late


class AvatarConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    fps: float = 50.0  # expression frames a second (a 20 ms audio chunk each at 50)
    platforms: tuple[str, ...] = ("voice", "web")  # whose speech moves the mouth
    latency_ms: float = 0.0  # the audio output's own delay, added to each chunk's playback time
    silent_db: float = -50.0  # speech RMS (dBFS) at which the mouth is closed
    open_db: float = -14.0  # and wide open
    emotion_hold_s: float = 8.0  # a reply's emotion shows this long (its last second fading)
    mirror: dict[str, str] = msgspec.field(default_factory=lambda: dict(MIRROR))
    mirror_hold_s: float = 4.0
    look_fresh_s: float = 3.0  # where the person was seen is looked at this long
    camera_mirrored: bool = False  # the camera's picture is mirrored (left is the person's left)
    retry_initial_s: float = 1.0  # an output that fails is tried again after this, doubling
    retry_max_s: float = 30.0
    vmc: VmcConfig = VmcConfig()
    vts: VtsConfig = VtsConfig()


class AvatarMemory(msgspec.Struct, kw_only=True):
    """Kept in the snapshot: VTube Studio's plugin token (asking again would need a click in VTube
    Studio), by the API's address."""

    vts_tokens: dict[str, str] = {}
