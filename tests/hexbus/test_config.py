"""supervisor.toml: parsed into Structs, validated before anything starts, every error one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hexbus.config import ConfigError, HexConfig, parse, start_order

REPO = Path(__file__).resolve().parents[2]
SRC = "conf/supervisor.toml"
ECHO = 'module = "actors.diag.actor:EchoActor"\n'


def error_of(text: str, source: str = SRC) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, source)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert message.startswith(f"{source}: "), message
    return message


def actor(name: str, body: str = "", module: str = ECHO) -> str:
    return f"[actors.{name}]\n{module}{body}"


# -- valid ------------------------------------------------------------------------------


def test_empty_file_gives_the_documented_defaults() -> None:
    config = parse("", SRC)
    assert config == HexConfig()
    assert config.bus.transport == "ipc"
    assert config.bus.host == "127.0.0.1"
    assert config.bus.journal.fsync == "batch"
    assert config.supervisor.data_dir == ".hex/data"
    assert config.actors == {}


def test_full_config_parses_every_section() -> None:
    config = parse(
        """
[supervisor]
data_dir = "data"
log_level = "debug"
[supervisor.broker]
max_restarts = 3
[bus]
transport = "tcp"
host = "127.0.0.1"
port = 7700
curve_dir = "/keys"
[bus.journal]
fsync = "always"
retention_hours = 2
"""
        + actor(
            "echo",
            'restart = "transient"\nheartbeat_timeout_s = 3\nenv = {A = "1"}\n[actors.echo.config]\nanything = [1, 2]\n',
        )
        + actor(
            "counter",
            'depends_on = ["echo"]\n',
            module='module = "actors.diag.actor:CounterActor"\n',
        ),
        SRC,
    )
    assert config.supervisor.log_level == "debug"
    assert config.supervisor.broker.max_restarts == 3
    assert (config.bus.transport, config.bus.port, config.bus.journal.fsync) == (
        "tcp",
        7700,
        "always",
    )
    assert config.bus.journal.retention_hours == 2.0
    echo = config.actors["echo"]
    assert echo.restart == "transient"
    assert echo.heartbeat_timeout_s == 3.0  # an int is fine where a float is expected
    assert echo.env == {"A": "1"}
    assert echo.config == {"anything": [1, 2]}
    assert config.actors["counter"].depends_on == ["echo"]


def test_the_shipped_supervisor_toml_is_valid() -> None:
    path = REPO / "supervisor.toml"
    config = parse(path.read_text(), str(path))
    assert "echo" in config.actors


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_tcp_on_loopback_needs_curve_too(host: str) -> None:
    assert error_of(f'[bus]\ntransport = "tcp"\nhost = "{host}"\n') == (
        f'{SRC}: bus.transport = "tcp" needs CURVE (loopback too: any local user could connect) '
        "and bus.curve_dir is empty: run `hexbus keys DIR` and set bus.curve_dir, or use "
        'transport = "ipc"'
    )


def test_tcp_on_a_public_address_with_curve_dir_is_accepted() -> None:
    parse('[bus]\ntransport = "tcp"\nhost = "0.0.0.0"\ncurve_dir = "/keys"\n', SRC)


def test_zero_max_restarts_is_allowed() -> None:
    assert parse(actor("a", "max_restarts = 0\n"), SRC).actors["a"].max_restarts == 0


# -- one-line errors, exact ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus = 1\n", "bogus"),
        ("[supervisor]\nbogus = 1\n", "supervisor.bogus"),
        ("[supervisor.broker]\nbogus = 1\n", "supervisor.broker.bogus"),
        ("[bus]\nbogus = 1\n", "bus.bogus"),
        ("[bus.journal]\nbogus = 1\n", "bus.journal.bogus"),
        (actor("a", "bogus = 1\n"), "actors.a.bogus"),
    ],
    ids=["top-level", "supervisor", "broker", "bus", "journal", "actor"],
)
def test_unknown_key_names_the_full_dotted_key(text: str, key: str) -> None:
    assert error_of(text) == f"{SRC}: unknown key {key!r}: remove it or fix its spelling"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[bus]\nport = "x"\n', "bus.port: expected int, got str"),
        ("[bus.journal]\nfsync_every = 1.5\n", "bus.journal.fsync_every: expected int, got float"),
        (
            '[supervisor]\nstatus_interval_s = "1"\n',
            "supervisor.status_interval_s: expected float, got str",
        ),
        (actor("a", 'max_restarts = "x"\n'), "actors.a.max_restarts: expected int, got str"),
        (actor("a", "max_restarts = true\n"), "actors.a.max_restarts: expected int, got bool"),
        (
            actor("a", 'heartbeat_timeout_s = "5"\n'),
            "actors.a.heartbeat_timeout_s: expected float, got str",
        ),
        (actor("a", 'enabled = "yes"\n'), "actors.a.enabled: expected bool, got str"),
        (actor("a", 'depends_on = "b"\n'), "actors.a.depends_on: expected array, got str"),
        (actor("a", "depends_on = [1]\n"), "actors.a.depends_on[0]: expected str, got int"),
        (
            '[bus.journal]\nfsync = "sometimes"\n',
            "bus.journal.fsync: invalid enum value 'sometimes'",
        ),
        (actor("a", 'restart = "always"\n'), "actors.a.restart: invalid enum value 'always'"),
        ("actors = 3\n", "actors: expected object, got int"),
    ],
)
def test_wrong_type_names_the_key_and_the_expected_type(text: str, expected: str) -> None:
    assert error_of(text) == f"{SRC}: {expected}"


def test_env_value_that_is_not_a_string_names_the_env_key() -> None:
    assert (
        error_of(actor("x", 'env = {OK = "1", KEY = 1}\n'))
        == f"{SRC}: actors.x.env.KEY: expected str, got int"
    )


def test_actor_that_is_not_a_table_names_the_actor() -> None:
    message = error_of("[actors]\nbrain = 3\n")
    assert "actors.brain" in message, message


def test_missing_module_key_names_it() -> None:
    assert (
        error_of("[actors.a]\nenabled = true\n") == f"{SRC}: missing key 'actors.a.module': add it"
    )


def test_module_that_does_not_exist_is_named() -> None:
    assert error_of(actor("a", module='module = "nope_pkg.deep:Thing"\n')) == (
        f"{SRC}: actors.a.module = 'nope_pkg.deep:Thing': no module named 'nope_pkg.deep' (is the package installed?)"
    )


def test_module_without_the_class_is_named() -> None:
    assert error_of(actor("a", module='module = "hexbus.config:Nope"\n')) == (
        f"{SRC}: actors.a.module = 'hexbus.config:Nope': module 'hexbus.config' defines no class 'Nope'"
    )


@pytest.mark.parametrize("target", ["nomodule", "pkg.mod:", ":Class", "pkg.mod:Not-A-Name", ""])
def test_module_without_package_colon_class_syntax_says_how_to_write_it(target: str) -> None:
    assert error_of(actor("a", module=f'module = "{target}"\n')) == (
        f"{SRC}: actors.a.module = {target!r}: write it as 'package.module:ClassName'"
    )


def test_dependency_on_an_unknown_actor_names_it() -> None:
    assert error_of(actor("a", 'depends_on = ["ghost"]\n')) == (
        f"{SRC}: actors.a.depends_on names 'ghost', which is not an actor here"
    )


def test_dependency_cycle_shows_the_cycle() -> None:
    message = error_of(actor("a", 'depends_on = ["b"]\n') + actor("b", 'depends_on = ["a"]\n'))
    assert message == f"{SRC}: actors.a.depends_on makes a cycle: a -> b -> a"


def test_longer_dependency_cycle_shows_every_actor_in_it() -> None:
    message = error_of(
        actor("top", 'depends_on = ["a"]\n')
        + actor("a", 'depends_on = ["b"]\n')
        + actor("b", 'depends_on = ["c"]\n')
        + actor("c", 'depends_on = ["a"]\n')
    )
    assert message.endswith("makes a cycle: a -> b -> c -> a"), message


def test_actor_depending_on_itself_is_a_cycle() -> None:
    assert (
        error_of(actor("a", 'depends_on = ["a"]\n'))
        == f"{SRC}: actors.a.depends_on makes a cycle: a -> a"
    )


def test_dependency_on_a_disabled_actor_is_refused() -> None:
    message = error_of(actor("a", 'depends_on = ["b"]\n') + actor("b", "enabled = false\n"))
    assert message == f"{SRC}: actors.a depends on 'b', which is disabled"


@pytest.mark.parametrize("name", ["broker", "supervisor", "hexbus"])
def test_reserved_actor_names_are_refused(name: str) -> None:
    assert (
        error_of(actor(name))
        == f"{SRC}: actors.{name}: the name {name!r} is reserved; pick another"
    )


@pytest.mark.parametrize("name", ["Echo", "1echo", "_echo", "e" * 33, '"a.b"', '"a b"'])
def test_invalid_actor_names_are_refused(name: str) -> None:
    message = error_of(actor(name))
    assert "must be lowercase letters, digits, '_' or '-' (max 32)" in message
    assert repr(name.strip('"')) in message


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_tcp_on_a_non_loopback_host_without_curve_dir_is_refused(host: str) -> None:
    assert error_of(f'[bus]\ntransport = "tcp"\nhost = "{host}"\n') == (
        f'{SRC}: bus.transport = "tcp" needs CURVE ({host!r} is not loopback) and bus.curve_dir '
        'is empty: run `hexbus keys DIR` and set bus.curve_dir, or use transport = "ipc"'
    )


def test_negative_max_restarts_is_refused() -> None:
    assert (
        error_of(actor("a", "max_restarts = -1\n"))
        == f"{SRC}: actors.a.max_restarts must be 0 or more, got -1"
    )


def test_zero_heartbeat_timeout_is_refused() -> None:
    assert error_of(actor("a", "heartbeat_timeout_s = 0\n")) == (
        f"{SRC}: actors.a.heartbeat_timeout_s must be greater than 0, got 0.0"
    )


@pytest.mark.parametrize(
    "key",
    [
        "restart_period_s",
        "backoff_initial_s",
        "backoff_max_s",
        "stop_grace_s",
        "snapshot_every",
        "snapshot_interval_s",
    ],
)
def test_non_positive_actor_timings_are_refused(key: str) -> None:
    assert f"actors.a.{key} must be greater than 0" in error_of(actor("a", f"{key} = -1\n"))


@pytest.mark.parametrize("text", ["[actors.a\n", "a = \n", 'a = "unterminated\n', "a = 1\na = 2\n"])
def test_invalid_toml_is_one_line(text: str) -> None:
    assert error_of(text).startswith(f"{SRC}: not valid TOML: ")


@pytest.mark.parametrize(
    "text",
    [
        '"bo\\ngus" = 1\n',
        actor("a", '"bo\\ngus" = 1\n'),
        '[actors."x\\ny"]\n' + ECHO + 'max_restarts = "s"\n',
        actor("x", 'env = {"K\\nEY" = 1}\n'),
        actor("a", 'depends_on = ["z\\nz"]\n'),
        '[actors."x\\ny"]\n' + ECHO,
    ],
    ids=[
        "top-level-key",
        "actor-key",
        "actor-name-type-error",
        "env-key",
        "dependency",
        "actor-name",
    ],
)
def test_keys_with_newlines_still_give_one_line(text: str) -> None:
    error_of(text)  # asserts one line


def test_the_source_name_starts_every_message() -> None:
    assert error_of("bogus = 1\n", "/etc/hex/other.toml").startswith("/etc/hex/other.toml: ")


# -- start order ----------------------------------------------------------------------------


def test_start_order_respects_dependencies_and_skips_disabled_actors() -> None:
    config = parse(
        actor("web", 'depends_on = ["brain", "memory"]\n')
        + actor("brain", 'depends_on = ["memory"]\n')
        + actor("memory")
        + actor("lonely")
        + actor("off", "enabled = false\n")
        + actor("off2", 'enabled = false\ndepends_on = ["off"]\n'),
        SRC,
    )
    order = start_order(config)
    assert sorted(order) == ["brain", "lonely", "memory", "web"]
    for name in order:
        for dep in config.actors[name].depends_on:
            assert order.index(dep) < order.index(name), (dep, name, order)


def test_start_order_keeps_the_file_order_of_independent_actors() -> None:
    config = parse(actor("c") + actor("a") + actor("b"), SRC)
    assert start_order(config) == ["c", "a", "b"]


# -- the command line: `hexbus run` refuses before starting anything ----------------------------


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))  # ipc paths must stay short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hexbus_run(config: Path, run_dir: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "hexbus.cli",
            "run",
            str(config),
            "--run-dir",
            str(run_dir),
            "--data-dir",
            str(data_dir),
        ],
        timeout=60,
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def processes_mentioning(*paths: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["pid"] != os.getpid() and any(str(p) in cmdline for p in paths):
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found


@pytest.mark.process
@pytest.mark.parametrize(
    ("text", "key"),
    [
        (actor("echo", "bogus = 1\n"), "actors.echo.bogus"),
        ('[bus]\nport = "x"\n', "bus.port"),
        ('[actors.echo]\nrestart = "permanent"\n', "actors.echo.module"),
        (actor("echo", module='module = "actors.diag.actor:Nope"\n'), "actors.echo.module"),
        (actor("a", 'depends_on = ["b"]\n') + actor("b", 'depends_on = ["a"]\n'), "a -> b -> a"),
        ('[bus]\ntransport = "tcp"\nhost = "0.0.0.0"\n', "bus.curve_dir"),
        ("[actors.echo\n", "not valid TOML"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "missing-module",
        "missing-class",
        "cycle",
        "insecure-bind",
        "bad-toml",
    ],
)
def test_bad_config_exits_2_with_one_line_before_starting_anything(
    tmp_path: Path, run_dir: Path, text: str, key: str
) -> None:
    config = tmp_path / "supervisor.toml"
    config.write_text(text)
    data_dir = tmp_path / "data"
    result = hexbus_run(config, run_dir, data_dir)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"hexbus: {config.resolve()}: "), lines[0]
    assert key in lines[0], lines[0]
    assert result.stdout == ""
    assert not data_dir.exists()  # no journal, no snapshots
    assert list(run_dir.iterdir()) == []  # no sockets, no lock, no endpoints.json
    assert processes_mentioning(config, run_dir) == []


@pytest.mark.process
def test_missing_config_file_exits_2_saying_no_such_file(tmp_path: Path, run_dir: Path) -> None:
    config = tmp_path / "absent.toml"
    result = hexbus_run(config, run_dir, tmp_path / "data")
    assert result.returncode == 2, result
    assert (
        result.stderr
        == f"hexbus: {config.resolve()}: no such file: pass the path of your supervisor.toml\n"
    )
    assert not (tmp_path / "data").exists()
    assert list(run_dir.iterdir()) == []


@pytest.mark.parametrize("mb", [0, -1, 1025])
def test_blob_limit_out_of_range_is_one_line_with_its_range(mb: int) -> None:
    assert error_of(f"[bus]\nmax_blob_mb = {mb}\n") == (
        f"{SRC}: bus.max_blob_mb must be between 1 and 1024 (MiB per event's blob; the broker "
        f"holds a few at once), got {mb}"
    )


def test_a_remote_host_needs_tcp_and_the_brokers_own_address() -> None:
    with pytest.raises(ConfigError, match=r"bus.remote = true needs transport = \"tcp\""):
        parse("[bus]\nremote = true\n", source="gpu.toml")
    with pytest.raises(ConfigError, match="the broker's address"):
        parse(
            '[bus]\nremote = true\ntransport = "tcp"\nhost = "0.0.0.0"\ncurve_dir = "/k"\n',
            source="gpu.toml",
        )
    config = parse(
        '[bus]\nremote = true\ntransport = "tcp"\nhost = "10.0.0.1"\ncurve_dir = "/k"\n',
        source="gpu.toml",
    )
    assert config.bus.remote and config.bus.host == "10.0.0.1"
