"""A brain stand-in for memory tests that need a verdict the small real model cannot give reliably.

It is a real actor on the real bus answering the real ``brain.task`` protocol; only its judgement is
scripted: two facts contradict when they start with the same three words and then differ (e.g.
"Maya lives in Porto" / "Maya lives in Lisbon"). The real brain's side of the protocol is tested with
the real model in tests/actors/brain.
"""

from __future__ import annotations

from typing import ClassVar

from hexbus import Actor, NoConfig, NoState, on
from schemas import BrainTask, BrainTaskResult


class ScriptedJudge(Actor[NoConfig, NoState]):
    subscribes: ClassVar[tuple[str, ...]] = ("brain.task",)

    @on(BrainTask)
    async def on_task(self, event: BrainTask) -> None:
        if event.kind != "contradiction":
            await self.respond(BrainTaskResult(error="this judge only judges contradictions"))
            return
        old, new = event.text.lower().split(), event.other.lower().split()
        await self.respond(BrainTaskResult(contradicts=old[:3] == new[:3] and old[3:] != new[3:]))
