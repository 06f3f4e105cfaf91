"""Per-host CURVE keys on disk: the allow-list follows the keys themselves, old folders carry
over, and revocation leaves no secret behind (issue 13, item 8)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import zmq.auth

from hexbus.keys import AllowList, KeysError, add_host, create_keys, revoke_host


class ZapRecorder:
    """Stands in for the ZAP thread's configure_curve (the broker tests use the real one)."""

    def __init__(self) -> None:
        self.loaded: list[str] = []

    def configure_curve(self, domain: str, location: str) -> Any:
        self.loaded.append(location)


def public(path: Path) -> bytes:
    return zmq.auth.load_certificate(str(path))[0]


def test_a_key_revoked_and_added_again_under_the_same_name_is_still_a_revocation(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    create_keys(keys)
    add_host(keys, "laptop")
    hosts = AllowList(str(keys), ZapRecorder())
    assert hosts.revoked() == []
    old = public(keys / "hosts" / "laptop.key")
    revoke_host(keys, "laptop")
    add_host(keys, "laptop")  # before the broker's next look
    assert hosts.revoked() == [old.decode()]


def test_revoking_removes_the_exported_secret_and_never_this_hosts_own(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    create_keys(keys)
    export = add_host(keys, "gpu1")
    assert stat.S_IMODE((export / "host.key_secret").stat().st_mode) == 0o600
    revoke_host(keys, "gpu1")
    assert not export.exists()
    with pytest.raises(KeysError, match="this host's own key"):
        revoke_host(keys, "local")
    with pytest.raises(KeysError, match="host name"):
        revoke_host(keys, "../hosts/local")


def test_a_folder_of_the_earlier_layout_keeps_every_host_it_admitted(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "clients").mkdir()
    zmq.auth.create_certificates(str(keys), "server")
    zmq.auth.create_certificates(str(keys), "client")
    (keys / "clients" / "client.key").write_bytes((keys / "client.key").read_bytes())
    create_keys(keys)  # the upgrade
    assert public(keys / "broker.key") == public(keys / "server.key")  # hosts' pins still hold
    admitted = {public(p) for p in (keys / "hosts").glob("*.key")}
    assert public(keys / "client.key") in admitted
    add_host(keys, "gpu1")  # and new hosts can be added
