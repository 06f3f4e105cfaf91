"""The avatar actor: Hex's face, moving with her words and feelings, on VTube Studio or any VMC
receiver (VSeeFace, VNyan, VMagicMirror).

In come the brain's emotion for each reply (``chat.meta``), Hex's speech (``audio.out``, put on
the playback clock by :class:`~actors.avatar.lipsync.Lipsync`), ``tts.speaking`` and
``chat.bargein`` (a barge-in shuts the mouth on the very next frame, sent at once), and what
perception sees (she looks at the person while they are there, mirrors a mood that holds, and
brightens when someone arrives). :class:`~actors.avatar.arbiter.Arbiter` makes one frame of all
that, ``fps`` times a second, and each output sends it: VMC over OSC/UDP and VTube Studio's
websocket API, each reconnecting by itself. The actor keeps VTube Studio's plugin token in its
snapshot; its status line says how each output is doing.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import structlog

from actors.avatar.arbiter import Arbiter, Frame
from actors.avatar.config import AvatarConfig, AvatarMemory
from actors.avatar.lipsync import Lipsync
from actors.avatar.vmc import VmcOutput
from actors.avatar.vts import VtsOutput
from hexbus import Actor, ActorUnusable, on
from schemas import AudioOut, BargeIn, Observation, ReplyMeta, Speaking, VisionMoment

log = structlog.get_logger("actors.avatar")

REPLY, MIRROR, ARRIVAL = "reply", "mirror", "arrival"
PRIORITY = {REPLY: 2, ARRIVAL: 1, MIRROR: 1}  # a reply's own emotion outranks what she sees
DESCRIBE_EVERY_S = 1.0


class AvatarActor(Actor[AvatarConfig, AvatarMemory]):
    subscribes: ClassVar[tuple[str, ...]] = (
        "chat.meta",
        "chat.bargein",
        "audio.out",
        "tts.speaking",
        "vision.observation",
        "vision.moment",
    )
    config_type = AvatarConfig
    state_type = AvatarMemory

    async def setup(self) -> None:
        c = self.config
        if not (c.vmc.enabled or c.vts.enabled):
            raise ActorUnusable(
                "no avatar output is enabled: set vmc.enabled or vts.enabled in the avatar's config"
            )
        if c.fps <= 0 or c.fps > 200:
            raise ActorUnusable(f"avatar fps must be between 0 and 200, not {c.fps}")
        for field, value in (
            ("plugin_name", c.vts.plugin_name),
            ("plugin_developer", c.vts.plugin_developer),
        ):
            if c.vts.enabled and not 3 <= len(value) <= 32:
                raise ActorUnusable(
                    f"avatar vts.{field} must be 3 to 32 characters (VTube Studio's rule): {value!r}"
                )
        try:
            if c.vmc.enabled:
                import pythonosc  # noqa: F401
            if c.vts.enabled:
                import websockets  # noqa: F401
        except ImportError as exc:
            raise ActorUnusable(
                f"{exc.name} is not installed: pip install -e '.[avatar]'"
            ) from None
        try:
            self.lipsync = Lipsync(
                latency_s=c.latency_ms / 1000, silent_db=c.silent_db, open_db=c.open_db
            )
        except ValueError as exc:
            raise ActorUnusable(f"avatar config: {exc}") from None
        self.arbiter = Arbiter(look_fresh_s=c.look_fresh_s)
        self.vmc = (
            VmcOutput(c.vmc, retry_initial_s=c.retry_initial_s, retry_max_s=c.retry_max_s)
            if c.vmc.enabled
            else None
        )
        self.vts = (
            VtsOutput(
                c.vts,
                token=self.state.vts_tokens.get(c.vts.url, ""),
                save_token=self.keep_token,
                retry_initial_s=c.retry_initial_s,
                retry_max_s=c.retry_max_s,
            )
            if c.vts.enabled
            else None
        )
        self.frames = 0
        self.described = 0.0
        self.describe()

    async def on_live(self) -> None:
        if self.vts is not None:
            self.spawn(self.vts.run(), name="vts")
        self.spawn(self.animate(), name="frames")

    async def teardown(self) -> None:
        if self.vmc is not None:
            self.vmc.close()

    def keep_token(self, token: str) -> None:
        url = self.config.vts.url
        if token:
            self.state.vts_tokens[url] = token
        else:
            self.state.vts_tokens.pop(url, None)
        self.state_changed(now=True)  # asking again needs a person's click in VTube Studio

    # -- handlers ---------------------------------------------------------------------------

    @on(AudioOut)
    async def on_audio(self, event: AudioOut) -> None:
        if event.platform and event.platform not in self.config.platforms:
            return
        self.lipsync.heard(
            event.channel, event.reply_to, bytes(self.blob or b""), event.rate, time.monotonic()
        )

    @on(Speaking)
    async def on_speaking(self, event: Speaking) -> None:
        if event.state == "stop" and event.interrupted:
            await self.shut(event.channel, event.reply_to)

    @on(BargeIn)
    async def on_barge_in(self, event: BargeIn) -> None:
        await self.shut(event.channel, event.reply_to)

    @on(ReplyMeta)
    async def on_meta(self, event: ReplyMeta) -> None:
        self.arbiter.claim(
            REPLY,
            event.emotion,
            priority=PRIORITY[REPLY],
            hold_s=self.config.emotion_hold_s,
            now=time.monotonic(),
        )

    @on(Observation)
    async def on_observation(self, event: Observation) -> None:
        if event.kind == "screen":
            return
        now = time.monotonic()
        if event.present and event.faces:
            face = max(event.faces, key=lambda f: f.w * f.h)
            # The camera faces the person as she does: the picture's left is her left (unless the
            # camera mirrors its picture).
            x = (0.5 - (face.x + face.w / 2)) * 2
            y = (0.5 - (face.y + face.h / 2)) * 2
            self.arbiter.look_at(-x if self.config.camera_mirrored else x, y, now)
        mirrored = self.config.mirror.get(event.emotion, "") if event.present else ""
        if mirrored:
            self.arbiter.claim(
                MIRROR,
                mirrored,
                priority=PRIORITY[MIRROR],
                hold_s=self.config.mirror_hold_s,
                now=now,
            )

    @on(VisionMoment)
    async def on_moment(self, event: VisionMoment) -> None:
        if event.change == "arrived":
            self.arbiter.claim(
                ARRIVAL, "happy", priority=PRIORITY[ARRIVAL], hold_s=3.0, now=time.monotonic()
            )

    # -- frames ------------------------------------------------------------------------------

    async def shut(self, channel: str, reply_to: str) -> None:
        """A barge-in: what was still to play is dropped and the closed mouth goes out now."""
        now = time.monotonic()
        dropped = self.lipsync.stop(channel, reply_to, now)
        if dropped:
            log.info("avatar.mouth_shut", channel=channel, dropped=dropped)
        await self.emit(now)

    async def emit(self, now: float) -> Frame:
        frame = self.arbiter.frame(now, self.lipsync.mouth(now), self.lipsync.speaking(now))
        if self.vmc is not None:
            self.vmc.send(frame)
        if self.vts is not None:
            await self.vts.send(frame)
        self.frames += 1
        return frame

    async def animate(self) -> None:
        """A frame every 1/fps seconds on the monotonic clock; a late loop skips, never bunches."""
        period = 1.0 / self.config.fps
        due = time.monotonic()
        while True:
            now = time.monotonic()
            if now < due:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            await self.emit(now)
            due += period
            if due < now:  # fell behind (a busy loop): the next frame is the next slot from now
                due = now + period - (now - due) % period
            if now - self.described >= DESCRIBE_EVERY_S:
                self.described = now
                self.describe()

    def describe(self) -> None:
        parts = []
        if self.vmc is not None:
            parts.append(
                f"vmc {self.vmc.state} {self.vmc.where}"
                + (f": {self.vmc.detail}" if self.vmc.detail else "")
            )
        if self.vts is not None:
            v = self.vts
            line = f"vts {v.state}"
            if v.model:
                line += f" ({v.model})"
            if v.detail:
                line += f": {v.detail}"
            parts.append(line)
        self.detail = "; ".join(parts)
