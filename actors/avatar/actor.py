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

from actors.avatar.arbiter import Arbiter, Frame, gaze_at
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
FAILURE_LOG_EVERY_S = 60.0  # a frame that keeps failing is logged this often


def problems(c: AvatarConfig) -> list[str]:
    """What is wrong with the avatar's config, each with its fix (empty when nothing is)."""
    out = []
    if not (c.vmc.enabled or c.vts.enabled):
        out.append("no avatar output is enabled: set vmc.enabled or vts.enabled")
    if not 0 < c.fps <= 200:
        out.append(f"fps must be between 0 and 200, not {c.fps}")
    if not c.silent_db < c.open_db:
        out.append(f"silent_db ({c.silent_db}) must be below open_db ({c.open_db})")
    if not 0 < c.retry_initial_s <= c.retry_max_s:
        out.append("retry_initial_s must be above 0 and at most retry_max_s")
    if c.vmc.enabled:
        v = c.vmc
        if not 0 < v.port < 65536:
            out.append(f"vmc.port must be 1 to 65535, not {v.port}")
        names = [v.mouth, v.blink, *(n for n in v.look if n), *set(v.expressions.values())]
        if len(names) != len(set(names)) or not all(names):
            out.append("vmc.mouth, vmc.blink, vmc.look and vmc.expressions need distinct names")
        if v.head_rest and len(v.head_rest) != 3:
            out.append("vmc.head_rest is the Head bone's x, y, z (three numbers) or empty")
    if c.vts.enabled:
        t = c.vts
        if not t.url.startswith(("ws://", "wss://")):
            out.append(f"vts.url must start with ws:// or wss://, not {t.url!r}")
        for field, value in (
            ("plugin_name", t.plugin_name),
            ("plugin_developer", t.plugin_developer),
        ):
            if not 3 <= len(value) <= 32:
                out.append(
                    f"vts.{field} must be 3 to 32 characters (VTube Studio's rule): {value!r}"
                )
        if not 0 <= t.expression_fade_s <= 2:
            out.append("vts.expression_fade_s must be 0 to 2 seconds (VTube Studio's range)")
        for model, mapping in t.models.items():
            for emotion, shows in mapping.items():
                if not (
                    (shows.startswith("hotkey:") and len(shows) > 7) or shows.endswith(".exp3.json")
                ):
                    out.append(
                        f"vts.models.{model}.{emotion}: {shows!r} is neither an expression file "
                        "(NAME.exp3.json) nor hotkey:NAME"
                    )
    return out


class AvatarActor(Actor[AvatarConfig, AvatarMemory]):
    """Dispatches the bus to the arbiter and lip-sync, and their frames to the outputs."""

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
        if wrong := problems(c):
            raise ActorUnusable(f"avatar config: {'; '.join(wrong)}")
        try:
            if c.vmc.enabled:
                import pythonosc  # noqa: F401
            if c.vts.enabled:
                import websockets  # noqa: F401
        except ImportError as exc:
            raise ActorUnusable(
                f"{exc.name} is not installed: pip install -e '.[avatar]'"
            ) from None
        self.lipsync = Lipsync(
            latency_s=c.latency_ms / 1000, silent_db=c.silent_db, open_db=c.open_db
        )
        self.arbiter = Arbiter(look_fresh_s=c.look_fresh_s)
        retry = {"retry_initial_s": c.retry_initial_s, "retry_max_s": c.retry_max_s}
        self.vmc = VmcOutput(c.vmc, **retry) if c.vmc.enabled else None
        self.vts = (
            VtsOutput(
                c.vts,
                token=self.state.vts_tokens.get(c.vts.url, ""),
                save_token=self.keep_token,
                retry_denied_s=c.vts.retry_denied_s,
                **retry,
            )
            if c.vts.enabled
            else None
        )
        self.frames = 0
        self.described = 0.0
        self.failed_at = -FAILURE_LOG_EVERY_S
        self.describe()

    async def on_live(self) -> None:
        if self.vmc is not None:
            self.spawn(self.vmc.keep(), name="vmc")
        if self.vts is not None:
            self.spawn(self.vts.run(), name="vts")
            self.spawn(self.vts.write(), name="vts-frames")
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

    # -- handlers (durable ones act only live: a replayed emotion or barge-in is history) ----

    @on(AudioOut)
    async def on_audio(self, event: AudioOut) -> None:
        if event.platform and event.platform not in self.config.platforms:
            return
        try:
            self.lipsync.heard(
                event.channel, event.reply_to, bytes(self.blob or b""), event.rate, time.monotonic()
            )
        except ValueError as exc:
            log.warning("avatar.audio_refused", channel=event.channel, error=str(exc))

    @on(Speaking)
    async def on_speaking(self, event: Speaking) -> None:
        if event.state == "stop" and event.interrupted:
            await self.shut(event.channel, event.reply_to)

    @on(BargeIn)
    async def on_barge_in(self, event: BargeIn) -> None:
        if self.live:
            await self.shut(event.channel, event.reply_to)

    @on(ReplyMeta)
    async def on_meta(self, event: ReplyMeta) -> None:
        if self.live:
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
            f = max(event.faces, key=lambda f: f.w * f.h)
            x, y = gaze_at(f.x, f.y, f.w, f.h, mirrored=self.config.camera_mirrored)
            self.arbiter.look_at(x, y, now)
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
        if self.live and event.change == "arrived":
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
        self.emit(now)

    def emit(self, now: float) -> Frame:
        """Make the frame for ``now`` and hand it to every output (none of them waits)."""
        frame = self.arbiter.frame(now, self.lipsync.mouth(now), self.lipsync.speaking(now))
        if self.vmc is not None:
            self.vmc.send(frame)
        if self.vts is not None:
            self.vts.offer(frame)
        self.frames += 1
        return frame

    async def animate(self) -> None:
        """A frame every 1/fps seconds on the monotonic clock; a late loop skips, never bunches.
        A frame that fails is logged (once a minute) and the next one is made all the same."""
        period = 1.0 / self.config.fps
        due = time.monotonic()
        while True:
            now = time.monotonic()
            if now < due:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            try:
                self.emit(now)
            except Exception:
                if now - self.failed_at >= FAILURE_LOG_EVERY_S:
                    self.failed_at = now
                    log.exception("avatar.frame_failed")
            due += period
            if due < now:  # fell behind (a busy loop): the next frame is the next slot from now
                due = now + period - (now - due) % period
            if now - self.described >= DESCRIBE_EVERY_S:
                self.described = now
                self.describe()

    def describe(self) -> None:
        parts = []
        if self.vmc is not None:
            v = self.vmc
            parts.append(f"vmc {v.state} {v.where}" + (f": {v.detail}" if v.detail else ""))
        if self.vts is not None:
            parts.append(f"vts {self.vts.status()}")
        self.detail = "; ".join(parts)
