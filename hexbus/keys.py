"""CURVE keys per host: the broker's pair, an allow-list of host public keys, revocation.

On the broker's host, ``hexbus keys DIR`` makes:

- ``DIR/broker.key`` and ``broker.key_secret``: the broker's pair (its public key is pinned by
  every host, so nothing else can pretend to be the broker);
- ``DIR/host.key`` and ``host.key_secret``: this host's own pair, admitted as ``hosts/local.key``.

``hexbus keys add-host NAME DIR`` makes NAME's pair in ``DIR/export/NAME/`` (``host.key``,
``host.key_secret`` and a copy of ``broker.key``: copy that folder to NAME as its
``bus.curve_dir``) and admits its public key as ``hosts/NAME.key``. ``hexbus keys revoke-host
NAME DIR`` moves it to ``revoked/``; the broker reloads the allow-list within a heartbeat and,
when a key was revoked, restarts to drop the connections it had admitted (its supervisor brings
it back at once; durable producers resend what was unacknowledged).

A folder made by earlier versions (``server.key``, ``client.key``, ``clients/``) still works.
"""

from __future__ import annotations

import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any, Final

import structlog
import zmq
import zmq.auth
from zmq.utils import z85

from hexbus.config import ORIGIN_NAME, ConfigError

HOST_NAME: Final = ORIGIN_NAME
LOCAL: Final = "local"

log = structlog.get_logger("hexbus.broker")


class KeysError(ConfigError):
    """A key command that cannot be done; its message is the one line to show."""


def _private(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)


def _secrets_private(directory: Path) -> None:
    for secret in directory.glob("*.key_secret"):
        secret.chmod(0o600)


def create_keys(directory: Path) -> tuple[Path, Path]:
    """The broker's pair and this host's (admitted as ``local``); returns their public keys.

    A folder of the earlier layout (``server``/``client`` pairs, ``clients/``) is carried over:
    the server pair becomes the broker's and every admitted client key stays admitted, so hosts
    that copied the old folder keep working.
    """
    _private(directory)
    for folder in ("hosts", "revoked", "export"):
        _private(directory / folder)
    for old, new in (("server", "broker"), ("client", "host")):
        for suffix in (".key", ".key_secret"):
            if (directory / f"{old}{suffix}").exists() and not (
                directory / f"{new}{suffix}"
            ).exists():
                shutil.copyfile(directory / f"{old}{suffix}", directory / f"{new}{suffix}")
    for admitted in sorted((directory / "clients").glob("*.key")):
        target = directory / "hosts" / admitted.name
        if not target.exists():
            shutil.copyfile(admitted, target)
    if not (directory / "broker.key_secret").exists():
        zmq.auth.create_certificates(str(directory), "broker")
    if not (directory / "host.key_secret").exists():
        zmq.auth.create_certificates(str(directory), "host")
    local = directory / "hosts" / f"{LOCAL}.key"
    if not local.exists() and not (directory / "revoked" / f"{LOCAL}.key").exists():
        shutil.copyfile(directory / "host.key", local)
    _secrets_private(directory)
    return directory / "broker.key", directory / "host.key"


def add_host(directory: Path, name: str) -> Path:
    """Admit a new host NAME; returns the folder to copy to it as its ``bus.curve_dir``."""
    if not HOST_NAME.match(name):
        raise KeysError(f"host name {name!r}: use lowercase letters, digits, '_' or '-' (max 32)")
    if not (directory / "broker.key").exists():
        raise KeysError(f"{directory} has no broker key: run `hexbus keys {directory}` first")
    admitted = directory / "hosts" / f"{name}.key"
    if admitted.exists():
        raise KeysError(f"host {name} is already admitted ({admitted}); revoke it first")
    export = directory / "export" / name
    if export.exists():
        shutil.rmtree(export)  # a host revoked earlier gets a fresh pair
    _private(export)
    zmq.auth.create_certificates(str(export), "host")
    shutil.copyfile(directory / "broker.key", export / "broker.key")
    _secrets_private(export)
    _private(directory / "hosts")
    shutil.copyfile(export / "host.key", admitted)
    return export


def revoke_host(directory: Path, name: str) -> Path:
    """Stop admitting NAME; returns where its public key went (its exported secret goes)."""
    if not HOST_NAME.match(name):
        raise KeysError(f"host name {name!r}: use lowercase letters, digits, '_' or '-' (max 32)")
    if name == LOCAL:
        raise KeysError(
            "local is this host's own key: revoking it stops this host's actors; make a new "
            "folder with `hexbus keys` instead"
        )
    admitted = directory / "hosts" / f"{name}.key"
    if not admitted.exists():
        known = sorted(p.stem for p in (directory / "hosts").glob("*.key"))
        raise KeysError(f"no admitted host {name!r} in {directory} (admitted: {known})")
    _private(directory / "revoked")
    target = directory / "revoked" / f"{name}.key"
    admitted.replace(target)
    shutil.rmtree(directory / "export" / name, ignore_errors=True)  # no secret left behind
    return target


def allow_list(curve_dir: str) -> Path:
    """The folder of admitted public keys."""
    hosts = Path(curve_dir) / "hosts"
    return hosts if hosts.is_dir() else Path(curve_dir) / "clients"


def _load(curve_dir: str, names: tuple[str, ...]) -> tuple[bytes, bytes]:
    for name in names:
        path = Path(curve_dir) / f"{name}.key_secret"
        if path.exists():
            public, secret = zmq.auth.load_certificate(str(path))
            if secret is None:
                raise ConfigError(
                    f"CURVE key {path} has no secret part: run `hexbus keys {curve_dir}` again"
                )
            return public, secret
    path = Path(curve_dir) / f"{names[0]}.key_secret"
    raise ConfigError(f"CURVE key {path} is missing: run `hexbus keys {curve_dir}`")


def secure_server(sock: zmq.Socket[Any], curve_dir: str) -> None:
    public, secret = _load(curve_dir, ("broker", "server"))
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_server = True


def secure_client(sock: zmq.Socket[Any], curve_dir: str) -> None:
    """This host's pair, and the broker's public key pinned: a server with any other key is
    never talked to."""
    public, secret = _load(curve_dir, ("host", "client"))
    for name in ("broker", "server"):
        pinned = Path(curve_dir) / f"{name}.key"
        if pinned.exists():
            break
    else:
        raise ConfigError(
            f"the broker's public key is missing from {curve_dir}: copy broker.key from the "
            "broker's keys folder (hexbus keys add-host exports it)"
        )
    server_public, _ = zmq.auth.load_certificate(str(pinned))
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.curve_serverkey = server_public


class AllowList:
    """The broker's view of the admitted host keys, reloaded when the folder changes.

    ZeroMQ's authenticator names each connection it admits after the key's file (``hosts/gpu1.key``
    admits ``gpu1``): that name is the origin the broker stamps on what the connection publishes.
    """

    def __init__(self, curve_dir: str, auth: Any) -> None:
        self.curve_dir = curve_dir
        self.auth = auth
        self.names = self._now()
        auth.curve_user_id = self.origin
        auth.configure_curve(domain="*", location=str(allow_list(curve_dir)))

    @property
    def keys(self) -> frozenset[bytes]:
        return frozenset(self.names)

    def origin(self, raw_public_key: bytes) -> str:
        """The host name of an admitted key (called by the authenticator's thread)."""
        return self.names.get(z85.encode(raw_public_key), "unknown")

    def _now(self) -> dict[bytes, str]:
        """The admitted public keys themselves (a file replaced under the same name counts),
        each with its host's name: ``local`` for this folder's own host key (in a folder of the
        earlier layout, the client key every host shared), else the file's name (the first,
        alphabetically, of a key admitted twice)."""
        own = None
        for name in ("host", "client"):
            with suppress(OSError, ValueError):
                own = zmq.auth.load_certificate(str(Path(self.curve_dir) / f"{name}.key"))[0]
                break
        names: dict[bytes, str] = {}
        for path in sorted(allow_list(self.curve_dir).glob("*.key")):
            try:
                key = zmq.auth.load_certificate(str(path))[0]
            except (OSError, ValueError):
                continue  # half-written or not a key: not admitted
            names.setdefault(key, LOCAL if key == own else path.stem)
        return names

    def revoked(self) -> list[str]:
        """Reload if the allow-list changed; the hosts revoked since the last look."""
        now = self._now()
        if now == self.names:
            return []
        # A key now known by another name counts too: its connections keep the old name (and
        # its privileges) until they are dropped.
        revoked = sorted(k.decode() for k, name in self.names.items() if now.get(k) != name)
        added = sorted(k.decode() for k in now.keys() - self.names.keys())
        self.names = now
        self.auth.configure_curve(domain="*", location=str(allow_list(self.curve_dir)))
        log.warning("broker.hosts_changed", added=added, revoked=revoked)
        return revoked
