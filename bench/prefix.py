"""What a long conversation costs the model per message: the prompt's layout and llama.cpp's prefix.

llama.cpp evaluates only what follows the longest prefix its context already
holds. Two layouts of the same conversation, each on its own instance of the
packaged SmolLM2 (so neither evicts the other's context), message by message in
turn so the shared machine's noise falls on both alike:

- ``stable``: the prompt as the brain builds it (``actors.brain.prompt.compose``):
  what holds for the conversation, then the turns (whose oldest kept one moves in
  steps), then this message's lines (a denial drawn or not, memories recalled for
  it, what she sees, the length hint) and the message;
- ``flat``, the baseline: the layout the brain used before 2026-12-06, the same
  sections with this message's lines in the first system turn and the turns
  sliding by one as soon as they outgrow their budget.

Each message gets memories and an observation of its own, as in real use. Figures:
time from the call to the first piece, per message, for messages 11 to 20
(``late``: the history is long by then), and ``stable_over_flat_late``, the ratio of
their medians (target ≤ 0.5: at most half the wait). The replies are the model's own
(30 tokens at most), so both conversations grow alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import random
import time
from typing import Any

from actors.brain.backends import ChatTurn, Params
from actors.brain.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from actors.brain.persona import Persona, load_persona
from actors.brain.prompt import (
    Budgets,
    TurnRecord,
    compose,
    length_hint,
    memory_lines,
    system_prompt,
)
from actors.brain.rules import Relationship, care_owed, may_deny, new_relationship
from actors.brain.templates import SHIPPED, render
from bench._common import emit, parser, percentile, progress, run_async, summary
from hexbus.log import configure
from schemas import ChatMessage, MemoryHit

LINES = (
    "so I went to the lake on saturday",
    "the boat tipped over halfway across",
    "my phone is somewhere at the bottom now",
    "what would you have done?",
    "also the ducks were judging me",
    "anyway I bought a new phone",
    "it cost way too much honestly",
    "do you think I should get a case?",
    "my sister laughed at me the whole evening",
    "she says I'm clumsy",
    "am I clumsy?",
    "ok I dropped a plate yesterday too",
    "and my keys in the sink this morning",
    "fine maybe I am a little",
    "tell me something nice",
    "thanks, goblin",
    "what are you doing tonight?",
    "I'm watching a movie later",
    "a horror one, with my sister",
    "wish me luck",
)
LATE = 10  # messages from this index on are "late"


def flat(
    persona: Persona,
    rel: Relationship,
    rng: random.Random,
    memories: list[MemoryHit],
    observation: str,
    turns: list[TurnRecord],
    text: str,
    count: Any,
) -> tuple[list[ChatTurn], int]:
    """The layout before 2026-12-06: one system turn with everything, then the newest turns."""
    budgets = Budgets()
    rules = system_prompt(
        persona, rel, deny_now=may_deny(rel, text, persona, rng), care_owed=care_owed(rel, persona)
    )
    hint, max_tokens = length_hint(text, budgets.reply)
    system = [rules, render(SHIPPED.memories) + "\n" + memory_lines(memories, 200, count)]
    system += [render(SHIPPED.observation) + " " + observation, hint]
    kept: list[TurnRecord] = []
    used = 0
    for turn in reversed(turns):
        used += count(turn.text) + 4
        if used > budgets.turns:
            break
        kept.insert(0, turn)
    out = [ChatTurn("system", "\n\n".join(system))]
    out += [ChatTurn("assistant" if t.role == "assistant" else "user", t.text) for t in kept]
    return [*out, ChatTurn("user", text)], max_tokens


class Talk:
    def __init__(self, layout: str, persona: Persona) -> None:
        self.layout = layout
        self.persona = persona
        self.rel = new_relationship("ana", persona)
        self.rng = random.Random(1)
        self.backend = LlamaCppBackend(LlamaCppConfig())
        self.turns: list[TurnRecord] = []
        self.first_s: list[float] = []

    async def say(self, i: int, text: str) -> None:
        memories = [MemoryHit(id=f"m{i}", text=f"Ana mentioned {text.split()[-1]} once", score=1)]
        observation = f"a desk lamp, a mug, {i} minutes past nine"
        count = self.backend.count_tokens
        if self.layout == "flat":
            turns, _ = flat(
                self.persona, self.rel, self.rng, memories, observation, self.turns, text, count
            )
        else:
            message = ChatMessage(
                platform="console", person_id="ana", display_name="Ana", channel="c", text=text
            )
            turns, _ = compose(
                message,
                persona=self.persona,
                rel=self.rel,
                rng=self.rng,
                profile="",
                memories=memories,
                observation=observation,
                summary="",
                turns=self.turns,
                budgets=Budgets(),
                count=count,
            )
        t0 = time.perf_counter()
        first = None
        pieces = []
        async for piece in self.backend.stream(turns, Params(max_tokens=30, seed=3)):
            first = first if first is not None else time.perf_counter() - t0
            pieces.append(piece)
        self.first_s.append(first if first is not None else time.perf_counter() - t0)
        self.turns += [
            TurnRecord(role="user", text=text),
            TurnRecord(role="assistant", text="".join(pieces)),
        ]


async def run(rounds: int) -> dict[str, list[float]]:
    persona = load_persona()
    late: dict[str, list[float]] = {"stable": [], "flat": []}
    for r in range(rounds):
        sides = [Talk("stable", persona), Talk("flat", persona)]
        for side in sides:
            await side.backend.start()
        try:
            for i, text in enumerate(LINES):
                for side in sides if (i + r) % 2 else reversed(sides):
                    await side.say(i, text)
            for side in sides:
                late[side.layout] += side.first_s[LATE:]
                shown = " ".join(f"{s * 1000:.0f}" for s in side.first_s)
                progress(f"round {r + 1}, {side.layout}: first piece ms per message: {shown}")
        finally:
            for side in sides:
                await side.backend.close()
    return late


def main() -> None:
    args = parser(__doc__).parse_args()
    configure("bench", "warning")  # stdout is the JSON only
    rounds = 1 if args.quick else 3
    late = run_async(run(rounds))
    stable, baseline = percentile(late["stable"], 50), percentile(late["flat"], 50)
    emit(
        {
            "bench": "prefix",
            "quick": args.quick,
            "rounds": rounds,
            "messages_per_conversation": len(LINES),
            **summary(late["stable"], "stable_late_first_s"),
            **summary(late["flat"], "flat_late_first_s"),
            "stable_over_flat_late": round(stable / baseline, 3),
            "target_stable_over_flat_late": 0.5,
        }
    )


if __name__ == "__main__":
    main()
