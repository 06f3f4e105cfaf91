"""VTube Studio's public API out: Hex as a VTube Studio plugin over its websocket.

:meth:`VtsOutput.run` owns the connection: it connects, authenticates (the plugin token is asked
for once, which shows a popup in VTube Studio, then kept in the actor's snapshot and reused on
every reconnect; a token VTube Studio no longer accepts is dropped and asked for again), learns
the loaded model, and then reads every reply, logging each ``APIError`` with its ``errorID``.
When the connection drops it tries again after a doubling backoff, forever.

:meth:`VtsOutput.offer` takes every frame and returns at once; :meth:`VtsOutput.write` sends the
newest one: the mouth, eyes, head angles and gaze as one ``InjectParameterDataRequest`` (VTube
Studio hands a parameter back to face tracking if it is not set again within a second; frames
come many times a second). A send that VTube Studio does not take within ``SEND_S`` drops the
connection (it is reconnected), so a stuck VTube Studio never holds up the face's other outputs.
When the frame's expression changes, the model's mapping (config ``models``, by model name or
ID, ``"*"`` for any other) says what shows it: an expression file (activated, and the previous
one deactivated) or a hotkey (triggered once: for one-shot animations; a toggle hotkey stays
on). A person who presses "Deny" is asked again only after ``retry_denied_s``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import structlog

from actors.avatar.arbiter import NEUTRAL, Frame
from actors.avatar.config import VtsConfig
from actors.avatar.retry import Backoff

log = structlog.get_logger("actors.avatar.vts")

API = "VTubeStudioPublicAPI"
TOKEN_DENIED = 50  # the person pressed "Deny" in VTube Studio's popup
ANSWER_S = 10.0  # a reply to authentication or a model request comes within this
TOKEN_ANSWER_S = 120.0  # the token popup waits for a person's click
MODEL_EVERY_S = 10.0  # the loaded model is asked for again this often (the person may switch)
SEND_S = 1.0  # a frame VTube Studio does not take in this long: the connection is dropped
ERROR_SHOWN_S = 30.0  # the last APIError stays in the status line this long


class VtsError(Exception):
    def __init__(self, error_id: int, message: str) -> None:
        super().__init__(f"VTube Studio error {error_id}: {message}")
        self.error_id = error_id


def parameters(frame: Frame) -> list[dict[str, Any]]:
    """The frame as VTube Studio's default input parameters."""
    values = {
        "MouthOpen": frame.mouth,
        "EyeOpenLeft": frame.eyes_open,
        "EyeOpenRight": frame.eyes_open,
        "FaceAngleX": frame.yaw,
        "FaceAngleY": frame.pitch,
        "FaceAngleZ": frame.roll,
        "EyeLeftX": frame.gaze_x,
        "EyeRightX": frame.gaze_x,
        "EyeLeftY": frame.gaze_y,
        "EyeRightY": frame.gaze_y,
    }
    return [{"id": k, "value": round(float(v), 4)} for k, v in values.items()]


class VtsOutput:
    """One VTube Studio instance; ``state`` and ``detail`` say how it goes."""

    name = "vts"

    def __init__(
        self,
        config: VtsConfig,
        *,
        token: str = "",
        save_token: Callable[[str], None] = lambda _: None,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
        retry_denied_s: float = 600.0,
    ) -> None:
        self.config = config
        self.retry_denied_s = retry_denied_s
        self.token = token
        self.save_token = save_token
        self.backoff = Backoff(retry_initial_s, retry_max_s)
        self.ws: Any = None
        self.ready = False
        self.ids = itertools.count(1)
        self.model = ""  # the loaded model's name (and ID), "" when none
        self.mapping: dict[str, str] = {}
        self.shown = NEUTRAL  # the expression the model shows now
        self.active_file = ""  # the expression file Hex activated
        self.activation = ""  # the request that activated it
        self.model_asked = 0.0
        self.state = "starting"
        self.detail = ""
        self.error = ""  # the last APIError, in words
        self.error_at = 0.0
        self.errors: dict[int, int] = {}  # errorID -> how many
        self.latest: Frame | None = None
        self.fresh = asyncio.Event()
        self.sent = 0
        self.stalls = 0  # sends VTube Studio did not take in time (each dropped the connection)
        self.connects = 0
        self.authentications = 0
        self.token_requests = 0

    # -- the connection ----------------------------------------------------------------------

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        while True:
            try:
                async with connect(
                    self.config.url,
                    open_timeout=5,
                    close_timeout=1,
                    max_size=2**20,
                    ping_interval=20,
                ) as ws:
                    self.ws = ws
                    self.connects += 1
                    await self.session(ws)
            except asyncio.CancelledError:
                raise
            except VtsError as exc:
                self.trouble("denied" if exc.error_id == TOKEN_DENIED else "retrying", str(exc))
            except Exception as exc:  # refused, dropped, a timeout: try again later
                self.trouble("retrying", str(exc) or type(exc).__name__)
            finally:
                self.ws, self.ready = None, False
            denied = self.state == "denied"
            await asyncio.sleep(self.retry_denied_s if denied else self.backoff.next())

    def trouble(self, state: str, why: str) -> None:
        if (state, why) != (self.state, self.detail):
            log.warning("avatar.vts_failed", url=self.config.url, state=state, error=why)
        self.state, self.detail = state, why

    async def session(self, ws: Any) -> None:
        reading = Reader(self, ws)
        await self.authenticate(ws, reading)
        self.ready = True
        self.backoff.reset()
        self.state, self.detail = "connected", ""
        log.info("avatar.vts_connected", url=self.config.url, model=self.model)
        await reading.drain()

    async def authenticate(self, ws: Any, reading: Reader) -> None:
        c = self.config
        who = {"pluginName": c.plugin_name, "pluginDeveloper": c.plugin_developer}
        for _ in range(2):
            if not self.token:
                self.state, self.detail = "authorising", "waiting for Allow in VTube Studio"
                self.token_requests += 1
                answer = await reading.ask("AuthenticationTokenRequest", who, TOKEN_ANSWER_S)
                self.token = str(answer.get("authenticationToken", ""))
                self.save_token(self.token)
            answer = await reading.ask(
                "AuthenticationRequest", {**who, "authenticationToken": self.token}, ANSWER_S
            )
            if answer.get("authenticated"):
                self.authentications += 1
                break
            log.info("avatar.vts_token_refused", reason=answer.get("reason", ""))
            self.token = ""
            self.save_token("")
        else:
            raise VtsError(-1, "VTube Studio refused a fresh plugin token")
        self.learn_model(await reading.ask("CurrentModelRequest", {}, ANSWER_S))
        self.model_asked = time.monotonic()
        # What the model showed before this connection is unknown: start from neutral.
        self.shown, self.active_file = NEUTRAL, ""

    def learn_model(self, data: dict[str, Any]) -> None:
        name, model_id = str(data.get("modelName", "")), str(data.get("modelID", ""))
        models = self.config.models
        mapping = models.get(model_id) or models.get(name) or models.get("*", {})
        if (name, mapping) != (self.model, self.mapping):
            log.info("avatar.vts_model", model=name, model_id=model_id, mapped=sorted(mapping))
            # Another model shows none of what Hex activated on the last: show it afresh.
            self.shown, self.active_file = NEUTRAL, ""
        self.model, self.mapping = name, mapping

    def request(self, kind: str, data: dict[str, Any], request_id: str = "") -> str:
        request_id = request_id or f"hex-{next(self.ids)}"
        message = {
            "apiName": API,
            "apiVersion": "1.0",
            "requestID": request_id,
            "messageType": kind,
            "data": data,
        }
        return json.dumps(message, separators=(",", ":"))

    def answered(self, message: dict[str, Any]) -> None:
        """A reply nobody waits for: an error is counted and logged, a model noted."""
        kind = message.get("messageType")
        data = message.get("data") or {}
        if kind == "APIError":
            error_id = int(data.get("errorID", -1))
            self.errors[error_id] = self.errors.get(error_id, 0) + 1
            if self.errors[error_id] == 1 or self.errors[error_id] % 100 == 0:
                log.warning(
                    "avatar.vts_error",
                    error_id=error_id,
                    message=data.get("message", ""),
                    request=message.get("requestID", ""),
                    times=self.errors[error_id],
                )
            self.error = f"error {error_id}: {data.get('message', '')}"
            self.error_at = time.monotonic()
            if message.get("requestID") == self.activation:
                self.active_file = ""
        elif kind == "CurrentModelResponse":
            self.learn_model(data)

    # -- frames out --------------------------------------------------------------------------

    def offer(self, frame: Frame) -> None:
        """The newest frame, to be sent as soon as the connection can take it (never waits)."""
        self.latest = frame
        self.fresh.set()

    async def write(self) -> None:
        """Send the newest frame whenever there is one and the plugin is authenticated."""
        while True:
            await self.fresh.wait()
            self.fresh.clear()
            ws, frame = self.ws, self.latest
            if ws is None or not self.ready or frame is None:
                continue
            try:
                async with asyncio.timeout(SEND_S):
                    for text in self.requests(frame):
                        await ws.send(text)
                self.sent += 1
            except TimeoutError:
                self.stalls += 1
                log.warning("avatar.vts_stuck", url=self.config.url, waited_s=SEND_S)
                transport = getattr(ws, "transport", None)
                if transport is not None:
                    transport.abort()  # run() sees the connection end and reconnects
            except Exception as exc:  # the connection went: run() notices and reconnects
                log.debug("avatar.vts_send_failed", error=f"{type(exc).__name__}: {exc}")

    def requests(self, frame: Frame) -> list[str]:
        out = [
            self.request(
                "InjectParameterDataRequest",
                {
                    "faceFound": self.config.face_found,
                    "mode": "set",
                    "parameterValues": parameters(frame),
                },
            )
        ]
        out += self.expression(frame.expression if frame.weight > 0 else NEUTRAL)
        now = time.monotonic()
        if now - self.model_asked >= MODEL_EVERY_S:
            self.model_asked = now
            out.append(self.request("CurrentModelRequest", {}))
        return out

    def status(self) -> str:
        """How it goes, in a few words (the last APIError while it is recent)."""
        line = self.state + (f" ({self.model})" if self.model and self.ready else "")
        if self.detail:
            line += f": {self.detail}"
        elif self.error and time.monotonic() - self.error_at < ERROR_SHOWN_S:
            line += f"; {self.error}"
        return line

    def expression(self, wanted: str) -> list[str]:
        """The requests that make the model show ``wanted`` (none when it already does)."""
        if wanted == self.shown:
            return []
        out: list[str] = []
        shows = self.mapping.get(wanted, "")
        if self.active_file and (shows != self.active_file):
            out.append(
                self.request(
                    "ExpressionActivationRequest",
                    {"expressionFile": self.active_file, "active": False},
                )
            )
            self.active_file = ""
        if shows.startswith("hotkey:"):
            out.append(self.request("HotkeyTriggerRequest", {"hotkeyID": shows[len("hotkey:") :]}))
        elif shows:
            self.activation = f"hex-{next(self.ids)}"  # refused (no such file): nothing to undo
            out.append(
                self.request(
                    "ExpressionActivationRequest",
                    {
                        "expressionFile": shows,
                        "active": True,
                        "fadeTime": self.config.expression_fade_s,
                    },
                    self.activation,
                )
            )
            self.active_file = shows
        if shows or wanted == NEUTRAL:
            log.info("avatar.vts_expression", emotion=wanted, shows=shows or "neutral")
        self.shown = wanted
        return out


class Reader:
    """Reads one connection's replies: answers for whoever waits on a request, the rest to
    :meth:`VtsOutput.answered`. Everything runs on the one coroutine that awaits :meth:`ask` or
    :meth:`drain`; nothing else reads the socket."""

    def __init__(self, output: VtsOutput, ws: Any) -> None:
        self.output = output
        self.ws = ws

    async def ask(self, kind: str, data: dict[str, Any], timeout: float) -> dict[str, Any]:
        request_id = f"hex-{next(self.output.ids)}"
        await self.ws.send(self.output.request(kind, data, request_id))
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next()
                if message.get("requestID") != request_id:
                    self.output.answered(message)
                    continue
                data = message.get("data") or {}
                if message.get("messageType") == "APIError":
                    raise VtsError(int(data.get("errorID", -1)), str(data.get("message", "")))
                return dict(data)

    async def drain(self) -> None:
        while True:
            self.output.answered(await self.next())

    async def next(self) -> dict[str, Any]:
        text = await self.ws.recv()
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("avatar.vts_unreadable", text=str(text)[:200])
            return {}
        return message if isinstance(message, dict) else {}
