"""The memory actor's contradictions, summaries, crash safety, and profiles in query answers.

Through the supervisor, with real DuckDB, the packaged embedding model, real files and real
sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import pytest

from hexbus.ask import ask
from hexbus.bus import BusClient
from schemas import (
    KnownPerson,
    MemoryAdd,
    MemoryChanged,
    MemoryQuery,
    MemoryResult,
    ProfileUpdate,
    ReplyMeta,
)
from tests.support.brain import brain_toml
from tests.support.harness import FAST_BUS, Hex, HexFactory, actor_toml, poll_for
from tests.support.memory import add, memory_config, search
from tests.support.memory_process import export, journal_files, start

pytestmark = [pytest.mark.process, pytest.mark.slow]


def changes_so_far(hx: Hex) -> list[MemoryChanged]:
    """Every ``memory.changed`` in the journal, read until the feed has caught up with its head
    (not for a fixed second: a loaded machine may not even connect in that time)."""

    async def read() -> list[MemoryChanged]:
        client = BusClient(hx.endpoints, "watcher")
        client.start()
        feed = client.durable(["memory.changed"], after=0, wait_ms=200)
        seen: list[MemoryChanged] = []
        try:
            async with asyncio.timeout(30):
                async for envelope, _ in feed:
                    if envelope is not None and isinstance(envelope.body, MemoryChanged):
                        seen.append(envelope.body)
                    if feed.live:
                        return seen
        finally:
            await client.close()
        return seen

    return asyncio.run(read())


# -- contradictions and summaries -------------------------------------------------------------


def test_a_newer_contradicting_fact_supersedes_the_older_and_the_pair_is_kept(
    hex_factory: HexFactory,
) -> None:
    judge = actor_toml("judge", "tests.actors.memory.peers:ScriptedJudge")
    hx = start(hex_factory, extra=judge, hygiene_interval_s=0.2)
    porto = add(hx, "Maya lives in Porto", person_id="maya")
    bridges = add(hx, "Maya loves the bridges of Porto", person_id="maya")
    lisbon = add(hx, "Maya lives in Lisbon", person_id="maya")

    def superseded() -> list[MemoryChanged]:
        return [c for c in changes_so_far(hx) if c.action == "superseded"]

    reports = poll_for(
        lambda: superseded() or None, 30, interval=0.5, what="the contradiction to be judged"
    )
    assert [r.ids for r in reports] == [(porto, lisbon)]
    assert "Porto" in reports[0].detail and "Lisbon" in reports[0].detail
    hits = [h.id for h in search(hx, "where does Maya live?", person_id="maya", k=10)]
    assert lisbon in hits and porto not in hits and bridges in hits
    rows = {r["id"]: r for r in export(hx)}
    assert rows[porto]["superseded_by"] == lisbon and rows[bridges]["superseded_by"] == ""
    assert all(r["checked"] for r in rows.values())
    review = hx.cli("memory", "review")
    assert review.returncode == 0
    assert (
        review.stdout.strip()
        == f"superseded  {porto} 'Maya lives in Porto' -> {lisbon} 'Maya lives in Lisbon'"
    )


def test_old_turns_are_summarised_by_the_brains_model_with_their_turns_as_provenance(
    hex_factory: HexFactory, tmp_path: Path
) -> None:
    home = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    config = brain_toml(home) + memory_config(
        recent_turns=4, summary_batch=8, hygiene_interval_s=0.3
    ).replace(FAST_BUS, "")
    hx = hex_factory(config, root=home).start()
    history = tmp_path / "camping.jsonl"
    texts = [
        ("Sam", "we are going camping at Lake Tahoe next weekend"),
        ("Hex", "Fun! Who is going?"),
        ("Sam", "me, my brother Leo and our dog Pepper"),
        ("Hex", "Pepper will love it."),
        ("Sam", "Leo is bringing his new kayak"),
        ("Hex", "Nice."),
        ("Sam", "I still need to buy a sleeping bag"),
        ("Hex", "Get a warm one."),
        ("Sam", "ok"),
        ("Hex", "Anything else?"),
        ("Sam", "nope"),
        ("Hex", "Have fun!"),
    ]
    history.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": f"c{i}",
                    "conversation": "discord:sam",
                    "speaker": who,
                    "text": text,
                    "timestamp": 1_780_000_000 + 60 * i,
                }
            )
            for i, (who, text) in enumerate(texts)
        )
    )
    assert hx.cli("memory", "import", str(history)).returncode == 0
    summary = poll_for(
        lambda: next((r for r in export(hx) if r["kind"] == "summary"), None),
        240,
        interval=1.0,
        what="a summary of the oldest turns",
    )
    assert summary["turn_ids"] == [f"c{i}" for i in range(8)]  # the newest four stay whole
    assert summary["text"].strip() and summary["source"] == "import"
    assert "brain.task" in hx.log()
    for fact in (r for r in export(hx) if r["kind"] == "fact"):
        # Whatever the small model extracted carries a quote of a person's own words.
        assert fact["quote"] and set(fact["turn_ids"]) <= {f"c{i}" for i in range(0, 8, 2)}


def test_memory_writes_survive_sigkills_and_duckdb_index_and_journals_agree(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory, journal_scan_s=0.5)
    n = 40
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)  # the kill points are random; the seed is in any failure's message
    kills = sorted(rng.sample(range(5, n - 3), 3))

    def restarted(old: int) -> None:
        poll_for(lambda: hx.status()["memory"]["state"] == "live" and hx.pid("memory") != old, 60)

    async def storm() -> None:
        client = BusClient(hx.endpoints, "stormer")
        client.start()
        for i in range(n):
            kind: Literal["journal", "fact"] = "journal" if i % 4 == 0 else "fact"
            await client.publish_durable(
                MemoryAdd(text=f"storm {kind} number {i} about lighthouses", kind=kind)
            )
            if i in kills:
                await asyncio.sleep(
                    rng.uniform(0.0, 0.4)
                )  # mid-embedding, mid-file, mid-commit or idle
                old = hx.pid("memory")
                os.kill(old, signal.SIGKILL)
                await asyncio.to_thread(
                    restarted, old
                )  # the next kill hits the restarted actor, live again
        assert await client.flush(20)
        await client.close()

    asyncio.run(storm())
    hx.wait_state({"memory": "live"}, timeout=60)

    def stored() -> list[dict[str, Any]] | None:
        rows = export(hx)
        return rows if len(rows) >= n else None

    rows = poll_for(
        stored, 60, interval=0.5, what=f"all {n} acknowledged memories stored (seed {seed})"
    )
    assert sorted(r["text"] for r in rows) == sorted(
        f"storm {'journal' if i % 4 == 0 else 'fact'} number {i} about lighthouses"
        for i in range(n)
    )
    time.sleep(1.5)  # a few folder scans after the restarts
    journals = {r["journal"]: r for r in export(hx) if r["kind"] == "journal"}
    files = journal_files(hx)
    assert set(files) == set(journals) and len(files) == n // 4, (
        seed
    )  # one file per journal memory, no orphans
    for relpath, text in files.items():
        assert journals[relpath]["text"] in text
    hits = search(hx, "storm about lighthouses", k=n)
    assert len({h.id for h in hits}) == n  # the vector index holds each memory once


def test_the_persons_profile_with_their_roster_comes_with_every_query_about_them(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)

    async def tell() -> None:
        client = BusClient(hx.endpoints, "chatter")
        client.start()
        for i, update in enumerate(
            (
                ProfileUpdate(
                    hobbies=("kayaking",),
                    sentiment="cheerful",
                    people=(KnownPerson(name="Leo", relation="brother", note="bought a kayak"),),
                ),
                ProfileUpdate(
                    tastes=("jazz",),
                    people=(
                        KnownPerson(name="leo", sentiment="proud"),
                        KnownPerson(name="Pepper", relation="dog"),
                    ),
                ),
            )
        ):
            await client.publish_durable(
                ReplyMeta(reply_to=f"r{i}", person_id="sam", channel="c1", profile=update)
            )
        assert await client.flush(10)
        await client.close()

    asyncio.run(tell())

    def profile() -> Any:
        result, _ = asyncio.run(
            ask(hx.endpoints, MemoryQuery(text="kayak", person_id="sam"), MemoryResult, timeout=20)
        )
        return result.profile if result.profile and "Pepper" in result.profile.roster else None

    found = poll_for(profile, 20, interval=0.3, what="the profile with both updates")
    assert (
        found.hobbies == ("kayaking",)
        and found.tastes == ("jazz",)
        and found.sentiment == "cheerful"
    )
    assert found.roster == {
        "leo": {"relation": "brother", "note": "bought a kayak", "sentiment": "proud"},
        "Pepper": {"relation": "dog"},
    }
    nobody, _ = asyncio.run(
        ask(hx.endpoints, MemoryQuery(text="kayak", person_id="ana"), MemoryResult, timeout=20)
    )
    assert nobody.profile is None
