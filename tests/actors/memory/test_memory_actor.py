"""The memory actor through the supervisor: real DuckDB, the packaged embedding model, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hexbus.ask import change
from hexbus.bus import BusClient
from schemas import (
    ChatMessage,
    Fact,
    MemoryAdd,
    MemoryChanged,
    MemoryCorrect,
    ProfileUpdate,
    Reply,
    ReplyMeta,
)
from tests.support.harness import FAST_BUS, REPO, HexFactory, poll_for
from tests.support.memory import OWNER, add, memory_config, search, start

pytestmark = [pytest.mark.process, pytest.mark.slow]


def test_manual_memories_are_found_by_meaning_and_by_exact_words(hex_factory: HexFactory) -> None:
    hx = start(hex_factory)
    bees = add(hx, "Ana keeps three beehives on her balcony", person_id="ana", importance=0.8)
    add(hx, "Ana's favourite colour is teal", person_id="ana")
    add(hx, "The Discord server's movie night is on Fridays")
    add(hx, "Bo is learning the cello", person_id="bo")
    hits = search(hx, "does she have any insects as pets?", person_id="ana")
    assert hits and hits[0].id == bees, hits
    assert all(
        h.person_id in ("ana", "") for h in hits
    )  # nothing about Bo leaks into Ana's context
    exact = search(hx, "movie night")
    assert exact[0].text.startswith("The Discord server's movie night")
    assert hits[0].source == "manual" and hits[0].score > 0


def test_conversation_turns_and_extracted_facts_carry_their_provenance(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)

    async def converse() -> tuple[str, str]:
        client = BusClient(hx.endpoints, "chatter")
        client.start()
        message = await client.publish_durable(
            ChatMessage(
                platform="console",
                person_id="ana",
                display_name="Ana",
                channel="c1",
                text="I just adopted a grey cat called Pixel!",
            ),
            key="console",
        )
        reply = await client.publish_durable(
            Reply(
                reply_to=message.id,
                channel="c1",
                text="Pixel! Cute name.",
                platform="console",
                person_id="ana",
            ),
            key="console",
        )
        await client.publish_durable(
            ReplyMeta(
                reply_to=message.id,
                person_id="ana",
                channel="c1",
                remember=True,
                importance=0.7,
                facts=(
                    Fact(
                        text="Ana has a grey cat named Pixel",
                        quote="adopted a grey cat called Pixel",
                    ),
                ),
                profile=ProfileUpdate(hobbies=("cats",), sentiment="cheerful"),
            )
        )
        assert await client.flush(10)
        await client.close()
        return message.id, reply.id

    message_id, _ = asyncio.run(converse())
    hits = poll_for(
        lambda: search(hx, "what pet does Ana have?", person_id="ana", kinds=("fact",)),
        30,
        what="the extracted fact to be searchable",
    )  # (her own words are searchable too: kind turn)
    assert hits[0].text == "Ana has a grey cat named Pixel"
    assert hits[0].quote == "adopted a grey cat called Pixel" and hits[0].turn_ids == (message_id,)
    assert hits[0].source == "extracted"
    out = hx.cli("memory", "search", "cat", "--person", "ana", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    found = {d["id"]: d for d in data}
    assert found[hits[0].id]["turn_ids"] == [message_id] and all("score" in d for d in data)


def test_corrections_lower_confidence_and_hits_are_marked_for_hedging(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    wrong = add(hx, "Ana is allergic to peanuts", person_id="ana")
    report = asyncio.run(
        change(
            hx.endpoints,
            MemoryCorrect(id=wrong, note="it's walnuts, not peanuts", by="ana"),
            MemoryChanged,
        )
    )
    assert report.action == "corrected" and "0.4" in report.detail
    hit = search(hx, "allergy", person_id="ana")[0]
    assert hit.id == wrong and hit.confidence == 0.4 and hit.hedge
    asyncio.run(change(hx.endpoints, MemoryCorrect(id=wrong, remove=True, by="ana"), MemoryChanged))
    assert all(h.id != wrong for h in search(hx, "allergy", person_id="ana"))


def test_forgetting_a_person_is_for_owners_and_removes_everything_about_them(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    add(hx, "Bo plays the cello", person_id="bo")
    add(hx, "Bo's birthday is in May", person_id="bo")
    refused = hx.cli("memory", "forget", "--person", "bo", "--by", "stranger")
    assert refused.returncode == 1 and "only an owner" in refused.stderr
    assert len(search(hx, "cello", person_id="bo")) >= 1
    done = hx.cli("memory", "forget", "--person", "bo", "--by", OWNER)
    assert done.returncode == 0 and "forgotten" in done.stdout and "memories 2" in done.stdout, (
        done.stdout
    )
    assert [h for h in search(hx, "cello birthday", person_id="bo") if h.person_id == "bo"] == []


def test_cli_add_search_export(hex_factory: HexFactory, tmp_path: Path) -> None:
    hx = start(hex_factory)
    out = hx.cli(
        "memory",
        "add",
        "Hex's favourite snack is shiny spoons",
        "--tags",
        "lore,snacks",
        "--kind",
        "anchor",
        "--importance",
        "0.9",
    )
    assert out.returncode == 0 and out.stdout.startswith("added: m_"), out
    found = hx.cli("memory", "search", "what does Hex like to eat")
    assert found.returncode == 0 and "shiny spoons" in found.stdout
    dump = tmp_path / "memories.jsonl"
    exported = hx.cli("memory", "export", "--out", str(dump))
    assert exported.returncode == 0 and "exported 1" in exported.stdout
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert rows[0]["text"] == "Hex's favourite snack is shiny spoons" and rows[0]["tags"] == [
        "lore",
        "snacks",
    ]
    assert "embedding" not in rows[0]


def test_killed_mid_write_storm_loses_and_doubles_nothing_and_indexes_agree(
    hex_factory: HexFactory,
) -> None:
    hx = start(hex_factory)
    n = 60

    async def storm() -> None:
        client = BusClient(hx.endpoints, "stormer")
        client.start()
        for i in range(n):
            await client.publish_durable(
                MemoryAdd(text=f"storm fact number {i} about lanterns", tags=(f"s{i}",))
            )
            if i in (15, 40):
                await asyncio.sleep(0.3)
                os.kill(hx.pid("memory"), signal.SIGKILL)
        assert await client.flush(20)
        await client.close()

    asyncio.run(storm())
    hx.wait_state({"memory": "live"}, timeout=60)

    def all_there() -> bool:
        out = hx.cli("memory", "export")
        return out.returncode == 0 and len(out.stdout.splitlines()) >= n

    poll_for(all_there, 60, interval=0.5, what=f"all {n} acknowledged memories stored")
    rows = [json.loads(line) for line in hx.cli("memory", "export").stdout.splitlines()]
    texts = sorted(r["text"] for r in rows)
    assert texts == sorted(f"storm fact number {i} about lanterns" for i in range(n))  # each once
    assert len({r["id"] for r in rows}) == n
    # The vector index agrees with DuckDB: every memory is findable by meaning, exactly once.
    hits = search(hx, "storm fact number 33 about lanterns", k=n)
    assert len(hits) == n and len({h.id for h in hits}) == n
    assert hits[0].text == "storm fact number 33 about lanterns"


def test_index_file_deleted_or_corrupted_is_rebuilt_from_duckdb(hex_factory: HexFactory) -> None:
    hx = start(hex_factory)
    ids = [add(hx, f"fact {i}: the lighthouse keeper owns {i} lanterns") for i in range(5)]
    pid = hx.pid("memory")
    hx.command("restart", "memory")  # a graceful stop saves the index
    pid = hx.wait_restarted("memory", pid)
    index = next((hx.data_dir / "actors" / "memory").glob("*.hnsw"))
    index.write_bytes(b"garbage" * 100)
    hx.command("restart", "memory")
    pid = hx.wait_restarted("memory", pid)
    assert sorted(h.id for h in search(hx, "lighthouse lanterns", k=10)) == sorted(ids)
    index.unlink()
    os.kill(pid, signal.SIGKILL)
    hx.wait_restarted("memory", pid)
    assert sorted(h.id for h in search(hx, "lighthouse lanterns", k=10)) == sorted(ids)
    assert "vectors.rebuild" in hx.log()


def test_missing_embedding_model_is_one_line_in_status(hex_factory: HexFactory) -> None:
    hx = hex_factory(memory_config(embedder="/nowhere/model")).start(wait_live=False)
    status = hx.wait_state({"broker": "live", "memory": "failed"}, timeout=60)
    assert "/nowhere/model" in status["memory"]["reason"] and status["memory"]["restarts"] == 0


def test_hexbus_memory_without_a_memory_actor_says_so(hex_factory: HexFactory) -> None:
    hx = hex_factory(FAST_BUS).start()
    out = subprocess.run(
        [sys.executable, "-m", "hexbus.cli", "memory", "search", "x", "--run-dir", str(hx.run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 1 and "memory actor did not answer" in out.stderr


def test_old_unimportant_memories_are_archived_not_deleted(hex_factory: HexFactory) -> None:
    hx = start(
        hex_factory, archive_after_days=1 / 86400, aging_interval_s=0.5
    )  # "old" after one second
    trivia = add(hx, "Ana once mentioned the weather was cloudy", person_id="ana", importance=0.1)
    milestone = add(
        hx,
        "Ana told Hex about the cloudy day she met her best friend",
        person_id="ana",
        importance=0.9,
    )
    # Aging counts from the last write or retrieval: a search would keep the trivia fresh (on a
    # loaded machine, one searching every half second can keep it fresh for good), so what
    # aging did is read from the review, which retrieves nothing.
    poll_for(
        lambda: f"archived    {trivia}" in hx.cli("memory", "review").stdout,
        60,
        interval=0.5,
        what="the unimportant memory to be archived",
    )
    assert trivia not in {h.id for h in search(hx, "cloudy weather", person_id="ana", k=5)}
    assert milestone in {h.id for h in search(hx, "cloudy weather", person_id="ana", k=5)}
    archived = {
        h.id for h in search(hx, "cloudy weather", person_id="ana", k=5, include_archived=True)
    }
    assert trivia in archived  # archived, not deleted
    assert "memory.archived" in hx.log()
    # ... and review says so
    review = hx.cli("memory", "review").stdout
    assert f"archived    {trivia}  Ana once mentioned the weather was cloudy" in review, review
    assert "1 archived in all: unused and unimportant" in review


def test_suggestions_wait_for_approval_and_a_rejected_one_is_gone(hex_factory: HexFactory) -> None:
    hx = start(hex_factory, suggestions=True)

    async def suggest() -> list[MemoryChanged]:
        client = BusClient(hx.endpoints, "suggester")
        client.start()
        feed = client.durable(["memory.changed"], after=-1, wait_ms=200)
        seen: list[MemoryChanged] = []

        async def read() -> None:
            async for envelope, _ in feed:
                if envelope is not None and isinstance(envelope.body, MemoryChanged):
                    seen.append(envelope.body)

        task = asyncio.get_running_loop().create_task(read())
        assert await feed.positioned(10), "the broker did not answer the tail feed"
        for i, (fact, quote) in enumerate(
            (("Ana plays chess", "I play chess"), ("Ana hates olives", "hate olives"))
        ):
            await client.publish_durable(
                ReplyMeta(
                    reply_to=f"r{i}",
                    person_id="ana",
                    channel="c1",
                    remember=True,
                    facts=(Fact(text=fact, quote=quote),),
                )
            )
        for _ in range(200):
            if len([c for c in seen if c.action == "suggested"]) == 2:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        return [c for c in seen if c.action == "suggested"]

    suggested = asyncio.run(suggest())
    assert sorted(s.detail for s in suggested) == ["Ana hates olives", "Ana plays chess"]
    assert search(hx, "chess", person_id="ana") == []  # pending: not in the brain's context yet
    chess = next(s.ids[0] for s in suggested if "chess" in s.detail)
    olives = next(s.ids[0] for s in suggested if "olives" in s.detail)
    approved = hx.cli("memory", "edit", chess, "--approve")
    assert approved.returncode == 0 and approved.stdout.startswith("approved"), approved
    assert [h.id for h in search(hx, "chess", person_id="ana")][:1] == [chess]
    rejected = hx.cli("memory", "edit", olives, "--reject")
    assert rejected.returncode == 0 and rejected.stdout.startswith("rejected")
    assert "olives" not in hx.cli("memory", "export").stdout
    unknown = hx.cli("memory", "edit", "m_nope", "--approve")
    assert unknown.returncode == 1 and "no memory m_nope" in unknown.stderr
