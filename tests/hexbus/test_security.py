"""Security: the 0700 run directory, tcp on loopback, CURVE keys, and the refusal to bind an
open address without them."""

from __future__ import annotations

import asyncio
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
import zmq.auth

from hexbus import codec
from hexbus.bus import BusClient
from hexbus.codec import ACK, PUBLISH, U64, U64x2
from hexbus.config import ConfigError
from hexbus.endpoints import Endpoints, secure_client, secure_server
from schemas import ProbeDurable
from tests.support.busclient import ask_count
from tests.support.harness import FAST_BUS, REPO, Hex, actor_toml, poll_for

pytestmark = pytest.mark.process

COUNTER = actor_toml("counter", "actors.diag.actor:CounterActor")


def free_port_base(host: str = "0.0.0.0") -> int:
    """A port p with p..p+5 all free (the broker binds six consecutive ports)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((host, 0))
            base = int(probe.getsockname()[1])
        if base + 5 > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + 6):
                sock = socket.socket()
                held.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise AssertionError("no four consecutive free ports")


def tcp_bus(port: int, host: str = "127.0.0.1", curve_dir: str = "") -> str:
    lines = [
        "[bus]",
        'transport = "tcp"',
        f'host = "{host}"',
        f"port = {port}",
        "heartbeat_interval_s = 0.2",
    ]
    if curve_dir:
        lines.append(f'curve_dir = "{curve_dir}"')
    return "\n".join(lines) + "\n"


def make_keys(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hexbus.cli", "keys", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


async def publish_probes(endpoints: Endpoints, numbers: range) -> None:
    client = BusClient(endpoints, "tester")
    client.start()
    try:
        for n in numbers:
            await client.publish(ProbeDurable(n=n))
        assert await client.flush(20), "the broker did not acknowledge the probes"
    finally:
        await client.close()


def counted(hx: Hex, expected: tuple[int, int], timeout: float = 15) -> None:
    poll_for(
        lambda: asyncio.run(ask_count(hx.endpoints)) == expected,
        timeout,
        what=f"the counter at {expected}",
    )


@pytest.mark.parametrize("existing", [None, 0o755], ids=["created", "loose-existing"])
def test_run_directory_is_0700_and_holds_the_ipc_sockets(
    hex_factory: Callable[[str], Hex], existing: int | None
) -> None:
    hx = hex_factory(FAST_BUS)
    if existing is not None:
        hx.run_dir.mkdir(mode=existing)
        hx.run_dir.chmod(existing)  # mkdir's mode is masked by the umask
        assert stat.S_IMODE(hx.run_dir.stat().st_mode) == existing
    hx.start()
    assert stat.S_IMODE(hx.run_dir.stat().st_mode) == 0o700
    ep = hx.endpoints
    for address in (
        ep.volatile_in,
        ep.volatile_out,
        ep.ingest,
        ep.replay,
        ep.control,
        ep.heartbeat,
    ):
        assert address.startswith("ipc://"), address
        path = Path(address.removeprefix("ipc://"))
        assert path.parent == hx.run_dir, address
        assert stat.S_ISSOCK(path.stat().st_mode), f"{path} is not a socket"


@pytest.mark.slow
def test_tcp_transport_on_loopback_with_curve_counts_durable_events(
    hex_factory: Callable[[str], Hex], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    assert make_keys(keys).returncode == 0
    base = free_port_base()
    hx = hex_factory(tcp_bus(base, curve_dir=str(keys)) + COUNTER).start()
    ep = hx.endpoints
    assert [ep.volatile_in, ep.volatile_out, ep.ingest, ep.replay] == [
        f"tcp://127.0.0.1:{base + i}" for i in range(4)
    ]
    asyncio.run(publish_probes(ep, range(1, 101)))
    counted(hx, (100, 5050))
    # A local process without the keys gets nothing through, loopback or not.
    assert _raw_publish(ep.ingest, 1) is None


def run_refused(root: Path, config: str, run_dir: Path | None = None) -> str:
    """``hexbus run`` with ``config``: it must exit 2 with one line and start nothing; the line."""
    path = root / "supervisor.toml"
    path.write_text(config)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hexbus.cli",
            "run",
            str(path),
            "--run-dir",
            str(run_dir or root / "run"),
            "--data-dir",
            str(root / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert not (root / "data" / "journal").exists(), "something started before the refusal"
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_tcp_without_curve_keys_is_refused_with_one_line_even_on_loopback(host: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    try:
        line = run_refused(root, tcp_bus(free_port_base(), host=host) + COUNTER)
        assert "curve_dir" in line and "hexbus keys" in line, line
        assert ("any local user" in line) == (host == "127.0.0.1"), line
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_a_symlink_planted_at_the_run_directory_is_refused_not_followed() -> None:
    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    try:
        elsewhere = root / "chosen-by-someone-else"
        elsewhere.mkdir(mode=0o700)
        planted = root / "run"
        planted.symlink_to(elsewhere)
        line = run_refused(root, FAST_BUS + COUNTER, run_dir=planted)
        assert "symlink" in line and str(planted) in line, line
        assert list(elsewhere.iterdir()) == []  # no socket landed there
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_what_hex_writes_is_its_owners_alone(hex_factory: Callable[[str], Hex]) -> None:
    hx = hex_factory(FAST_BUS + COUNTER)
    hx.data_dir.mkdir(mode=0o755)
    hx.data_dir.chmod(0o755)  # an existing, loose data folder is tightened
    hx.start()
    asyncio.run(publish_probes(hx.endpoints, range(1, 4)))
    counted(hx, (3, 6))
    assert hx.cli("restart", "counter").returncode == 0  # a graceful stop saves a snapshot
    assert (hx.data_dir / "actors" / "counter" / "snapshot.msgpack").exists()
    loose = []
    for path in [hx.data_dir, *hx.data_dir.rglob("*")]:
        if path.is_symlink() or path.is_socket():
            continue
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            loose.append(f"{path} {oct(stat.S_IMODE(path.stat().st_mode))}")
    assert loose == []


def test_hexbus_keys_writes_the_brokers_pair_and_this_hosts_with_private_secrets(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "keys"
    out = make_keys(directory)
    assert out.returncode == 0, out.stderr
    assert "broker public key" in out.stdout
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("broker", "host"):
        public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
        assert public.is_file() and secret.is_file()
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, f"{secret} is readable by others"
        pub_key, sec_key = zmq.auth.load_certificate(str(secret))
        assert sec_key is not None and len(sec_key) == 40
        assert zmq.auth.load_certificate(str(public))[0] == pub_key
    admitted = directory / "hosts" / "local.key"
    assert (
        zmq.auth.load_certificate(str(admitted))[0]
        == zmq.auth.load_certificate(str(directory / "host.key"))[0]
    )
    # Only public keys are admitted: no secret lands in hosts/.
    assert not list((directory / "hosts").glob("*secret*"))


def keys_command(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hexbus.cli", "keys", *words],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@pytest.mark.slow
def test_a_host_is_admitted_by_its_own_key_and_refused_at_once_when_revoked(
    hex_factory: Callable[[str], Hex], tmp_path: Path
) -> None:
    keys, stranger = tmp_path / "keys", tmp_path / "stranger"
    assert make_keys(keys).returncode == 0
    assert make_keys(stranger).returncode == 0
    out = keys_command("add-host", "gpu1", str(keys))
    assert out.returncode == 0, out.stderr
    exported = keys / "export" / "gpu1"
    assert sorted(p.name for p in exported.iterdir()) == [
        "broker.key",
        "host.key",
        "host.key_secret",
    ]
    gpu = tmp_path / "on-the-gpu-host"
    shutil.copytree(exported, gpu)  # what the person does: the folder goes to that host
    assert keys_command("add-host", "gpu1", str(keys)).returncode != 0  # not twice
    base = free_port_base()
    hx = hex_factory(tcp_bus(base, curve_dir=str(keys)) + COUNTER).start()
    ingest = f"tcp://127.0.0.1:{base + 2}"
    reply = _raw_publish(ingest, 1, curve_dir=str(gpu), wait_ms=10_000)
    assert reply is not None and reply[0] == ACK  # the GPU host, by its own key
    assert _raw_publish(ingest, 2, curve_dir=str(stranger), server_key_dir=str(keys)) is None
    # A server pretending to be the broker (another key on the broker's address) is never
    # talked to: the hosts pin the broker's public key.
    rogue_port = free_port_base()
    rogue: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    rogue.linger = 0
    secure_server(rogue, str(stranger))
    rogue.bind(f"tcp://127.0.0.1:{rogue_port}")
    try:
        assert _raw_publish(f"tcp://127.0.0.1:{rogue_port}", 3, curve_dir=str(gpu)) is None
        assert not rogue.poll(500, zmq.POLLIN), "the rogue broker heard the host"
    finally:
        rogue.close(linger=0)

    broker = hx.pid("broker")
    out = keys_command("revoke-host", "gpu1", str(keys))
    assert out.returncode == 0, out.stderr
    hx.wait_restarted("broker", broker)  # dropping the connections it had admitted
    assert _raw_publish(ingest, 4, curve_dir=str(gpu)) is None
    asyncio.run(publish_probes(hx.endpoints, range(10, 13)))  # this host goes on
    counted(hx, (4, 34))


def _raw_publish(
    address: str,
    n: int,
    curve_dir: str | None = None,
    server_key_dir: str | None = None,
    wait_ms: int = 2000,
) -> list[bytes] | None:
    """Send one durable probe from a bare DEALER; return the broker's reply, or None if none came."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    try:
        if curve_dir is not None:
            public, secret = zmq.auth.load_certificate(str(Path(curve_dir) / "host.key_secret"))
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            server, _ = zmq.auth.load_certificate(
                str(Path(server_key_dir or curve_dir) / "broker.key")
            )
            sock.curve_serverkey = server
        sock.connect(address)
        session = codec.new_session()
        envelope = codec.make_envelope(
            ProbeDurable(n=n), event_id=f"raw{n}", source="raw", session=session, seq=1
        )
        sock.send_multipart([PUBLISH, U64.pack(1), *codec.message_frames(envelope)])
        if not sock.poll(wait_ms, zmq.POLLIN):
            return None
        reply = sock.recv_multipart()
        assert reply[0] != ACK or U64x2.unpack(reply[1]) == (session, 1)
        return reply
    finally:
        sock.close(linger=0)


@pytest.mark.slow
def test_curve_on_an_open_address_admits_only_clients_with_admitted_keys(
    hex_factory: Callable[[str], Hex],
    tmp_path: Path,
) -> None:
    keys, stranger = tmp_path / "keys", tmp_path / "stranger"
    assert make_keys(keys).returncode == 0
    assert make_keys(stranger).returncode == 0  # a valid key pair the broker has never seen
    base = free_port_base()
    hx = hex_factory(tcp_bus(base, host="0.0.0.0", curve_dir=str(keys)) + COUNTER).start()
    assert hx.endpoints.ingest == f"tcp://0.0.0.0:{base + 2}" and hx.endpoints.curve_dir == str(
        keys
    )
    ingest = f"tcp://127.0.0.1:{base + 2}"

    # No keys at all, and a host key not in hosts/: never acknowledged.
    assert _raw_publish(ingest, 1000) is None
    assert _raw_publish(ingest, 2000, curve_dir=str(stranger), server_key_dir=str(keys)) is None
    # The same bare DEALER with the admitted key is acknowledged: the refusals above are the keys' doing.
    reply = _raw_publish(ingest, 7, curve_dir=str(keys), wait_ms=10_000)
    assert reply is not None and reply[0] == ACK

    # The client library (keys from endpoints.curve_dir) publishes; the actor counts exactly those.
    asyncio.run(publish_probes(hx.endpoints, range(1, 11)))
    counted(hx, (11, 62))
    status = hx.status()
    assert status["broker"]["restarts"] == 0 and status["counter"]["restarts"] == 0

    # A plain-text subscriber on the open volatile port hears nothing either.
    sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sub.linger = 0
    sub.subscribe(b"")
    sub.connect(f"tcp://127.0.0.1:{base + 1}")
    try:
        assert not sub.poll(1500, zmq.POLLIN), "an unauthenticated SUB received broker traffic"
    finally:
        sub.close(linger=0)
    assert asyncio.run(ask_count(hx.endpoints)) == (11, 62)


def test_secure_client_without_keys_names_the_fix(tmp_path: Path) -> None:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    try:
        with pytest.raises(ConfigError, match="hexbus keys"):
            secure_client(sock, str(tmp_path / "nowhere"))
    finally:
        sock.close(linger=0)
