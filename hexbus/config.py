"""Typed configuration: supervisor.toml into msgspec Structs, with one-line errors.

Every problem is a :class:`ConfigError` whose message names the file and the
key and says what to do; ``hexbus run`` prints it and exits with code 2 before
anything starts.
"""

from __future__ import annotations

import ast
import importlib.util
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from schemas.delivery import privileged

ACTOR_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
ORIGIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # as hexbus.keys.HOST_NAME


class ConfigError(Exception):
    """A configuration problem a person can fix; the message is one line."""

    def __init__(self, message: str) -> None:
        # Keys can hold newlines or control characters; the message must stay one line.
        super().__init__(
            "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message)
        )


class JournalConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    segment_mb: int = 64
    fsync: Literal["always", "batch", "never"] = "batch"
    fsync_every: int = 1000
    fsync_interval_ms: int = 50
    retention_mb: int = 1024
    retention_hours: float = 168.0
    # Past retention_mb/hours, segments a durable subscriber has not applied stay, up to this
    # hard cap (0: four times retention_mb); past it they go and the subscriber is told.
    retention_cap_mb: int = 0
    retention_check_s: float = 60.0
    cache_mb: int = 32
    # Blobs of at least this many KiB (speech, documents) are kept in files beside the journal
    # with a budget of their own, so hours of audio never push chat out (0: in the records).
    blob_file_kb: int = 64
    blob_retention_mb: int = 1024
    blob_retention_cap_mb: int = 0  # 0: four times blob_retention_mb

    @property
    def cap_mb(self) -> int:
        return self.retention_cap_mb or 4 * self.retention_mb

    @property
    def blob_cap_mb(self) -> int:
        return self.blob_retention_cap_mb or 4 * self.blob_retention_mb


MAX_BLOB_MB = 1024


class BusConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    transport: Literal["ipc", "tcp"] = "ipc"
    host: str = "127.0.0.1"
    port: int = (
        7600  # tcp: port .. port+5 (volatile in, volatile out, ingest, replay, large out, large in)
    )
    curve_dir: str = ""  # keys made by `hexbus keys`; required for tcp, loopback included
    # Hosts (key names from `hexbus keys add-host`) whose control, memory, chat and persona
    # requests are honoured; "local" is this host. Others may publish the rest (speech, audio).
    privileged_origins: tuple[str, ...] = ("local",)
    # One privileged family at a time for other hosts: {gpu1 = ["chat.message"]} lets stt there
    # turn speech into a person's message (with the person id the audio came with).
    origin_grants: dict[str, tuple[str, ...]] = {}
    # This host runs actors only: the broker is at host:port, run by another host's supervisor
    # (tcp with this host's keys: the folder `hexbus keys add-host` exported for it).
    remote: bool = False
    volatile_hwm: int = 1000
    # Frames whose blob is at least blob_lane_bytes travel on a second XPUB whose queue per
    # subscriber is blob_hwm frames, so a stalled subscriber of 1 MB video frames pins
    # megabytes in the broker, not gigabytes.
    blob_lane_bytes: int = 65536
    blob_hwm: int = 16
    max_blob_mb: int = (
        16  # one limit: the broker refuses, producers check and subscribers decode by it
    )
    heartbeat_interval_s: float = 0.5
    outbox_events: int = 10_000
    journal: JournalConfig = JournalConfig()


class ActorSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    module: str  # "package.module:ClassName"
    enabled: bool = True
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    max_restarts: int = 5
    restart_period_s: float = 60.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 5.0
    heartbeat_timeout_s: float = 5.0
    # Hung though its heartbeat ticks: the actor's oldest accepted-but-unfinished work (a pending
    # message, an utterance, an event being applied) is older than this. 0: never checked.
    work_timeout_s: float = 0.0
    stop_grace_s: float = 5.0
    memory_limit_mb: int = 0  # RSS limit; 0 means none
    gpu_memory_limit_mb: int = 0  # per-process GPU memory via NVML; 0 means none
    depends_on: list[str] = []
    env: dict[str, str] = {}
    # Variables of the supervisor's environment this actor gets besides the plain ones and
    # those its config names (actors/supervisor/environment.py); every other one stays out.
    pass_env: list[str] = []
    snapshot_every: int = 1000
    snapshot_interval_s: float = 5.0
    # A durable event whose handler raises this many times in a row, or that the process dies
    # handling this many times, goes to sys.deadletter.<actor> and the actor goes on without it.
    dead_letter_after: int = 3
    retry_backoff_s: float = 0.1  # before the first retry of a raising handler; doubles each time
    config: dict[str, Any] = {}


class BrokerSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_restarts: int = 20
    restart_period_s: float = 60.0
    backoff_initial_s: float = 0.02
    backoff_max_s: float = 2.0
    heartbeat_timeout_s: float = 5.0
    stop_grace_s: float = 5.0
    memory_limit_mb: int = 0


class SupervisorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    run_dir: str = ""  # empty: $XDG_RUNTIME_DIR/hexbus or /tmp/hexbus-<uid>
    data_dir: str = ".hex/data"  # relative to the config file's folder
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    status_interval_s: float = 1.0
    broker: BrokerSpec = BrokerSpec()


class HexConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    supervisor: SupervisorConfig = SupervisorConfig()
    bus: BusConfig = BusConfig()
    actors: dict[str, ActorSpec] = {}


class _RawConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Actors are converted one by one so an error can name the actor (msgspec paths hide dict keys).
    supervisor: SupervisorConfig = SupervisorConfig()
    bus: BusConfig = BusConfig()
    actors: dict[str, Any] = {}


def default_run_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return Path(base) / "hexbus"
    return Path(f"/tmp/hexbus-{os.getuid()}")


def _humanize(exc: msgspec.ValidationError, prefix: str = "", raw: Any = None) -> str:
    text = str(exc)
    match = re.match(r"^(.*?)(?: - at `\$(.*)`)?$", text, re.S)
    message, path = (match.group(1), match.group(2) or "") if match else (text, "")
    key = path.lstrip(".")
    if key.endswith("env[...]") and isinstance(raw, dict):
        env = raw.get("env")
        bad = [k for k, v in env.items() if not isinstance(v, str)] if isinstance(env, dict) else []
        key = key.removesuffix("[...]") + (f".{bad[0]}" if bad else "")
    key = re.sub(r"\[(\d+)\]", r"[\1]", key)
    key = ".".join(p for p in (prefix, key) if p)
    unknown = re.match(r"Object contains unknown field `(.+)`", message, re.S)
    if unknown:
        full = f"{key}.{unknown.group(1)}" if key else unknown.group(1)
        return f"unknown key {full!r}: remove it or fix its spelling"
    missing = re.match(r"Object missing required field `(.+)`", message, re.S)
    if missing:
        full = f"{key}.{missing.group(1)}" if key else missing.group(1)
        return f"missing key {full!r}: add it"
    message = message.replace("`", "")
    return f"{key or 'top level'}: {message[0].lower() + message[1:]}" if message else key


def parse(text: str, source: str = "supervisor.toml") -> HexConfig:
    """Parse and validate TOML text; raise :class:`ConfigError` with a one-line message."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        top = msgspec.convert(raw, _RawConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_humanize(exc)}") from None
    actors: dict[str, ActorSpec] = {}
    for name, table in top.actors.items():
        try:
            actors[name] = msgspec.convert(table, ActorSpec, strict=True)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: {_humanize(exc, f'actors.{name}', table)}") from None
    config = HexConfig(supervisor=top.supervisor, bus=top.bus, actors=actors)
    validate(config, source)
    return config


def load(path: Path) -> HexConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file: pass the path of your supervisor.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    return parse(text, str(path))


def _positive(source: str, key: str, value: float, minimum: float = 0) -> None:
    if value <= minimum:
        floor = "0 or more" if minimum < 0 else f"greater than {minimum:g}"
        raise ConfigError(f"{source}: {key} must be {floor}, got {value}")


def validate(config: HexConfig, source: str) -> None:
    """Checks beyond types: names, modules, dependencies, limits, security."""
    bus = config.bus
    _positive(source, "bus.heartbeat_interval_s", bus.heartbeat_interval_s)
    _positive(source, "bus.outbox_events", bus.outbox_events)
    _positive(source, "bus.volatile_hwm", bus.volatile_hwm)
    _positive(source, "bus.journal.segment_mb", bus.journal.segment_mb)
    _positive(source, "bus.journal.retention_check_s", bus.journal.retention_check_s)
    journal = bus.journal
    _positive(source, "bus.journal.retention_cap_mb", journal.retention_cap_mb, minimum=-1)
    if journal.retention_cap_mb and journal.retention_cap_mb < journal.retention_mb:
        raise ConfigError(
            f"{source}: bus.journal.retention_cap_mb ({journal.retention_cap_mb}) is below "
            f"retention_mb ({journal.retention_mb}); raise it, or 0 for four times retention_mb"
        )
    _positive(source, "bus.journal.blob_file_kb", journal.blob_file_kb, minimum=-1)
    _positive(source, "bus.journal.blob_retention_mb", journal.blob_retention_mb)
    _positive(
        source, "bus.journal.blob_retention_cap_mb", journal.blob_retention_cap_mb, minimum=-1
    )
    if journal.blob_retention_cap_mb and journal.blob_retention_cap_mb < journal.blob_retention_mb:
        raise ConfigError(
            f"{source}: bus.journal.blob_retention_cap_mb ({journal.blob_retention_cap_mb}) is "
            f"below blob_retention_mb ({journal.blob_retention_mb}); raise it, or 0 for four "
            "times blob_retention_mb"
        )
    _positive(source, "bus.blob_hwm", bus.blob_hwm)
    if not 1 <= bus.max_blob_mb <= MAX_BLOB_MB:
        raise ConfigError(
            f"{source}: bus.max_blob_mb must be between 1 and {MAX_BLOB_MB} (MiB per event's "
            f"blob; the broker holds a few at once), got {bus.max_blob_mb}"
        )
    if not 1 <= bus.port <= 65530:
        raise ConfigError(
            f"{source}: bus.port must be between 1 and 65530 (it uses port .. port+5), got {bus.port}"
        )
    for origin, families in bus.origin_grants.items():
        for family in families:
            if not privileged(family):
                raise ConfigError(
                    f"{source}: bus.origin_grants.{origin}: {family!r} is not a privileged "
                    "family (schemas.PRIVILEGED); every host may publish it already"
                )
    for origin in (*bus.privileged_origins, *bus.origin_grants):
        if not ORIGIN_NAME.match(origin):
            raise ConfigError(
                f"{source}: bus.privileged_origins / origin_grants: {origin!r} is not a host name "
                "(lowercase letters, digits, '_' or '-', as `hexbus keys add-host` names them)"
            )
    if bus.remote and (bus.transport != "tcp" or bus.host in ("0.0.0.0", "::")):
        raise ConfigError(
            f'{source}: bus.remote = true needs transport = "tcp" and bus.host set to the '
            f"broker's address (got {bus.transport}, {bus.host!r})"
        )
    if bus.transport == "tcp" and not bus.curve_dir:
        where = (
            "loopback too: any local user could connect"
            if is_loopback(bus.host)
            else (f"{bus.host!r} is not loopback")
        )
        raise ConfigError(
            f'{source}: bus.transport = "tcp" needs CURVE ({where}) and bus.curve_dir is '
            'empty: run `hexbus keys DIR` and set bus.curve_dir, or use transport = "ipc"'
        )
    names = set(config.actors)
    for name, spec in config.actors.items():
        where = f"actors.{name}"
        if not ACTOR_NAME.match(name):
            raise ConfigError(
                f"{source}: actor name {name!r} must be lowercase letters, digits, '_' or '-' (max 32)"
            )
        if name in ("broker", "supervisor", "hexbus"):
            raise ConfigError(f"{source}: {where}: the name {name!r} is reserved; pick another")
        check_module(spec.module, f"{source}: {where}.module")
        for dep in spec.depends_on:
            if dep not in names:
                raise ConfigError(
                    f"{source}: {where}.depends_on names {dep!r}, which is not an actor here"
                )
        _positive(source, f"{where}.max_restarts", spec.max_restarts, minimum=-1)
        for key, value in (
            ("restart_period_s", spec.restart_period_s),
            ("backoff_initial_s", spec.backoff_initial_s),
            ("backoff_max_s", spec.backoff_max_s),
            ("heartbeat_timeout_s", spec.heartbeat_timeout_s),
            ("stop_grace_s", spec.stop_grace_s),
            ("snapshot_every", spec.snapshot_every),
            ("snapshot_interval_s", spec.snapshot_interval_s),
            ("dead_letter_after", spec.dead_letter_after),
        ):
            _positive(source, f"{where}.{key}", value)
        if spec.work_timeout_s < 0:
            raise ConfigError(
                f"{source}: {where}.work_timeout_s must be 0 (off) or more, got {spec.work_timeout_s}"
            )
        if spec.retry_backoff_s < 0:
            raise ConfigError(
                f"{source}: {where}.retry_backoff_s must be 0 or more, got {spec.retry_backoff_s}"
            )
    start_order(config, source)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_python(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse``, asked again when CPython 3.11 raises its spurious ``SystemError: AST
    constructor recursion depth mismatch`` (python/cpython#106905; seen in a test worker whose
    other threads were running, on a module that parses every other time)."""
    for _ in range(2):
        try:
            return ast.parse(source, filename=filename)
        except SystemError:
            continue
    return ast.parse(source, filename=filename)


def check_module(target: str, where: str) -> None:
    """Check that ``pkg.mod:Class`` names an importable module defining that class, without importing it."""
    module, sep, cls = target.partition(":")
    if not sep or not module or not cls.isidentifier():
        raise ConfigError(f"{where} = {target!r}: write it as 'package.module:ClassName'")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ConfigError(
            f"{where} = {target!r}: no module named {module!r} (is the package installed?)"
        )
    if spec.origin and spec.origin.endswith(".py"):
        try:
            tree = parse_python(Path(spec.origin).read_text(encoding="utf-8"))
        except (OSError, SyntaxError) as exc:
            raise ConfigError(f"{where} = {target!r}: cannot read {spec.origin}: {exc}") from None
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        imported = {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
            for a in n.names
        }
        if cls not in defined | imported:
            raise ConfigError(f"{where} = {target!r}: module {module!r} defines no class {cls!r}")


def start_order(config: HexConfig, source: str = "supervisor.toml") -> list[str]:
    """Enabled actors in dependency order; a cycle or a dependency on a disabled actor is an error."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ConfigError(f"{source}: actors.{name}.depends_on makes a cycle: {cycle}")
        state[name] = 1
        for dep in config.actors[name].depends_on:
            if not config.actors[dep].enabled:
                raise ConfigError(f"{source}: actors.{name} depends on {dep!r}, which is disabled")
            visit(dep, (*path, name))
        state[name] = 2
        order.append(name)

    for name, spec in config.actors.items():
        if spec.enabled:
            visit(name, ())
    return order
