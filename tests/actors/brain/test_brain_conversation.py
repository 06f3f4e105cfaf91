"""The brain through the supervisor: the conversation loop end to end (stream, cancel, recover).

Real processes, real sockets, SmolLM2-135M through llama.cpp. The model is weak, so
these tests assert structure and flow (chunks, sentences, final replies, metadata,
ordering, recovery), never wit.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time

import pytest

from actors.brain.console import STARTED_AGAIN, ChatClient, typed
from schemas import ChatMessage, Reply, ReplyMeta
from tests.support.brain import start_brain
from tests.support.brain_chat import BusChat, wait_for_value
from tests.support.harness import HexFactory, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]


def test_a_message_streams_chunks_and_sentences_then_a_final_reply_and_metadata(
    hex_factory: HexFactory,
) -> None:
    hx = start_brain(hex_factory)

    async def talk() -> None:
        async with BusChat(hx) as chat:
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
            meta = await wait_for_value(
                lambda: chat.metas.get(message.id), 60, "the reply's metadata"
            )
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


def test_newer_message_cancels_the_reply_in_flight_and_conversations_stay_apart(
    hex_factory: HexFactory,
) -> None:
    hx = start_brain(hex_factory, extra="metadata = false")

    async def talk() -> None:
        async with BusChat(hx) as chat:
            first = await chat.send(
                "Tell me a long story about a goblin who collects spoons, in detail."
            )
            await wait_for_value(
                lambda: chat.chunks.get(first.id), 60, "the first reply to start streaming"
            )
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
        async with BusChat(hx) as chat:
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
        async with BusChat(hx) as chat:
            message = await chat.send("Describe your favourite place in the whole world, please.")
            await wait_for_value(
                lambda: chat.chunks.get(message.id), 60, "the reply to start streaming"
            )
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
        async with BusChat(hx) as chat:
            message = await chat.send("Do you remember what I told you yesterday?")
            reply = await chat.reply(message, timeout=60)
            assert reply.status == "complete" and reply.text

    asyncio.run(talk())
    assert "brain.memory_unavailable" in hx.log()
    assert hx.status()["memory"]["events_in"] >= 1  # the query reached it; its answer came too late


def test_barge_in_cancels_and_records_what_was_heard_and_quiet_mode_answers_only_direct(
    hex_factory: HexFactory,
) -> None:
    from schemas import BargeIn, QuietMode

    hx = start_brain(hex_factory, extra="metadata = false")

    async def talk() -> None:
        async with BusChat(hx) as chat:
            message = await chat.send(
                "Tell me a long story about a goblin and her spoons, in detail."
            )
            await wait_for_value(
                lambda: chat.chunks.get(message.id), 60, "the reply to start streaming"
            )
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
            unanswered = await chat.reply(ignored)  # its final reply closes it, saying nothing
            assert unanswered.status == "cancelled" and not unanswered.text

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
        async with BusChat(hx) as chat:
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


def test_three_lines_a_second_apart_get_one_answer_and_the_brain_goes_on(
    hex_factory: HexFactory,
) -> None:
    """The report that opened issue 11: "part 1", "part 2", "part 3" a second apart wedged the
    brain for everyone (a reply cancelled again while closing its stream kept the model)."""
    hx = start_brain(hex_factory, extra="metadata = false")

    async def talk() -> None:
        async with BusChat(hx) as chat:
            parts = []
            for n in (1, 2, 3):
                if n > 1:
                    await asyncio.sleep(1.0)
                parts.append(await chat.send(f"part {n} of my story about the lake"))
            last = await chat.reply(parts[-1], timeout=90)
            assert last.status == "complete" and last.text
            for part in parts[:-1]:  # each ended once: merged into a later one, or cancelled
                reply = await chat.reply(part)
                assert reply.status == "cancelled"
                assert not reply.merged_into or part.id in chat.replies[reply.merged_into].merged
            other = await chat.send("hello from the other channel", channel="c2", person="bo")
            assert (await chat.reply(other, timeout=90)).status == "complete"
            await asyncio.sleep(1.0)  # room for a duplicate to show up, were there one
            assert len(chat.reply_ids) == len(set(chat.reply_ids)) == 4

    asyncio.run(talk())


def test_lines_typed_in_a_row_at_the_console_go_at_once_and_get_one_answer(
    hex_factory: HexFactory,
) -> None:
    """`hexbus chat` at a terminal sends each line as it is typed (before the last is answered):
    three lines in a row are one burst, answered once, the pieces marked as answered with it."""
    hx = start_brain(hex_factory, extra="metadata = false")
    out = io.StringIO()
    lines = io.StringIO("so about the lake\nthe one near my town\nwhat should I bring there?\n")

    async def talk() -> list[Reply]:
        client = ChatClient(hx.endpoints, person_id="ana", name="Ana", channel="tty", out=out)
        await client.start()
        finals: list[Reply] = []
        answer = client.answer

        async def recorded(message_id: str, timeout: float) -> Reply:
            finals.append(await answer(message_id, timeout))
            return finals[-1]

        client.answer = recorded  # type: ignore[method-assign]
        try:
            await typed(client, lines, out, 120)
        finally:
            await client.close()
        return finals

    finals = asyncio.run(talk())
    assert len(finals) == 3 and finals[-1].status == "complete" and finals[-1].text
    # Sent before the first was answered: the first two were merged into the last (or, had the
    # reply already begun, cancelled by it), never each answered on its own
    assert [f.status for f in finals[:2]] == ["cancelled", "cancelled"]
    assert {f.merged_into for f in finals[:2]} <= {finals[-1].reply_to, ""}
    assert out.getvalue().count("hex> ") == 3
    assert out.getvalue().count("[answered together with the next line]") == sum(
        1 for f in finals[:2] if f.merged_into
    )


def test_a_reply_the_brain_starts_again_after_a_crash_prints_once_at_the_console(
    hex_factory: HexFactory,
) -> None:
    """`hexbus chat` while the brain is killed mid-reply: the restarted brain streams the reply
    from its first piece again; the console says so on a line of its own instead of gluing the
    new stream to the cut one, and the final, streamed whole, is not printed a second time."""
    hx = start_brain(hex_factory, extra="metadata = false", backoff_initial_s=0.05)
    out = io.StringIO()

    async def talk() -> Reply:
        client = ChatClient(hx.endpoints, person_id="ana", name="Ana", channel="tty", out=out)
        await client.start()
        try:
            message_id = await client.send("Describe your favourite place in the whole world.")
            answering = asyncio.get_running_loop().create_task(client.answer(message_id, 120))
            await wait_for_value(
                lambda: client.chunks.get(message_id), 60, "the reply to start streaming"
            )
            os.kill(hx.pid("brain"), signal.SIGKILL)
            return await answering
        finally:
            await client.close()

    reply = asyncio.run(talk())
    assert reply.status == "complete" and reply.text
    printed = out.getvalue()
    cut, again = printed.split(f"\n{STARTED_AGAIN}\n")
    assert again.strip() == reply.text.strip(), printed
    assert cut and reply.text.strip() not in cut
