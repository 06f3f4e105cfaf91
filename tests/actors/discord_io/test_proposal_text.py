"""A proposal's prompt fits Discord's 2000 characters whatever its reason and diff hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.discord_io.suggestions import proposal_text
from schemas import AuditFigures, ProposalView


@settings(max_examples=200, deadline=None)
@given(
    why=st.text(max_size=3000), diff=st.text(max_size=5000), flags=st.lists(st.text(max_size=30))
)
def test_a_prompt_fits_and_its_diff_stays_in_one_code_block(
    why: str, diff: str, flags: list[str]
) -> None:
    p = ProposalView(
        id=12,
        status="ready",
        why=why,
        origin="reflection",
        flags=tuple(flags),
        diff=diff,
        before=AuditFigures(scenarios=110, pass_rate=0.8),
        after=AuditFigures(scenarios=110, pass_rate=0.75),
    )
    text = proposal_text(p)
    assert len(text) <= 2000
    assert text.endswith("\n```")
    body = text[text.index("```diff\n") + len("```diff\n") : -len("\n```")]
    assert "```" not in body  # the block ends where we end it
    assert "0.80 → 0.75" in text
