"""The brain through the supervisor, on the packaged model: the conversation loop end to end.

Real processes, real sockets, SmolLM2-135M through llama.cpp. The model is weak, so
these tests assert structure and flow (chunks, sentences, final replies, metadata,
ordering, recovery), never wit.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hexbus.bus import BusClient
from hexbus.codec import Envelope
from schemas import (
    ChatMessage,
    Notice,
    PersonaChanged,
    Reply,
    ReplyChunk,
    ReplyMeta,
    ReplySentence,
)
from tests.support.brain import (
    KEY,
    MODEL,
    MODELS_OK,
    ScriptedServer,
    brain_toml,
    llama_server,
    start_brain,
    status,
)
from tests.support.harness import REPO, Hex, HexFactory, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


class Conversation:
    """A chat client on the bus that records chunks, sentences, metadata and final replies."""

    def __init__(self, hx: Hex) -> None:
        self.client = BusClient(hx.endpoints, "tester")
        self.client.subscribe("chat.reply.chunk")
        self.chunks: dict[str, list[ReplyChunk]] = {}
        self.replies: dict[str, Reply] = {}
        self.sentences: dict[str, list[ReplySentence]] = {}
        self.metas: dict[str, ReplyMeta] = {}
        self.persona: list[PersonaChanged] = []
        self.notices: list[Notice] = []
        self.reply_ids: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Conversation:
        self.client.start()
        loop = asyncio.get_running_loop()
        feed = self.client.durable(
            ["chat.reply", "chat.sentence", "chat.meta", "chat.notice", "brain.persona.changed"],
            after=-1,
            wait_ms=300,
        )
        self.feed = feed
        self.tasks = [loop.create_task(self._volatile()), loop.create_task(self._durable(feed))]
        assert await feed.positioned(10), "the broker did not answer the tail feed"
        await asyncio.sleep(0.3)  # the chunk subscription reaches the broker
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()

    async def _volatile(self) -> None:
        async for envelope, _ in self.client.volatile():
            if isinstance(envelope.body, ReplyChunk):
                self.chunks.setdefault(envelope.body.reply_to, []).append(envelope.body)

    async def _durable(self, feed: Any) -> None:
        async for envelope, _ in feed:
            if envelope is None:
                continue
            body = envelope.body
            if isinstance(body, Reply):
                self.reply_ids.append(envelope.id)
                self.replies[body.reply_to] = body
            elif isinstance(body, ReplySentence):
                self.sentences.setdefault(body.reply_to, []).append(body)
            elif isinstance(body, ReplyMeta):
                self.metas[body.reply_to] = body
            elif isinstance(body, PersonaChanged):
                self.persona.append(body)
            elif isinstance(body, Notice):
                self.notices.append(body)

    async def send(self, text: str, channel: str = "c1", person: str = "ana") -> Envelope:
        event = ChatMessage(
            platform="console",
            person_id=person,
            display_name=person.title(),
            channel=channel,
            text=text,
            direct=True,
        )
        envelope = await self.client.publish_durable(event, key="console")
        assert await self.client.flush(10)
        return envelope

    async def reply(self, message: Envelope, timeout: float = 90) -> Reply:
        deadline = time.monotonic() + timeout
        while message.id not in self.replies:
            assert time.monotonic() < deadline, f"no reply to {message.body} within {timeout}s"
            await asyncio.sleep(0.05)
        return self.replies[message.id]


def test_a_message_streams_chunks_and_sentences_then_a_final_reply_and_metadata(
    hex_factory: HexFactory,
) -> None:
    hx = start_brain(hex_factory)

    async def talk() -> None:
        async with Conversation(hx) as chat:
            message = await chat.send("Hi Hex! What is your favourite snack and why?")
            reply = await chat.reply(message)
            assert reply.status == "complete" and reply.text and reply.backend == "llamacpp"
            chunks = chat.chunks.get(message.id, [])
            assert len(chunks) > 1, "the reply did not stream"
            assert [c.index for c in chunks] == list(range(len(chunks)))
            streamed = "".join(c.text for c in chunks).strip()
            # The final text is what streamed, trimmed to its last whole sentence if the token limit cut it.
            assert streamed.startswith(reply.text) and (
                streamed == reply.text or reply.text[-1] in ".!?…\"')"
            )
            sentences = chat.sentences.get(message.id, [])
            assert sentences and [s.index for s in sentences] == list(range(len(sentences)))
            spoken = " ".join(s.text for s in sentences)
            assert " ".join(spoken.split())[:20] == " ".join(reply.text.split())[:20]
            meta = await _wait(lambda: chat.metas.get(message.id), 60, "the reply's metadata")
            assert isinstance(meta, ReplyMeta) and meta.person_id == "ana"
            assert 0.0 <= meta.importance <= 1.0 and meta.emotion
            for fact in meta.facts:  # a kept fact quotes the person's own words
                assert fact.quote.lower() in message.body.text.lower()  # type: ignore[union-attr]

    asyncio.run(talk())

    def counted() -> bool:  # snapshots are written every few seconds
        try:
            usage = hx.snapshot_state("brain")["usage"]
        except FileNotFoundError:
            return False
        return any(
            key.endswith("|llamacpp|ana") and row["completion_tokens"] > 0
            for key, row in usage.items()
        )

    poll_for(
        counted,
        20,
        interval=0.2,
        what="token usage per backend, person and day in the brain's state",
    )


async def _wait(get: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while (value := get()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


def test_newer_message_cancels_the_reply_in_flight_and_conversations_stay_apart(
    hex_factory: HexFactory,
) -> None:
    hx = start_brain(hex_factory, extra="metadata = false")

    async def talk() -> None:
        async with Conversation(hx) as chat:
            first = await chat.send(
                "Tell me a long story about a goblin who collects spoons, in detail."
            )
            await _wait(lambda: chat.chunks.get(first.id), 60, "the first reply to start streaming")
            second = await chat.send("Actually, never mind. How are you?")
            other = await chat.send("Hello from another channel!", channel="c2", person="bo")
            cancelled = await chat.reply(first)
            answered = await chat.reply(second)
            elsewhere = await chat.reply(other)
            assert cancelled.status == "cancelled"
            assert answered.status == "complete" and answered.text
            assert elsewhere.status == "complete" and elsewhere.channel == "c2"
            # The cancelled reply's chunks stopped: none arrived after its final event.
            n = len(chat.chunks.get(first.id, []))
            await asyncio.sleep(1.0)
            assert len(chat.chunks.get(first.id, [])) == n
            # One final reply per message, no more.
            assert len(chat.reply_ids) == len(set(chat.reply_ids)) == 3

    asyncio.run(talk())


def test_bad_input_gets_a_clear_reply_and_the_brain_goes_on(hex_factory: HexFactory) -> None:
    hx = start_brain(hex_factory, extra="metadata = false\nmax_message_chars = 200")

    async def talk() -> None:
        async with Conversation(hx) as chat:
            empty = await chat.send("   ")
            huge = await chat.send("spoons " * 100)
            binary = await chat.send("\x00\x01\x02\x03\x04\x05\x06 binary \x07\x08")
            fine = await chat.send("hi")
            for message, words in ((empty, "empty"), (huge, "700 characters"), (binary, "binary")):
                reply = await chat.reply(message)
                assert reply.status == "failed" and words in reply.text
            assert (await chat.reply(fine)).status == "complete"

    asyncio.run(talk())
    assert hx.status()["brain"]["restarts"] == 0


def test_brain_killed_mid_reply_answers_the_message_once_after_restart(
    hex_factory: HexFactory,
) -> None:
    hx = start_brain(hex_factory, extra="metadata = false", backoff_initial_s=0.05)

    async def talk() -> None:
        async with Conversation(hx) as chat:
            message = await chat.send("Describe your favourite place in the whole world, please.")
            await _wait(lambda: chat.chunks.get(message.id), 60, "the reply to start streaming")
            os.kill(hx.pid("brain"), signal.SIGKILL)
            reply = await chat.reply(message, timeout=120)
            assert reply.status == "complete" and reply.text
            await asyncio.sleep(2.0)  # room for a duplicate to show up, were there one
            assert len([r for r in chat.replies.values() if r.reply_to == message.id]) == 1
            assert chat.reply_ids.count(chat.reply_ids[-1]) == 1 and len(chat.reply_ids) == 1

    asyncio.run(talk())
    assert hx.status()["brain"]["restarts"] == 1


def test_memory_actor_that_answers_late_does_not_hold_the_reply(hex_factory: HexFactory) -> None:
    slow_memory = (
        '[actors.memory]\nmodule = "actors.diag.actor:SlowMemoryActor"\n'
        "[actors.memory.config]\ndelay_s = 5.0\n"
    )
    hx = start_brain(hex_factory, extra="metadata = false\n" + slow_memory)

    async def talk() -> None:
        async with Conversation(hx) as chat:
            message = await chat.send("Do you remember what I told you yesterday?")
            reply = await chat.reply(message, timeout=60)
            assert reply.status == "complete" and reply.text

    asyncio.run(talk())
    assert "brain.memory_unavailable" in hx.log()
    assert hx.status()["memory"]["events_in"] >= 1  # the query reached it; its answer came too late


def test_persona_change_records_a_version_and_rollback_restores_it(hex_factory: HexFactory) -> None:
    hx = start_brain(hex_factory, extra="metadata = false")
    persona = hx.root / "persona.toml"
    original = persona.read_text()

    async def talk() -> None:
        async with Conversation(hx) as chat:
            persona.write_text(original.replace("chaotic", "CHAOTIC", 1))  # an edit, picked up live
            changed = await _wait(
                lambda: chat.persona[-1] if chat.persona else None, 30, "persona change"
            )
            assert changed.version == 2 and not changed.error
            out = hx.cli("persona", "rollback", "1")
            assert out.returncode == 0, out.stderr
            rolled = await _wait(
                lambda: next((p for p in chat.persona if "rollback" in p.note), None),
                30,
                "the rollback",
            )
            # A rollback is itself a version (3, with version 1's text), so it can be undone in turn.
            assert rolled.version == 3 and rolled.note == "rollback to 1" and not rolled.error
            assert persona.read_text() == original
            refused_before = len(chat.persona)
            assert hx.cli("persona", "rollback", "99").returncode == 0
            refused = await _wait(
                lambda: (
                    chat.persona[refused_before] if len(chat.persona) > refused_before else None
                ),
                30,
                "the refusal",
            )
            assert refused.error and "99" in refused.error and refused.version == 3

    asyncio.run(talk())
    assert persona.read_text() == original


def test_hexbus_chat_with_a_pipe_prints_each_reply_and_exits(hex_factory: HexFactory) -> None:
    hx = start_brain(hex_factory, extra="metadata = false")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hexbus.cli",
            "chat",
            "--run-dir",
            str(hx.run_dir),
            "--person",
            "ana",
        ],
        input="hello Hex\nwhat is 2 + 2?\n",
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2, out.stdout
    replies = [r for r in _journal_replies(hx) if r.platform == "console"]
    assert len(replies) == 2 and all(r.status == "complete" for r in replies)
    for reply in replies:
        assert reply.text.split()[0] in out.stdout


def _journal_replies(hx: Hex) -> list[Reply]:
    async def read() -> list[Reply]:
        client = BusClient(hx.endpoints, "reader")
        feed = client.durable(["chat.reply"], after=0, wait_ms=0)
        found: list[Reply] = []
        async for envelope, _ in feed:
            if envelope is None:
                if feed.live or feed.after >= feed.head:
                    break
                continue
            if isinstance(envelope.body, Reply):
                found.append(envelope.body)
        await client.close()
        return found

    return asyncio.run(read())


def test_missing_model_file_is_one_line_in_status_and_no_crash_loop(
    hex_factory: HexFactory,
) -> None:
    hx = start_brain(
        hex_factory,
        wait_live=False,
        backends='[{type = "llamacpp", model_path = "/nonexistent/model.gguf"}]',
    )
    status = hx.wait_state({"broker": "live", "brain": "failed"}, timeout=30)
    reason = status["brain"]["reason"]
    assert "/nonexistent/model.gguf" in reason and "MODELS.md" in reason and "\n" not in reason
    assert status["brain"]["restarts"] == 0


def test_llama_server_killed_mid_reply_falls_back_and_the_reply_completes(
    hex_factory: HexFactory, tmp_path: Path
) -> None:
    with llama_server(tmp_path / "server.log") as (base_url, server):
        backends = (
            f'[{{type = "openai", name = "server", base_url = "{base_url}", model = "{MODEL}", '
            f'api_key_env = "HEX_TEST_LLM_KEY"}}, {{type = "llamacpp"}}]'
        )
        hx = start_brain(
            hex_factory,
            backends=backends,
            extra="metadata = false",
            env=f'{{HEX_TEST_LLM_KEY = "{KEY}"}}',
        )

        async def talk() -> None:
            async with Conversation(hx) as chat:
                warm = await chat.send("hi")
                assert (await chat.reply(warm)).backend == "server"
                message = await chat.send(
                    "Tell me everything about goblins and their shiny spoons."
                )
                await _wait(lambda: chat.chunks.get(message.id), 60, "the reply to start streaming")
                server.kill()
                reply = await chat.reply(message, timeout=120)
                assert reply.status == "complete" and reply.text
                assert reply.backend == "llamacpp" and reply.fallbacks == 1
                # What the dead server had streamed was void: the final text is the new backend's reply,
                # streamed after it (and trimmed to a whole sentence if the token limit cut it).
                streamed = "".join(c.text for c in chat.chunks[message.id])
                assert reply.text[:30] in streamed

        asyncio.run(talk())


def test_persona_audit_runs_on_the_packaged_model_saves_reports_and_compares_them(
    tmp_path: Path,
) -> None:
    import json

    root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
    try:
        config = root / "supervisor.toml"
        config.write_text(brain_toml(root, extra="metadata = false"))

        def audit(*extra: str) -> tuple[dict[str, Any], Path]:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "hexbus.cli",
                    "persona",
                    "audit",
                    "--config",
                    str(config),
                    "--limit",
                    "4",
                    *extra,
                ],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=REPO,
            )
            assert out.returncode == 0, out.stderr
            report = Path(out.stderr.strip().splitlines()[-1].removeprefix("report saved to "))
            return json.loads(out.stdout), report

        first, first_report = audit()
        assert first["scenarios"] == 4 and set(first["pass_rate"]) >= {
            "name_not_denied",
            "hard_limits_kept",
            "no_denial_in_crisis",
            "length_adapted",
        }
        assert first["served_by"] == {"llamacpp": 4}
        saved = json.loads(first_report.read_text())
        assert len(saved["replies"]) == 4 and all(
            isinstance(r, str) for r in saved["replies"].values()
        )
        second, second_report = audit("--compare", str(first_report))
        assert second_report != first_report and "drift" in second
        assert {"pass_rate_delta", "changed"} <= set(second["drift"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_barge_in_cancels_and_records_what_was_heard_and_quiet_mode_answers_only_direct(
    hex_factory: HexFactory,
) -> None:
    from schemas import BargeIn, QuietMode

    hx = start_brain(hex_factory, extra="metadata = false")

    async def talk() -> None:
        async with Conversation(hx) as chat:
            message = await chat.send(
                "Tell me a long story about a goblin and her spoons, in detail."
            )
            await _wait(lambda: chat.chunks.get(message.id), 60, "the reply to start streaming")
            await chat.client.publish_durable(
                BargeIn(channel="c1", person_id="ana", said="Once upon a time")
            )
            reply = await chat.reply(message)
            assert reply.status == "cancelled" and reply.text == "Once upon a time"

            await chat.client.publish_durable(
                QuietMode(scope="channel", target="c1", until=time.time() + 600)
            )
            await asyncio.sleep(0.5)
            quiet = ChatMessage(
                platform="console",
                person_id="ana",
                display_name="Ana",
                channel="c1",
                text="just chatting to myself",
                direct=False,
            )
            ignored = await chat.client.publish_durable(quiet, key="console")
            addressed = await chat.send("Hex, are you there?")  # direct=True
            assert (await chat.reply(addressed)).status == "complete"
            assert ignored.id not in chat.replies

    asyncio.run(talk())

    def recorded() -> bool:  # snapshots are written every few seconds
        try:
            turns = hx.snapshot_state("brain")["conversations"]["console:c1"]["turns"]
        except (FileNotFoundError, KeyError):
            return False
        said = any(
            t["role"] == "assistant" and t["text"] == "Once upon a time" and t["cancelled"]
            for t in turns
        )
        heard = any(t["text"] == "just chatting to myself" for t in turns)  # heard, not answered
        return said and heard

    poll_for(recorded, 20, interval=0.2, what="the brain's snapshot with both turns")


def test_older_turns_fold_into_a_summary_and_a_fresh_observation_is_kept(
    hex_factory: HexFactory,
) -> None:
    from schemas import Observation

    hx = start_brain(hex_factory, extra="metadata = false\nkeep_turns = 2\nsummary_batch = 2")

    async def talk() -> None:
        async with Conversation(hx) as chat:
            chat.client.publish_volatile(
                Observation(text="a person waving at the camera", at=time.time())
            )
            for text in ("My name is Ana and I keep bees.", "I also paint my beehives blue."):
                assert (await chat.reply(await chat.send(text))).status == "complete"

    asyncio.run(talk())

    def summarised() -> bool:
        try:
            state = hx.snapshot_state("brain")
        except FileNotFoundError:
            return False
        conversation = state["conversations"].get("console:c1", {})
        return (
            bool(conversation.get("summary"))
            and len(conversation["turns"]) == 2
            and state["observation"] == "a person waving at the camera"
        )

    try:
        poll_for(
            summarised,
            60,
            interval=0.2,
            what="a rolling summary with the newest two turns kept whole",
        )
    except AssertionError:  # show what the brain kept instead
        state = hx.snapshot_state("brain")
        raise AssertionError(
            f"no summary: observation {state['observation']!r}, "
            f"conversations {state['conversations']}"
        ) from None


def test_rate_limited_server_gets_a_sleepy_notice_and_the_reply_comes_from_the_next_backend(
    hex_factory: HexFactory,
) -> None:
    import threading

    loop = asyncio.new_event_loop()
    server = ScriptedServer(
        MODELS_OK, status(429, b'{"error": "rate limited"}', {"Retry-After": "60"})
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
    try:
        backends = (
            f'[{{type = "openai", name = "cloud", base_url = "{server.url}", model = "m"}}, '
            '{type = "llamacpp"}]'
        )
        hx = start_brain(hex_factory, backends=backends, extra="metadata = false")

        async def talk() -> None:
            async with Conversation(hx) as chat:
                reply = await chat.reply(await chat.send("hi there"))
                assert (
                    reply.status == "complete"
                    and reply.backend == "llamacpp"
                    and reply.fallbacks == 1
                )
                sleepy = await _wait(
                    lambda: chat.notices[0] if chat.notices else None, 10, "a notice"
                )
                assert sleepy.kind == "sleepy" and "cloud" in sleepy.text and sleepy.channel == "c1"
                # Within Retry-After the cloud is not asked again.
                asked = len(server.requests)
                assert (await chat.reply(await chat.send("and again"))).backend == "llamacpp"
                assert len(server.requests) == asked

        asyncio.run(talk())
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
