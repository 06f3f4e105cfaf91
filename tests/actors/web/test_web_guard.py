"""Who may open the page: Host, Origin and the token, checked before any route (in-process)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from actors.web.auth import PageFile, allowed_hosts, host_allowed, origin_allowed, token_matches
from hexbus import notes

ALLOWED = allowed_hosts(8765, ("hex.lan",))


def test_the_page_answers_to_its_own_names_and_port_only() -> None:
    for host in (
        "127.0.0.1:8765",
        "localhost:8765",
        "LOCALHOST:8765",
        "[::1]:8765",
        "hex.lan:8765",
    ):
        assert host_allowed(host, ALLOWED), host
    assert not host_allowed(None, ALLOWED)
    for refused in (
        "",
        "127.0.0.1",  # no port: not what a browser at the page's address sends
        "127.0.0.1:8766",
        "evil.example:8765",  # DNS rebinding: the attacker's name resolving to 127.0.0.1
        "127.0.0.1.evil.example:8765",
        "localhost:8765.evil.example",
        "hex.lan.evil:8765",
    ):
        assert not host_allowed(refused, ALLOWED), refused


@given(
    name=st.sampled_from(["127.0.0.1", "localhost", "[::1]", "hex.lan"]),
    before=st.text(max_size=8),
    after=st.text(max_size=8),
)
def test_a_page_name_with_anything_around_it_is_refused(name: str, before: str, after: str) -> None:
    host = f"{before}{name}:8765{after}"
    assert host_allowed(host, ALLOWED) == (host.strip().lower() == f"{name}:8765")


def test_the_bound_address_and_default_ports_are_the_pages_names_too() -> None:
    lan = allowed_hosts(8443, (), "192.168.1.10", tls=True)
    assert host_allowed("192.168.1.10:8443", lan) and not host_allowed("192.168.1.10", lan)
    https = allowed_hosts(443, ("hex.lan",), "0.0.0.0", tls=True)
    assert host_allowed("hex.lan", https) and host_allowed("hex.lan:443", https)
    assert not host_allowed("0.0.0.0:443", https)  # a wildcard is no name
    assert origin_allowed("https://hex.lan", https)
    v6 = allowed_hosts(8765, (), "::1")
    assert host_allowed("[::1]:8765", v6)


def test_origins_must_be_the_pages_own() -> None:
    assert origin_allowed(None, ALLOWED)  # a same-origin GET, or a client with no cookie to use
    assert origin_allowed("http://127.0.0.1:8765", ALLOWED)
    assert origin_allowed("https://hex.lan:8765", ALLOWED)
    for origin in (
        "null",  # a sandboxed frame or a file:// page
        "http://evil.example",
        "http://127.0.0.1:9999",
        "http://127.0.0.1:8765.evil.example",
        "chrome-extension://abc",
        "file://",
        "http://[::1",
    ):
        assert not origin_allowed(origin, ALLOWED), origin


def test_tokens_compare_whole() -> None:
    token = "a" * 43
    assert token_matches(token, token)
    assert not token_matches(None, token)
    assert not token_matches("", token)
    assert not token_matches(token[:-1], token)
    assert not token_matches(token + "a", token)
    assert not token_matches("é" * 43, token)  # non-ASCII: refused, not a crash


def test_the_token_lasts_as_long_as_the_supervisor_that_made_it(tmp_path: Path) -> None:
    pages = PageFile(tmp_path, "web")
    supervisor = PageFile.supervisor()
    assert supervisor.startswith(f"{os.getppid()}@")
    first, port = pages.session(supervisor)
    assert len(first) >= 32 and port == 0
    pages.save_session(first, 41234, supervisor)
    pages.write(url="http://127.0.0.1:41234/", token=first)
    note = notes.read(tmp_path, "web")["web"]
    assert note["open"] == f"http://127.0.0.1:41234/?token={first}"
    assert (tmp_path / "notes" / "web.json").stat().st_mode & 0o777 == 0o600
    pages.remove()  # a graceful stop of the actor takes its note down, not the token
    assert notes.read(tmp_path) == {}
    # The actor restarted: the same token and port, so open tabs reconnect.
    assert pages.session(supervisor) == (first, 41234)
    assert (tmp_path / "web" / "web.token").stat().st_mode & 0o777 == 0o600
    # Hex started again (the same pid reused after a reboot is another start): a new secret.
    second, port = pages.session(supervisor.split("@")[0] + "@1.000")
    assert second != first and port == 0
