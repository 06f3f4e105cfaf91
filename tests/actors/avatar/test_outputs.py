"""The avatar's outputs against loopback receivers written from the protocols' specs
(tests/support/avatar.py): VTube Studio's websocket API (the token popup, authentication,
injection, expressions, hotkeys, its errors, a restart, a revoked or denied token) and VMC over
OSC/UDP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from actors.avatar.arbiter import Frame
from actors.avatar.config import VmcConfig, VtsConfig
from actors.avatar.vmc import VmcOutput, quaternion
from actors.avatar.vts import VtsOutput
from tests.support.avatar import PARAMETERS, OscReceiver, VtsServer
from tests.support.harness import poll_for

MAPPING = {
    "Hiyori": {
        "happy": "Smile.exp3.json",
        "sad": "Sad.exp3.json",
        "smug": "hotkey:wave",  # by name, any case
        "annoyed": "Nope.exp3.json",  # not in the model: VTube Studio says so
        "excited": "hotkey:Cartwheel",  # neither
    },
    "*": {"happy": "Other.exp3.json"},
}


def frame(at: float, expression: str = "neutral", weight: float = 0.0, mouth: float = 0.0) -> Frame:
    return Frame(at=at, expression=expression, weight=weight, mouth=mouth, yaw=5.0, gaze_x=0.25)


async def until(check: Callable[[], Any], what: str, timeout: float = 20) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what}") from None


async def show(out: VtsOutput, f: Frame) -> None:
    """Offer a frame and wait until it went out."""
    sent = out.sent
    out.offer(f)
    await until(lambda: out.sent > sent, "the frame sent")


class Vts:
    """A VtsOutput running against a loopback server, its token kept as the actor keeps it."""

    def __init__(self, server: VtsServer, denied_s: float = 600.0) -> None:
        self.saved: list[str] = []
        self.output = VtsOutput(
            VtsConfig(enabled=True, url=server.url, models=MAPPING),
            save_token=self.saved.append,
            retry_initial_s=0.05,
            retry_max_s=0.2,
            retry_denied_s=denied_s,
        )

    async def run(self, body: Callable[[VtsOutput], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.output.run()), loop.create_task(self.output.write())]
        try:
            await body(self.output)
        finally:
            for task in tasks:
                task.cancel()
                # Bounded: a task that would not stop fails the test instead of hanging it.
                done, _ = await asyncio.wait({task}, timeout=10)
                assert done, f"{task} did not stop when cancelled"
                with pytest.raises(asyncio.CancelledError):
                    task.result()


@pytest.fixture
def server() -> Any:
    s = VtsServer().start()
    yield s
    s.stop()


@pytest.mark.slow
def test_first_connection_asks_for_a_token_once_and_sends_the_newest_frame(
    server: VtsServer,
) -> None:
    vts = Vts(server)

    async def body(out: VtsOutput) -> None:
        await until(lambda: out.ready, "authenticated")
        assert out.model == "Hiyori" and vts.saved and out.token == vts.saved[-1]
        for i in range(1, 76):  # 50 frames a second for a second and a half
            out.offer(frame(i / 50, mouth=i / 100))
            await asyncio.sleep(0.02)
        await until(lambda: server.injections[-1][1]["MouthOpen"] == 0.75, "the last frame")

    asyncio.run(vts.run(body))
    assert server.token_requests == 1 and [ok for _, ok in server.authentications] == [True]
    assert server.errors == []  # every parameter known
    # Frames go out newest first-come: never an older one after a newer (a busy connection
    # skips to the newest), and the last one offered is the last one sent.
    mouths = [values["MouthOpen"] for _, values in server.injections]
    assert mouths == sorted(set(mouths)) and mouths[-1] == 0.75, mouths
    for _, values in server.injections:
        for name, value in values.items():
            low, high = PARAMETERS[name]
            assert low <= value <= high, (name, value)
    values = server.injections[-1][1]
    assert values["FaceAngleX"] == 5.0 and values["EyeLeftX"] == values["EyeRightX"] == 0.25


def test_emotions_show_the_models_mapped_expression_or_hotkey_and_errors_are_counted(
    server: VtsServer,
) -> None:
    vts = Vts(server)

    async def body(out: VtsOutput) -> None:
        await until(lambda: out.ready, "authenticated")
        for i, (emotion, weight) in enumerate(
            [("happy", 1.0), ("happy", 0.6), ("sad", 1.0), ("smug", 1.0), ("sad", 0.0),
             ("annoyed", 1.0)]
        ):  # fmt: skip
            await show(out, frame(float(i), emotion, weight))
        # VTube Studio refuses the file: nothing to deactivate when the next emotion comes.
        await until(lambda: out.errors.get(651), "the expression file's error")
        await show(out, frame(7.0, "excited", 1.0))
        await show(out, frame(8.0, "neutral", 0.0))
        await until(lambda: out.errors.get(202), "the hotkey's error")

    asyncio.run(vts.run(body))
    shown = [(f, active) for _, f, active in server.expressions]
    assert shown == [
        ("Smile.exp3.json", True),  # happy (once: a fading weight is the same expression)
        ("Smile.exp3.json", False),
        ("Sad.exp3.json", True),  # sad
        ("Sad.exp3.json", False),  # smug is a hotkey: the expression goes first
    ]
    assert [h for _, h in server.hotkeys] == ["hk-wave"]
    # A file the model lacks and a hotkey it lacks: VTube Studio's errors, counted and said.
    assert vts.output.errors == {651: 1, 202: 1}
    assert "error 202" in vts.output.status()


def test_a_restarted_server_is_reconnected_with_the_stored_token(server: VtsServer) -> None:
    vts = Vts(server)

    async def body(out: VtsOutput) -> None:
        await until(lambda: out.ready, "authenticated")
        await asyncio.to_thread(server.restart)
        await until(lambda: server.connections == 2 and out.ready, "reconnected")
        await show(out, frame(1.0, mouth=0.3))
        await until(lambda: server.injections, "an injection after the restart")

    asyncio.run(vts.run(body))
    assert server.token_requests == 1  # no second popup
    assert [ok for _, ok in server.authentications] == [True, True]
    assert len({t for t, _ in server.authentications}) == 1 and vts.output.connects == 2


def test_a_stored_token_is_used_and_a_revoked_one_replaced(server: VtsServer) -> None:
    first = Vts(server)
    asyncio.run(first.run(lambda out: until(lambda: out.ready, "authenticated")))
    token = first.saved[-1]
    # A restart of Hex: the token comes from the snapshot.
    again = Vts(server)
    again.output.token = token
    asyncio.run(again.run(lambda out: until(lambda: out.ready, "authenticated")))
    assert server.token_requests == 1 and again.saved == []
    # The person removed the plugin in VTube Studio: the old token is refused, a new one asked.
    server.revoke()
    revoked = Vts(server)
    revoked.output.token = token
    asyncio.run(revoked.run(lambda out: until(lambda: out.ready, "authenticated")))
    assert server.token_requests == 2
    assert revoked.saved[0] == "" and revoked.saved[-1] not in ("", token)
    assert [ok for _, ok in server.authentications] == [True, True, False, True]


def test_a_denied_token_says_so_and_is_asked_again_later(server: VtsServer) -> None:
    server.deny = True
    vts = Vts(server, denied_s=0.3)  # 600 s by default: a person who said no is not nagged

    async def body(out: VtsOutput) -> None:
        await until(lambda: out.state == "denied", "the denial")
        assert "50" in out.detail and not out.ready
        server.deny = False  # the person clicks Allow next time
        await until(lambda: out.ready, "authenticated after all")

    asyncio.run(vts.run(body))
    assert server.token_requests >= 2


def test_nothing_listening_is_retried_with_the_reason() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = VtsServer(port=port)
    vts = Vts(server)

    async def body(out: VtsOutput) -> None:
        await until(lambda: out.state == "retrying", "a refused connection")
        assert "Connect" in out.detail or "refused" in out.detail.lower(), out.detail
        out.offer(frame(0.0))  # not connected: nothing is sent, nothing fails
        await asyncio.to_thread(server.start)
        await until(lambda: out.ready, "connected once the server is up")

    try:
        asyncio.run(vts.run(body))
    finally:
        server.stop()


# -- VMC -----------------------------------------------------------------------------------


def test_vmc_sends_each_frame_as_one_bundle_of_blendshapes_bones_and_apply() -> None:
    receiver = OscReceiver()
    out = VmcOutput(VmcConfig(enabled=True, port=receiver.port))
    try:
        assert asyncio.run(out.resolve())
        out.send(frame(1.0, "happy", 0.7, mouth=0.4))
        out.send(frame(2.0, "sad", 1.0, mouth=0.0))
        poll_for(lambda: len(receiver.packets) == 2, 10, what="two bundles")
    finally:
        out.close()
        receiver.close()
    (_, first), (_, second) = receiver.packets
    addresses = [a for a, _ in first]
    assert addresses[0] == "/VMC/Ext/T" and addresses[-1] == "/VMC/Ext/Blend/Apply"
    shapes = dict(tuple(args) for a, args in first if a == "/VMC/Ext/Blend/Val")
    assert shapes["A"] == pytest.approx(0.4) and shapes["Joy"] == pytest.approx(0.7)
    assert shapes["Sorrow"] == 0.0 and shapes["Blink"] == 0.0
    # The next frame's expression replaces the last: Joy goes back to 0.
    shapes = dict(tuple(args) for a, args in second if a == "/VMC/Ext/Blend/Val")
    assert shapes["Joy"] == 0.0 and shapes["Sorrow"] == 1.0 and shapes["A"] == 0.0
    # Her gaze (0.25 to her left) as the look blendshapes; no bones without the head's rest.
    assert shapes["LookLeft"] == 0.25 and shapes["LookRight"] == 0.0
    assert not any(a == "/VMC/Ext/Bone/Pos" for a, _ in first)


def test_vmc_sends_the_head_where_the_model_has_it_at_rest() -> None:
    receiver = OscReceiver()
    out = VmcOutput(VmcConfig(enabled=True, port=receiver.port, head_rest=(0.0, 0.06, 0.01)))
    try:
        assert asyncio.run(out.resolve())
        out.send(frame(1.0))
        poll_for(lambda: receiver.packets, 10, what="a bundle")
    finally:
        out.close()
        receiver.close()
    bones = [args for a, args in receiver.packets[0][1] if a == "/VMC/Ext/Bone/Pos"]
    assert len(bones) == 1 and bones[0][0] == "Head"
    assert bones[0][1:4] == pytest.approx([0.0, 0.06, 0.01])
    assert bones[0][4:] == pytest.approx(quaternion(5.0, 0.0, 0.0), abs=1e-6)


def test_vmc_to_a_receiver_started_later_or_an_unknown_host() -> None:
    late = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    late.bind(("127.0.0.1", 0))
    port = late.getsockname()[1]
    late.close()
    out = VmcOutput(VmcConfig(enabled=True, port=port))
    out.send(frame(0.0))  # not resolved yet: dropped, not an error
    assert asyncio.run(out.resolve())
    out.send(frame(0.5))  # nobody listens: UDP does not care, nor does Hex
    receiver = OscReceiver(port)
    try:
        out.send(frame(1.0))
        poll_for(lambda: receiver.packets, 10, what="a bundle once the receiver is up")
    finally:
        out.close()
        receiver.close()
    for host in ("no-such-host.invalid", "a..b"):  # unknown, and not even a name
        lost = VmcOutput(VmcConfig(enabled=True, host=host), retry_initial_s=0.01)
        assert not asyncio.run(lost.resolve())
        lost.send(frame(0.0))
        assert lost.state == "retrying" and "does not resolve" in lost.detail
        lost.close()


def rotate(q: tuple[float, float, float, float], v: tuple[float, float, float]) -> list[float]:
    x, y, z, w = q
    r = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return [sum(r[i][j] * v[j] for j in range(3)) for i in range(3)]


def test_quaternions_turn_her_head_the_way_the_frame_says() -> None:
    assert quaternion(0, 0, 0) == pytest.approx((0, 0, 0, 1))
    # A VRM model faces the viewer (+Z) in Unity, her left at -X, up at +Y.
    left = rotate(quaternion(30, 0, 0), (0, 0, 1))
    assert left[0] < -0.4 and left[2] > 0.8  # turned to her left
    up = rotate(quaternion(0, 20, 0), (0, 0, 1))
    assert up[1] > 0.3  # nodded up
    for angles in [(30, 0, 0), (0, -20, 0), (0, 0, 15), (12, 7, -3)]:
        assert sum(c * c for c in quaternion(*angles)) == pytest.approx(1.0)


@pytest.mark.slow  # the socket buffers fill one small frame at a time: 15-35 s
def test_a_stuck_vtube_studio_is_dropped_and_reconnected(server: VtsServer) -> None:
    vts = Vts(server)

    async def body(out: VtsOutput) -> None:
        await until(lambda: out.ready, "authenticated")
        server.stuck = True  # it stops reading: the connection's buffers fill
        # Dropped by a send it did not take within SEND_S (a stall), or, on a machine too busy
        # to fill the buffers first, by the websocket's keepalive (40 s at most): either way,
        # never a wait on the stuck side.
        deadline = time.monotonic() + 90
        while out.ready:
            assert time.monotonic() < deadline, f"not dropped: {out.state} {out.detail}"
            out.offer(frame(0.0, mouth=0.5))  # never waits, however stuck the other side
            await asyncio.sleep(0)
        server.stuck = False
        await until(lambda: out.ready and out.connects >= 2, "connected again")

    asyncio.run(vts.run(body))
    assert server.token_requests == 1
