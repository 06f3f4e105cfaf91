"""What her plugins told the brain (``plugin.note``): a line for the next reply, fresh only.

Each plugin's latest note is kept per person for ``plugin_note_fresh_s``; the prompt gets those
for the person being answered, under their own heading, never as something she saw or
remembers. Notes are taken only from the plugin host, and only for one person (a note for
everyone would carry one person's words into another's reply).
"""

from __future__ import annotations

from actors.brain.config import BrainConfig, BrainState
from schemas import PluginNote

KEPT = 64  # notes held at most (the oldest go first)


class PluginNotes:
    def __init__(self, state: BrainState, config: BrainConfig) -> None:
        self.state = state
        self.fresh_s = config.plugin_note_fresh_s

    def heard(self, event: PluginNote, now: float) -> None:
        if not event.person_id:
            return
        notes = self.state.plugin_notes
        notes[f"{event.plugin}|{event.person_id}"] = (event.text[:200], now)
        for key in sorted(notes, key=lambda k: notes[k][1])[: max(0, len(notes) - KEPT)]:
            del notes[key]

    def line(self, person_id: str, now: float) -> str:
        """The notes for ``person_id`` still fresh, "; "-joined ("" when none)."""
        fresh = sorted(
            (key, text)
            for key, (text, at) in self.state.plugin_notes.items()
            if key.split("|", 1)[1] == person_id and now - at < self.fresh_s
        )
        return "; ".join(text for _, text in fresh)
