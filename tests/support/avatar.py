"""Loopback receivers for the avatar's outputs, written for the tests from the protocols' specs:
a VMC receiver (OSC over UDP) and a VTube Studio-compatible API server (a websocket speaking
VTube Studio's public API: the plugin token popup, authentication, parameter injection,
expressions, hotkeys and its ``APIError`` replies with the real error IDs). Each records what
it received with the monotonic time it arrived (the same clock the avatar schedules on)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.brain import free_port

API = "VTubeStudioPublicAPI"
# VTube Studio's default input parameters the avatar uses, with their ranges (MouthOpen: [0, 1]
# per VTube Studio's wiki; the rest as VTube Studio's model settings show them). VTube Studio
# itself only refuses values beyond +-1000000 (as this server does); the tests check the ranges.
PARAMETERS = {
    "MouthOpen": (0.0, 1.0),
    "MouthSmile": (0.0, 1.0),
    "EyeOpenLeft": (0.0, 1.0),
    "EyeOpenRight": (0.0, 1.0),
    "FaceAngleX": (-30.0, 30.0),
    "FaceAngleY": (-30.0, 30.0),
    "FaceAngleZ": (-90.0, 90.0),
    "EyeLeftX": (-1.0, 1.0),
    "EyeLeftY": (-1.0, 1.0),
    "EyeRightX": (-1.0, 1.0),
    "EyeRightY": (-1.0, 1.0),
}


class OscReceiver:
    """A VMC receiver on a UDP port: each bundle (or message) as (arrival time, [(address,
    args), ...])."""

    def __init__(self, port: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port or 0))
        self.port: int = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.packets: list[tuple[float, list[tuple[str, list[Any]]]]] = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="osc-receiver", daemon=True)
        self.thread.start()

    def run(self) -> None:
        from pythonosc.osc_packet import OscPacket

        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.monotonic()
            messages = [
                (m.message.address, list(m.message.params)) for m in OscPacket(data).messages
            ]
            with self.lock:
                self.packets.append((at, messages))

    def frames(self, sender_clock: bool = False) -> list[tuple[float, dict[str, float]]]:
        """Each packet's blendshape values by name, with its arrival time; or, with
        ``sender_clock``, the time the sender made the frame for (its ``/VMC/Ext/T``, seconds
        since it started sending) on the same clock: T plus the least delay seen from that
        sender, so the delivery's jitter (a loaded machine waking this thread late) is not
        counted as the frame's. A T a second or more below the one before is a sender started
        again."""
        with self.lock:
            packets = list(self.packets)
        out = []
        for at, messages in packets:
            shapes = {
                str(a[0]): float(a[1]) for addr, a in messages if addr == "/VMC/Ext/Blend/Val"
            }
            out.append((at, shapes))
        if not sender_clock:
            return out
        sent: list[float] = []
        for _, messages in packets:
            stamps = [float(a[0]) for addr, a in messages if addr == "/VMC/Ext/T"]
            if not stamps:
                raise AssertionError(
                    "a VMC bundle without /VMC/Ext/T: its sender's time is unknown"
                )
            sent.append(stamps[0])
        runs: list[list[int]] = []
        for i, t in enumerate(sent):
            if not runs or t < sent[runs[-1][-1]] - 1.0:  # not a reordered datagram
                runs.append([])
            runs[-1].append(i)
        timed = []
        for run in runs:
            offset = min(out[i][0] - sent[i] for i in run)
            timed += [(sent[i] + offset, out[i][1]) for i in run]
        return timed

    def close(self) -> None:
        self.stopping = True
        self.sock.close()
        self.thread.join(2)


@dataclass
class VtsModel:
    name: str = "Hiyori"
    model_id: str = "hiyori-0001"
    expressions: tuple[str, ...] = ("Smile.exp3.json", "Angry.exp3.json", "Sad.exp3.json")
    hotkeys: dict[str, str] = field(default_factory=lambda: {"hk-wave": "Wave"})  # id -> name


class VtsServer:
    """A VTube Studio-compatible API server on 127.0.0.1, in a thread with its own loop.

    Tokens it issued stay valid across :meth:`restart` (as VTube Studio keeps its plugin list)
    until :meth:`revoke`. ``deny`` makes the token popup answer "Deny"."""

    def __init__(self, port: int | None = None, model: VtsModel | None = None) -> None:
        self.port = port or free_port()
        self.model = model or VtsModel()
        self.deny = False
        self.stuck = False  # stops reading, as a VTube Studio that hangs does
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.authentications: list[tuple[str, bool]] = []  # (token, accepted)
        self.injections: list[tuple[float, dict[str, float]]] = []
        self.expressions: list[tuple[float, str, bool]] = []  # (at, file, active)
        self.hotkeys: list[tuple[float, str]] = []
        self.errors: list[tuple[int, str]] = []  # (errorID, the request's messageType)
        self.connections = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: Any = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> VtsServer:
        ready = threading.Event()

        def run() -> None:
            from websockets.asyncio.server import serve

            async def main() -> None:
                self.loop = asyncio.get_running_loop()
                # A small receive buffer (its connections inherit it): a stuck server's backlog
                # fills in a few hundred frames, before any keepalive gives up on it, however
                # slowly a loaded machine sends them.
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                sock.bind(("127.0.0.1", self.port))
                async with serve(self.session, sock=sock) as server:
                    self.server = server
                    ready.set()
                    await server.wait_closed()

            asyncio.run(main())

        self.thread = threading.Thread(target=run, name="vts-server", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the loopback VTube Studio server did not start")
        return self

    def stop(self) -> None:
        if self.loop is not None and self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
        if self.thread is not None:
            self.thread.join(10)
        self.server = self.loop = self.thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def revoke(self) -> None:
        """The person removed the plugin in VTube Studio: its token no longer authenticates."""
        self.tokens.clear()

    # -- the API ----------------------------------------------------------------------------

    async def session(self, ws: Any) -> None:
        self.connections += 1
        authenticated = False
        async for text in ws:
            while self.stuck:
                await asyncio.sleep(0.05)
            try:
                message = json.loads(text)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError:
                await ws.send(self.error("", "", 2, "JSON invalid"))
                continue
            kind = str(message.get("messageType") or "")
            request_id = str(message.get("requestID") or "")
            data = message.get("data") or {}
            if message.get("apiName") != API:
                await ws.send(self.error(request_id, kind, 3, "API name invalid"))
                continue
            if not kind:
                await ws.send(self.error(request_id, kind, 6, "Request type missing"))
                continue
            if (
                kind
                not in ("AuthenticationTokenRequest", "AuthenticationRequest", "APIStateRequest")
                and not authenticated
            ):
                await ws.send(self.error(request_id, kind, 8, "Request requires authentication"))
                continue
            handler = getattr(self, kind, None)
            if handler is None:
                await ws.send(self.error(request_id, kind, 7, f"Request type unknown: {kind}"))
                continue
            outcome = handler(data)
            if isinstance(outcome, tuple):  # an error
                await ws.send(self.error(request_id, kind, *outcome))
                continue
            if kind == "AuthenticationRequest" and outcome.get("authenticated"):
                authenticated = True
            await ws.send(self.reply(request_id, kind.replace("Request", "Response"), outcome))

    def reply(self, request_id: str, kind: str, data: dict[str, Any]) -> str:
        return json.dumps(
            {
                "apiName": API,
                "apiVersion": "1.0",
                "timestamp": int(time.time() * 1000),
                "requestID": request_id,
                "messageType": kind,
                "data": data,
            }
        )

    def error(self, request_id: str, kind: str, error_id: int, text: str) -> str:
        self.errors.append((error_id, kind))
        return self.reply(request_id, "APIError", {"errorID": error_id, "message": text})

    def AuthenticationTokenRequest(self, data: dict[str, Any]) -> dict[str, Any] | tuple[int, str]:
        self.token_requests += 1
        if not 3 <= len(str(data.get("pluginName", ""))) <= 32:
            return 52, "pluginName must be 3 to 32 characters"
        if not 3 <= len(str(data.get("pluginDeveloper", ""))) <= 32:
            return 53, "pluginDeveloper must be 3 to 32 characters"
        if self.deny:
            return 50, "User has denied API access for your plugin."
        token = f"token-{self.token_requests}-{time.monotonic_ns()}"
        self.tokens.add(token)
        return {"authenticationToken": token}

    def AuthenticationRequest(self, data: dict[str, Any]) -> dict[str, Any] | tuple[int, str]:
        token = str(data.get("authenticationToken") or "")
        if not token:
            return 100, "Authentication token missing"
        if not data.get("pluginName"):
            return 101, "Plugin name missing"
        if not data.get("pluginDeveloper"):
            return 102, "Plugin developer missing"
        ok = token in self.tokens
        self.authentications.append((token, ok))
        reason = "Token valid." if ok else "Token invalid. Please request a new one."
        return {"authenticated": ok, "reason": reason}

    def CurrentModelRequest(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"modelLoaded": True, "modelName": self.model.name, "modelID": self.model.model_id}

    def InjectParameterDataRequest(self, data: dict[str, Any]) -> dict[str, Any] | tuple[int, str]:
        values = data.get("parameterValues")
        if not values:
            return 450, "No data provided"
        if data.get("mode", "set") not in ("set", "add"):
            return 455, f"Mode unknown: {data.get('mode')}"
        got: dict[str, float] = {}
        for item in values:
            name, value = item.get("id"), item.get("value")
            if name not in PARAMETERS:
                return 453, f"Parameter {name} not found"
            if not isinstance(value, int | float) or not -1e6 <= value <= 1e6:
                return 451, f"Value of {name} invalid: {value!r}"
            if not 0 <= item.get("weight", 1) <= 1:
                return 452, f"Weight of {name} invalid"
            got[str(name)] = float(value)
        self.injections.append((time.monotonic(), got))
        return {}

    def ExpressionActivationRequest(self, data: dict[str, Any]) -> dict[str, Any] | tuple[int, str]:
        name = str(data.get("expressionFile") or "")
        if not name.endswith(".exp3.json"):
            return 650, f"Expression file name invalid: {name!r}"
        if name not in self.model.expressions:
            return 651, f"Expression file {name} not found in the model"
        self.expressions.append((time.monotonic(), name, bool(data.get("active"))))
        return {}

    def HotkeyTriggerRequest(self, data: dict[str, Any]) -> dict[str, Any] | tuple[int, str]:
        wanted = str(data.get("hotkeyID") or "")
        for hotkey_id, name in self.model.hotkeys.items():
            if wanted == hotkey_id or wanted.lower() == name.lower():
                self.hotkeys.append((time.monotonic(), hotkey_id))
                return {"hotkeyID": hotkey_id}
        return 202, f"Hotkey {wanted} not found in the model"
