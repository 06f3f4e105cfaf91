"""Stateful test of the real brain: bursts, barge-ins, quiet, persona edits and a SIGKILL, in any order.

The brain runs through the supervisor on the packaged model. Hypothesis picks the
steps: bursts of one to four lines into a few conversations (down to 50 ms apart,
from one person or two), each followed, at once or a little later, by a barge-in,
a non-direct line in a quiet channel, an edit to persona.toml, the one SIGKILL of
the brain, a probe that must be answered while all that goes on, or nothing. (One
rule with a follow-up rather than a rule per action: with a rule each, hypothesis
spent whole examples on persona edits and never sent a burst.) At the end:

- every message has exactly one final ``chat.reply``, whatever happened to it;
- a piece answered with the rest of its turn points at a reply that lists it;
- the last line of every burst that nothing interrupted (no newer line, no barge-in
  in its conversation before its reply arrived) got a ``complete`` reply, in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from schemas import BargeIn, QuietMode, Reply
from tests.support.brain import brain_toml
from tests.support.brain_chat import ChatThread
from tests.support.harness import Hex, poll_for

pytestmark = [pytest.mark.process, pytest.mark.slow]

CONVERSATIONS = ("c1", "c2", "c3")
PEOPLE = ("ana", "bo")
GAPS_S = (0.05, 0.2, 0.5, 1.0)
LINES = (
    "ok so",
    "I finally went to the lake on Saturday",
    "and the boat tipped over halfway across",
    "my phone is somewhere at the bottom now",
    "what would you have done?",
    "also the ducks were judging me",
)
THEN = ("nothing", "barge_in", "quiet_line", "edit_persona", "sigkill", "probe")
AFTER_S = (0.0, 0.3, 1.0)
# Generous: a restart, replies queued for the one model instance, two busy cores.
REPLY_BOUND_S = 150.0
BRAIN = "metadata = false\nbudgets = { reply = 48 }"


@dataclass
class Sent:
    id: str
    conversation: str
    at: float  # monotonic
    last_of_burst: bool
    quiet: bool = False


class BrainConversations(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        root = Path(tempfile.mkdtemp(prefix="hx", dir="/tmp"))
        self.hx = Hex(brain_toml(root, extra=BRAIN, backoff_initial_s=0.05), root=root).start()
        self.persona = root / "persona.toml"
        self.chat = ChatThread(self.hx)
        self.sent: list[Sent] = []
        # Per conversation, when each line or barge-in was sent: what may interrupt a reply.
        self.events: defaultdict[str, list[float]] = defaultdict(list)
        self.kills = 0
        self.edits = 0

    def send(
        self, text: str, conversation: str, person: str, *, last: bool, direct: bool = True
    ) -> Sent:
        # Stamped before it is sent: on busy cores the reply it causes can arrive before this
        # thread wakes from the send, and an interruption must not look later than its effect.
        at = time.monotonic()
        envelope = self.chat.call(
            self.chat.chat.send(text, channel=conversation, person=person, direct=direct)
        )
        sent = Sent(envelope.id, conversation, at, last, quiet=not direct)
        self.sent.append(sent)
        self.events[conversation].append(at)
        return sent

    @rule(
        conversation=st.sampled_from(CONVERSATIONS),
        people=st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=4),
        gap=st.sampled_from(GAPS_S),
        then=st.sampled_from(THEN),
        after=st.sampled_from(AFTER_S),
    )
    def burst(
        self, conversation: str, people: list[str], gap: float, then: str, after: float
    ) -> None:
        """Lines in a row, then (``after`` seconds later, mid-reply as often as not) one more
        thing: a barge-in, a quiet line, a persona edit, the SIGKILL, a probe, or nothing."""
        for i, person in enumerate(people):
            if i:
                time.sleep(gap)
            self.send(LINES[i % len(LINES)], conversation, person, last=i == len(people) - 1)
        time.sleep(after)
        if then == "barge_in":
            self.barge_in(conversation)
        elif then == "quiet_line":
            self.quiet_line()
        elif then == "edit_persona":
            self.edit_persona()
        elif then == "sigkill" and not self.kills:
            self.sigkill()
        elif then == "probe":
            self.probe()

    def barge_in(self, conversation: str) -> None:
        publish = self.chat.chat.client.publish_durable
        self.events[conversation].append(time.monotonic())  # before: see send()
        self.chat.call(publish(BargeIn(channel=conversation, person_id="ana", said="")))

    def quiet_line(self) -> None:
        """A line not addressed to Hex in a quiet channel: heard, closed without an answer."""
        publish = self.chat.chat.client.publish_durable
        until = time.time() + 600
        self.chat.call(publish(QuietMode(scope="channel", target="q", until=until)))
        self.send("just talking to myself", "q", "ana", last=False, direct=False)
        self.chat.call(publish(QuietMode(scope="channel", target="q", until=0)))

    def edit_persona(self) -> None:
        self.edits += 1
        text = self.persona.read_text()
        summary = 'summary = "a chaotic tsundere goblin and AI companion'
        self.persona.write_text(text.replace(summary, f"{summary} (edit {self.edits})", 1))

    def sigkill(self) -> None:
        os.kill(self.hx.pid("brain"), signal.SIGKILL)
        self.kills += 1

    def probe(self) -> None:
        """Whatever else is going on, a new conversation is answered."""
        sent = self.send("hi, are you there?", "probe", "cy", last=True)
        reply = self.chat.call(self.final(sent.id), timeout=REPLY_BOUND_S + 5)
        assert reply.status == "complete", f"the probe got {reply}"

    async def final(self, message_id: str) -> Reply:
        deadline = time.monotonic() + REPLY_BOUND_S
        while message_id not in self.chat.chat.replies:
            assert time.monotonic() < deadline, f"no final reply to {message_id}"
            await asyncio.sleep(0.05)
        return self.chat.chat.replies[message_id]

    def teardown(self) -> None:
        try:
            self.check()
        except BaseException:
            print(self.hx.log()[-30000:])  # shown with the failure
            raise
        finally:
            self.chat.close()
            self.hx.discard()

    def check(self) -> None:
        chat = self.chat.chat
        poll_for(
            lambda: all(s.id in chat.replies for s in self.sent),
            REPLY_BOUND_S,
            interval=0.2,
            what="a final reply to every message sent",
        )
        time.sleep(1.0)  # room for a duplicate to show up, were there one
        finals: defaultdict[str, list[tuple[float, Reply]]] = defaultdict(list)
        for arrived, reply in list(chat.finals):
            finals[reply.reply_to].append((arrived, reply))
        for sent in self.sent:
            got = finals[sent.id]
            assert len(got) == 1, f"{len(got)} final replies to {sent}: {got}"
            arrived, reply = got[0]
            if reply.merged_into:
                whole = finals[reply.merged_into][0][1]
                assert sent.id in whole.merged and not reply.text, (reply, whole)
            if sent.quiet:
                assert reply.status == "cancelled" and not reply.text, reply
                continue
            interrupted = any(sent.at < t < arrived for t in self.events[sent.conversation])
            if sent.last_of_burst and not interrupted:
                assert reply.status == "complete", f"{sent}: {reply}"
                assert arrived - sent.at < REPLY_BOUND_S
        if self.edits:
            poll_for(
                lambda: any(p.version > 1 for p in chat.persona),  # the file as shipped is 1
                30,
                what="the persona edit taken up as a new version",
            )


def test_every_message_gets_one_final_reply_and_bursts_never_wedge_the_brain() -> None:
    # Random sequences (derandomized ones start with the dullest: eight persona edits), and no
    # shrinking: with real processes and a model it would take longer than the suite.
    BrainConversations.TestCase.settings = settings(
        max_examples=3,
        stateful_step_count=10,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        database=None,
    )
    BrainConversations.TestCase().runTest()
