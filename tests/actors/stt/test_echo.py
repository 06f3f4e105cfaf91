"""The self-echo guard: Hex's own voice heard back through a page's speakers never barges in on
her nor becomes a message; a person speaking over her does both."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.stt.actor import SttActor
from actors.stt.echo import EchoConfig, EchoGuard, words
from hexbus.pcm import to_pcm16
from hexbus.testing import ActorHarness
from schemas import AudioFrame, ChatMessage, ReplySentence, Speaking, SpeechStarted, Utterance
from tests.support.brain import ManualClock
from tests.support.speech import RATE, espeak, silence

SAID = "Once upon a time a goblin kept a hundred silver spoons under her bed."


def guard_speaking(clock: ManualClock) -> EchoGuard:
    guard = EchoGuard(EchoConfig(), clock=clock)
    guard.sentence(ReplySentence(reply_to="m1", channel="ana/main", index=0, text=SAID))
    guard.state(Speaking(channel="ana/main", reply_to="m1", state="start"))
    return guard


def test_only_speech_on_an_echo_prone_platform_while_hex_speaks_is_held() -> None:
    clock = ManualClock()
    guard = guard_speaking(clock)
    assert guard.guarded("web", "ana/main")
    assert not guard.guarded("voice", "ana/main")  # Discord: each speaker its own stream
    assert not guard.guarded("web", "bo/main")  # Hex is silent there
    guard.state(Speaking(channel="ana/main", state="stop"))
    clock.now += 1.0
    assert guard.guarded("web", "ana/main")  # her last words may still be in the room
    clock.now += 1.0
    assert not guard.guarded("web", "ana/main")


@given(st.data())
def test_a_stretch_of_what_she_said_heard_back_is_an_echo(data: st.DataObject) -> None:
    said = words(SAID)
    start = data.draw(st.integers(0, len(said) - 2))
    end = data.draw(st.integers(start + 2, len(said)))
    heard = said[start:end]
    # Whisper mishears a word now and then: one in six wrong still reads as her.
    if len(heard) >= 6:
        heard[data.draw(st.integers(0, len(heard) - 1))] = "mumble"
    guard = guard_speaking(ManualClock())
    assert guard.echo("ana/main", " ".join(heard).capitalize() + ".", final=False) is True


@given(
    st.lists(
        st.sampled_from(["wait", "stop", "no", "tell", "me", "about", "dogs", "instead", "hey"]),
        min_size=2,
        max_size=8,
    )
)
def test_a_person_talking_over_her_is_not(heard: list[str]) -> None:
    guard = guard_speaking(ManualClock())
    # A partial says so on three words before its last (which may be cut mid-word).
    partial = guard.echo("ana/main", " ".join(heard), final=False)
    assert partial is (False if len(heard) >= 4 else None)
    assert guard.echo("ana/main", " ".join(heard), final=True) is False


def test_a_partial_of_her_first_words_misheard_is_not_a_person() -> None:
    """What Whisper made of her voice through the speakers, 0.4 s and 1.2 s into "Once upon a
    time a goblin kept...": the first released her held barge-in in a loaded run."""
    guard = guard_speaking(ManualClock())
    assert guard.echo("ana/main", "one set.", final=False) is None
    assert guard.echo("ana/main", "Once upon a...", final=False) is True


def test_her_everyday_words_in_another_order_are_a_person_and_any_language_counts() -> None:
    clock = ManualClock()
    guard = EchoGuard(EchoConfig(), clock=clock)
    for i, text in enumerate(
        (
            "No, I don't think that is a good idea.",
            "You could try it tomorrow, if you want to.",
            "What do you think about that?",
        )
    ):
        guard.sentence(ReplySentence(reply_to="m1", channel="c", index=i, text=text))
    guard.state(Speaking(channel="c", reply_to="m1", state="start"))
    # ("what do you mean" over her "What do you think" is too close to call: not asserted.)
    for person in ("I don't want that", "no I want to do it today", "tell me about dogs"):
        assert guard.echo("c", person, final=True) is False, person
    assert guard.echo("c", "you could try it tomorrow", final=True) is True
    assert guard.echo("c", "Да, конечно, давай", final=True) is False  # words, not noise
    # A long reply: what she says 40 s in is still hers while she speaks it.
    clock.now += 40.0
    assert guard.echo("c", "a good idea you could try it", final=True) is True
    guard.state(Speaking(channel="c", reply_to="m1", state="stop"))
    assert guard.echo("c", "a good idea you could try it", final=True) is False


def test_one_word_waits_for_more_and_old_words_are_forgotten() -> None:
    clock = ManualClock()
    guard = guard_speaking(clock)
    assert guard.echo("ana/main", "goblin", final=False) is None
    assert guard.echo("ana/main", "goblin", final=True) is True
    guard.state(Speaking(channel="ana/main", reply_to="m1", state="stop"))
    clock.now += 31.0  # what she said half a minute ago is not what comes back now
    assert guard.echo("ana/main", "a goblin kept a hundred", final=True) is False


async def speak(h: ActorHarness[SttActor], audio: np.ndarray, source: str) -> None:
    frame = RATE // 10
    for seq, i in enumerate(range(0, audio.size, frame)):
        await h.send(
            AudioFrame(
                source=source,
                person_id="ana",
                platform="web",
                channel="ana/main",
                seq=seq,
                at=time.time(),
            ),
            key=source,
            blob=to_pcm16(audio[i : i + frame]),
        )
        await asyncio.sleep(0.02)


@pytest.mark.slow
def test_hexs_voice_through_the_speakers_is_dropped_and_a_person_barges_in(
    tmp_path: Path,
) -> None:
    echo = np.concatenate([silence(0.5), espeak(SAID, tmp_path), silence(2.0)])
    person = np.concatenate(
        [silence(0.5), espeak("Stop! Tell me about dogs instead.", tmp_path), silence(2.0)]
    )

    async def scenario() -> ActorHarness[SttActor]:
        h = ActorHarness(SttActor, {}, data_dir=tmp_path)
        await h.setup()
        h.actor.live = True
        await h.send(ReplySentence(reply_to="m1", channel="ana/main", index=0, text=SAID))
        await h.send(Speaking(channel="ana/main", reply_to="m1", state="start"))
        await speak(h, echo, "web:1")
        await speak(h, person, "web:1")
        deadline = time.monotonic() + 120
        while not any("tell" in e.text.lower() for e in h.published if isinstance(e, Utterance)):
            assert time.monotonic() < deadline, "the person's words were never transcribed"
            await asyncio.sleep(0.05)
        await h.stop()
        return h

    h = asyncio.run(scenario())
    utterances = [e for e in h.published if isinstance(e, Utterance)]
    heard_back, *spoken = utterances
    assert heard_back.echo and not heard_back.message_event_id, utterances
    assert spoken and not any(u.echo for u in spoken), utterances
    messages = [e for e in h.published if isinstance(e, ChatMessage)]
    assert messages and all("stop" in m.text.lower() for m in messages), messages
    # Barge-ins only for the person's words: the echo never stopped her.
    barge_ins = [e.utterance for e in h.published if isinstance(e, SpeechStarted)]
    assert barge_ins and set(barge_ins) <= {u.utterance for u in spoken}, (barge_ins, utterances)
