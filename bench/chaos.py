"""Chaos soak: the default deployment, people chatting, and faults thrown at it; then the books.

A Hex runs the actors of the repository's supervisor.toml with their settings (brain on the
packaged model, memory on its real embedder, discord_io against the Discord-compatible server
on loopback in this process, echo; stt and tts too unless ``--no-voice``), with its data
folder on a tmpfs mounted here (root only; without it the disk-full episodes are skipped and
the JSON says why). Scripted people talk to it the way people do: two on the console (the
events ``hexbus chat`` publishes) and three on Discord (two in a channel Hex answers, one in
a DM), each sending one to three lines in a row, waiting for the answer (or giving up after a
while) and pausing before the next. Every line carries a tag of its own so it can be found in
the stores.

After an idle stretch (the baseline for acknowledgement latency) a chaos driver, seeded,
throws one fault every few seconds until the end: SIGKILL of a random process of Hex (the
broker or any actor the supervisor started), a disk-full episode (the data folder filled to
the last byte for a few seconds), a stalled subscriber (SIGSTOP of an actor for a few
seconds, under its heartbeat timeout), and a flood of the volatile bus (1 MiB frames as fast
as one publisher can send them, to a subscriber that never reads).

Then the people stop, Hex gets time to catch up, and the invariant checker (bench/_chaos_check.py)
reads the journal, the fake Discord and, after a clean stop, memory's DuckDB file:

- ``messages``: chat messages Hex accepted (journaled), ``answered_once`` of them with exactly
  one final reply (complete, failed, or merged into a later line's reply), ``lost`` those with
  none, ``duplicated`` those with more than one (or shown twice on Discord);
- ``memory_lost`` / ``memory_duplicated``: accepted messages and complete replies without
  their turn in memory, and lines stored more than once;
- ``failed_actors``: actors not live at the end;
- ``ack_p99_chaos_over_idle``: the responder's ``chat.ack`` latency p99 (a line sent to its
  acknowledgement: by echo once a console line is journaled, by discord_io as a Discord
  message arrives) while faults fly, over the idle p99 measured in the same run. Lines whose
  wait overlaps a fault of their own path (the broker or their acknowledger killed, until it
  is live again, or stalled; for console lines a disk-full episode, during which nothing can
  be journaled) are left out of it and counted (``acks_excused``).

Run: ``python bench/chaos.py`` (20 minutes) or ``--minutes 2``. Prints JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncio
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from bench._chaos_check import Books, check
from bench._common import emit, parser, percentile, progress, run_async
from hexbus.bus import BusClient
from schemas import ChatAck, ChatMessage, ProbeVolatile
from tests.support.fakediscord import FakeDiscord
from tests.support.harness import REPO, Hex, actor_toml

ACK_TIMEOUT_S = 30.0  # a console person gives up waiting for an answer after this
DISCORD_WAIT_S = 30.0
SETTLE_S = 180.0  # after the chaos, for Hex to answer what is still waiting
FAULT_EVERY_S = (4.0, 9.0)  # between two faults, chosen at random
STALL_S = 4.0  # under every actor's heartbeat timeout: a stall, not a hang
DISK_FULL_S = 6.0
FLOOD_S = 5.0

LINES = [
    "hey, are you around?",
    "so i finally finished that book you told me about",
    "what should i cook tonight, i have rice and some eggs",
    "ugh my train is late again",
    "can you remind me what we talked about yesterday",
    "i think i'm going to learn the guitar",
    "wait no",
    "actually make it the piano",
    "do you like rainy days?",
    "my sister's birthday is on friday, any gift ideas",
    "lol",
    "ok one more question",
    "what's a good name for a cat",
    "i'm kinda tired today",
    "tell me something nice",
    "brb",
    "back. where were we",
    "i passed the exam!!",
]


def deployment(fake: FakeDiscord, channel: int, voice: bool) -> str:
    """supervisor.toml's actors with their own settings, discord_io pointed at the fake."""
    default = tomllib.loads((REPO / "supervisor.toml").read_text())
    text = ""
    for name, table in default["actors"].items():
        if name in ("stt", "tts") and not voice:
            continue
        settings = {k: v for k, v in table.items() if k not in ("config", "env")}
        config = dict(table.get("config", {}))
        if name == "web":
            config["port"] = 0  # any free port: the bench must not need (or take) the usual one
        if name == "discord":
            config.update(
                api_base=fake.api_base,
                gateway_url=fake.gateway_url,
                owners=[str(fake.owner_id)],
                channels=[str(channel)],
            )
        text += actor_toml(name, settings.pop("module"), **settings, config=config)
        if name == "discord":
            text += '[actors.discord.env]\nDISCORD_TOKEN = "test-token"\n'
    return text


@contextmanager
def small_disk(data: Path, megabytes: int = 512) -> Iterator[str]:
    """Mount a tmpfs at ``data``; yields "" or why it could not."""
    data.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        yield "" if mounted.returncode == 0 else (mounted.stderr.strip() or "not root")
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(data)], check=False)


def fill(folder: Path) -> Path:
    """Write until the disk is full; the ballast file (delete it to give the space back)."""
    ballast = folder / "ballast"
    chunk = b"\0" * (1 << 20)
    with open(ballast, "wb", buffering=0) as f:
        with suppress(OSError):
            while True:
                f.write(chunk)
        with suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    return ballast


@dataclass
class Faults:
    """What the chaos driver did, when (monotonic seconds)."""

    kills: list[tuple[float, str]] = field(default_factory=list)
    windows: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, what
    disk_full: str = ""  # why the disk-full episodes were skipped, if they were
    floods: int = 0

    def excuses(self, start: float, end: float, path: tuple[str, ...]) -> bool:
        """Whether a wait from start to end overlaps a fault of the line's own path: a process
        it goes through killed (until it is live again) or stalled, or a full disk where the
        ack needs the line journaled first (``disk`` in the path)."""
        for begin, finish, what in self.windows:
            hit = what.partition(":")[2] in path or (what == "disk_full" and "disk" in path)
            if hit and begin <= end and finish >= start - 0.1:
                return True
        return False


@dataclass
class Soak:
    hx: Hex
    fake: FakeDiscord
    channel: int
    rng: random.Random
    books: Books = field(default_factory=Books)
    faults: Faults = field(default_factory=Faults)
    acks: dict[str, float] = field(default_factory=dict)  # message event id -> ack (monotonic)
    chaos_from: float = 0.0
    stop_at: float = 0.0

    # -- people -----------------------------------------------------------------------------

    def line(self, who: str) -> str:
        n = len(self.books.sent) + 1
        return f"{self.rng.choice(LINES)} [{who}-{n}]"

    async def console_person(self, client: BusClient, name: str) -> None:
        channel = f"console:{name}"
        while time.monotonic() < self.stop_at:
            ids = []
            for i in range(self.rng.choice((1, 1, 2, 3))):
                if i:
                    await asyncio.sleep(self.rng.uniform(0.3, 1.2))
                text = self.line(name)
                sent = time.monotonic()
                envelope = await client.publish(
                    ChatMessage(
                        platform="console",
                        person_id=f"console:{name}",
                        display_name=name,
                        channel=channel,
                        text=text,
                        direct=True,
                    ),
                    key="console",
                )
                self.books.sent[text] = ("console", envelope.id, sent)
                ids.append(envelope.id)
            deadline = min(time.monotonic() + ACK_TIMEOUT_S, self.stop_at)
            while time.monotonic() < deadline and not self.books.answered(ids[-1]):
                await asyncio.sleep(0.2)
            await asyncio.sleep(self.rng.uniform(1.0, 4.0))

    async def discord_person(self, user: int, channel: int, name: str) -> None:
        while time.monotonic() < self.stop_at:
            last: dict[str, Any] = {}
            for i in range(self.rng.choice((1, 1, 2, 3))):
                if i:
                    await asyncio.sleep(self.rng.uniform(0.3, 1.2))
                text = self.line(name)
                sent = time.monotonic()
                last = await asyncio.to_thread(self.fake.post, channel, user, text)
                self.books.sent[text] = ("discord", str(last["id"]), sent)
                self.books.discord_channels[str(last["id"])] = channel
            deadline = min(time.monotonic() + DISCORD_WAIT_S, self.stop_at)
            while time.monotonic() < deadline:
                replies = await asyncio.to_thread(self.books.bot_replies, self.fake, channel)
                if str(last["id"]) in replies:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(self.rng.uniform(1.0, 4.0))

    async def listen(self, client: BusClient) -> None:
        async for envelope, _ in client.volatile():
            if isinstance(envelope.body, ChatAck):
                self.acks.setdefault(envelope.body.message_event_id, time.monotonic())

    async def watch_journal(self, client: BusClient) -> None:
        feed = client.durable(["chat.message", "chat.reply"], after=0, wait_ms=200)
        async for envelope, _ in feed:
            if envelope is not None:
                self.books.reply(envelope)

    # -- faults -----------------------------------------------------------------------------

    async def chaos(self, flooder: BusClient) -> None:
        await asyncio.sleep(max(0.0, self.chaos_from - time.monotonic()))
        kinds = ["kill"] * 6 + ["stall"] * 2 + ["flood", "disk_full"]
        while True:
            wait = self.rng.uniform(*FAULT_EVERY_S)
            if time.monotonic() + wait >= self.stop_at:
                return
            await asyncio.sleep(wait)
            kind = self.rng.choice(kinds)
            if kind == "disk_full" and self.faults.disk_full:
                kind = "kill"
            await getattr(self, kind)(flooder) if kind == "flood" else await getattr(self, kind)()

    def processes(self) -> dict[str, int]:
        status = self.hx.status()
        return {
            name: int(info["pid"])
            for name, info in status.items()
            if info.get("state") == "live" and int(info.get("pid") or 0) > 0
        }

    async def kill(self) -> None:
        live = await asyncio.to_thread(self.processes)
        if not live:
            return
        name = self.rng.choice(sorted(live))
        try:
            os.kill(live[name], signal.SIGKILL)
        except ProcessLookupError:
            return
        at = time.monotonic()
        self.faults.kills.append((at, name))
        progress(f"chaos: SIGKILL {name} ({live[name]})")
        deadline = at + 60
        while time.monotonic() < deadline:  # its fault lasts until it is live again
            now = await asyncio.to_thread(self.processes)
            if now.get(name, live[name]) != live[name]:
                break
            await asyncio.sleep(0.2)
        self.faults.windows.append((at, time.monotonic(), f"kill:{name}"))

    async def stall(self) -> None:
        live = await asyncio.to_thread(self.processes)
        live.pop("broker", None)
        if not live:
            return
        name = self.rng.choice(sorted(live))
        start = time.monotonic()
        try:
            os.kill(live[name], signal.SIGSTOP)
        except ProcessLookupError:
            return
        progress(f"chaos: SIGSTOP {name} for {STALL_S:g}s")
        await asyncio.sleep(STALL_S)
        with suppress(ProcessLookupError):
            os.kill(live[name], signal.SIGCONT)
        self.faults.windows.append((start, time.monotonic(), f"stall:{name}"))

    async def disk_full(self) -> None:
        start = time.monotonic()
        ballast = await asyncio.to_thread(fill, self.hx.data_dir)
        progress(f"chaos: disk full for {DISK_FULL_S:g}s")
        await asyncio.sleep(DISK_FULL_S)
        ballast.unlink()
        self.faults.windows.append((start, time.monotonic(), "disk_full"))

    async def flood(self, flooder: BusClient) -> None:
        start = time.monotonic()
        blob = os.urandom(1 << 20)
        progress(f"chaos: flooding the volatile bus for {FLOOD_S:g}s")
        n = 0
        while time.monotonic() - start < FLOOD_S:
            flooder.publish_volatile(ProbeVolatile(n=n, note="flood"), key="flood", blob=blob)
            n += 1
            await asyncio.sleep(0.002)
        self.faults.floods += 1
        self.faults.windows.append((start, time.monotonic(), "flood"))

    # -- the run ----------------------------------------------------------------------------

    async def run(self, seconds: float, idle_s: float) -> None:
        hx = self.hx
        people = BusClient(hx.endpoints, "chaos-people")
        people.start()
        people.subscribe("chat.ack")
        flooder = BusClient(hx.endpoints, "chaos-flood")
        stalled = BusClient(hx.endpoints, "chaos-stalled")  # subscribes and never reads
        stalled.subscribe("probe.volatile.flood")
        readers = [
            asyncio.ensure_future(self.listen(people)),
            asyncio.ensure_future(self.watch_journal(people)),
        ]
        await asyncio.sleep(0.5)
        now = time.monotonic()
        self.chaos_from, self.stop_at = now + idle_s, now + seconds
        users = [self.fake.add_user(n) for n in ("ana", "ben", "cleo")]
        tasks = [
            self.console_person(people, "dana"),
            self.console_person(people, "eli"),
            self.discord_person(users[0], self.channel, "ana"),
            self.discord_person(users[1], self.channel, "ben"),
            self.discord_person(users[2], self.fake.dm_channel(users[2]), "cleo"),
            self.chaos(flooder),
        ]
        try:
            await asyncio.gather(*tasks)
            progress(f"people done: {len(self.books.sent)} lines; settling")
            deadline = time.monotonic() + SETTLE_S
            waiting = -1
            while time.monotonic() < deadline:
                states = await asyncio.to_thread(hx.status)
                unanswered = [
                    i for _, i, _ in self.books.sent.values() if not self.books.settled(i)
                ]
                live = states and all(s.get("state") == "live" for s in states.values())
                if live and not unanswered:
                    progress("settled")
                    break
                if len(unanswered) != waiting:
                    waiting = len(unanswered)
                    progress(f"waiting for {waiting} answers")
                await asyncio.sleep(1.0)
            await asyncio.sleep(2.0)  # the last replies reach Discord and memory
        finally:
            for reader in readers:
                reader.cancel()
            for client in (people, flooder, stalled):
                await client.close()

    def ack_latencies(self) -> tuple[list[float], list[float], int]:
        """Idle and chaos ack latencies (line sent -> the responder's chat.ack); and how many
        were excused."""
        idle: list[float] = []
        chaos: list[float] = []
        excused = 0
        for platform, ref, sent in self.books.sent.values():
            ids = self.books.events_of.get(ref, {ref})
            acked = min((self.acks[i] for i in ids if i in self.acks), default=None)
            # Who acknowledges: echo once the line is journaled (console), discord_io as the
            # message arrives from the gateway (Discord), both through the broker.
            path = ("broker", "discord") if platform == "discord" else ("broker", "echo", "disk")
            end = acked if acked is not None else sent + ACK_TIMEOUT_S
            if sent < self.chaos_from:
                if acked is not None:
                    idle.append(acked - sent)
            elif self.faults.excuses(sent, end, path):
                excused += 1
            elif acked is not None:
                chaos.append(acked - sent)
            else:
                chaos.append(ACK_TIMEOUT_S)  # never acknowledged, with nothing to excuse it
        return idle, chaos, excused


def soak(
    minutes: float, *, voice: bool = True, seed: int = 13, keep: Path | None = None
) -> dict[str, Any]:
    """Run the soak; ``keep``: a folder to copy Hex's log into."""
    root = Path(tempfile.mkdtemp(prefix="hxc", dir="/tmp"))
    shutil.copy(REPO / "persona.toml", root / "persona.toml")
    fake = FakeDiscord().start()
    hx: Hex | None = None
    try:
        channel = fake.add_channel("hangout")
        config = deployment(fake, channel, voice)
        hx = Hex(config, root=root)
        with small_disk(hx.data_dir) as why_not:
            progress("starting the default deployment")
            hx.start()
            soak = Soak(hx, fake, channel, random.Random(seed))
            soak.faults.disk_full = why_not
            seconds = minutes * 60
            idle_s = max(20.0, seconds * 0.2)
            run_async(soak.run(seconds, idle_s))
            status = hx.status()
            failed = sorted(n for n, s in status.items() if s.get("state") != "live")
            progress("reading the journal")
            journal = soak.books.read_journal(hx)
            progress(f"{len(journal)} events read; stopping Hex")
            hx.stop()
            memory = hx.data_dir / "actors" / "memory" / "memory.duckdb"
            progress("checking the books")
            books = check(soak.books, journal, fake, memory)
        idle, chaos, excused = soak.ack_latencies()
        idle_p99, chaos_p99 = percentile(idle, 99), percentile(chaos, 99)
        return {
            "minutes": minutes,
            "kills": len(soak.faults.kills),
            "killed": sorted({n for _, n in soak.faults.kills}),
            "stalls": sum(1 for w in soak.faults.windows if w[2].startswith("stall")),
            "disk_full_episodes": sum(1 for w in soak.faults.windows if w[2] == "disk_full"),
            "disk_full_skipped": soak.faults.disk_full,
            "floods": soak.faults.floods,
            **books,
            "failed_actors": failed,
            "ack_idle_p99_s": round(idle_p99, 3),
            "ack_chaos_p99_s": round(chaos_p99, 3),
            "ack_p99_chaos_over_idle": round(chaos_p99 / idle_p99, 2) if idle and chaos else None,
            "acks_idle": len(idle),
            "acks_chaos": len(chaos),
            "acks_excused": excused,
            "seed": seed,
        }
    finally:
        if hx is not None:
            hx.stop()
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(hx.log_path, keep / "hex.log")
        fake.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--no-voice", action="store_true", help="leave stt and tts out")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--keep", type=Path, help="a folder to copy Hex's log into")
    args = p.parse_args()
    minutes = 2.0 if args.quick else args.minutes
    emit(soak(minutes, voice=not args.no_voice, seed=args.seed, keep=args.keep))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
