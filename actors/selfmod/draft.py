"""An owner's request in plain words becomes a diff: which persona key it is about, the
brain's rewrite of that key, and the unified diff that puts it in persona.toml.

The model writes only the new text of one key; this module, not the model, writes the diff
(tomlkit changes that one value and keeps every comment and line around it), so a small
model's draft is never a malformed patch. The guard and the rules check it like any other.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from actors.selfmod.guard import PERSONA, ProposalRefused
from schemas import SelfmodRequest

DEFAULT_KEY = "style.sentence_shape"
# Words in a request that point at one reaction; anything else is about how she talks.
_POINTERS: tuple[tuple[str, str], ...] = (
    ("reactions.greeting", r"\b(greet\w*|hello|say(s|ing)? hi)\b"),
    ("reactions.goodbye", r"\b(goodbye\w*|bye|farewell\w*)\b"),
    ("reactions.compliment_received", r"\bcompliment\w*\b"),
    ("reactions.thanked", r"\bthank\w*\b"),
    ("reactions.teased", r"\bteas\w*\b"),
    ("reactions.user_stressed", r"\bstress\w*\b"),
    ("reactions.asked_name", r"\b(your name|asked (for )?(her|your) name)\b"),
)


LONGEST_REQUEST = 500  # characters: as the page and Discord take them


def refusal(event: SelfmodRequest, propose_on: bool) -> str:
    """Why an owner's request from an owners' channel is not drafted ("" when it is)."""
    if not event.owner:
        return f"only an owner may ask her to change ({event.by} is not one)"
    if not propose_on:
        return "selfmod.propose is off: `hexbus capability enable selfmod.propose` first"
    if not event.text.strip() or len(event.text) > LONGEST_REQUEST:
        return f"say what to change in 1 to {LONGEST_REQUEST} characters"
    return ""


def choose_key(request: str) -> str:
    words = request.lower()
    for key, pattern in _POINTERS:
        if re.search(pattern, words):
            return key
    return DEFAULT_KEY


def _tomlkit() -> Any:
    try:
        import tomlkit
    except ImportError:
        raise ProposalRefused("drafting needs tomlkit: pip install -e '.[selfmod]'") from None
    return tomlkit


def current(text: str, key: str) -> str:
    """The string at dotted ``key`` in persona TOML; :class:`ProposalRefused` when there is none."""
    node: Any = _tomlkit().parse(text)
    for part in key.split("."):
        if not hasattr(node, "get") or part not in node:
            raise ProposalRefused(f"persona.toml has no {key}")
        node = node[part]
    if not isinstance(node, str):
        raise ProposalRefused(
            f"persona.toml {key} is not text: a draft rewrites text settings only"
        )
    return str(node)


def first(text: str, keys: tuple[str, ...]) -> tuple[str, str]:
    """The first of ``keys`` persona TOML ``text`` has, with its string (the last one's
    :class:`ProposalRefused` when it has none of them)."""
    for i, key in enumerate(keys):
        try:
            return key, current(text, key)
        except ProposalRefused:
            if i == len(keys) - 1:
                raise
    raise ProposalRefused("no persona key to change")


def change(text: str, key: str, old: str, new: str) -> str:
    """The diff that makes ``key``'s ``old`` string ``new``; "" when ``new`` is empty or says
    the same words (a model echoing the setting changes nothing)."""
    if not new.strip() or new.split() == old.split():
        return ""
    return unified(text, rewrite(text, key, new))


def rewrite(text: str, key: str, value: str) -> str:
    """``text`` with the string at ``key`` replaced by ``value``, everything else kept."""
    tomlkit = _tomlkit()
    doc = tomlkit.parse(text)
    node: Any = doc
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    value = value.strip()
    multiline = "\n" in value or len(value) > 80
    if multiline:
        value = "\n" + "\n".join(_wrap(value)) + "\n"
    node[last] = tomlkit.string(value, multiline=multiline)
    return str(tomlkit.dumps(doc))


def _wrap(value: str, width: int = 92) -> list[str]:
    out: list[str] = []
    for paragraph in value.splitlines():
        line = ""
        for word in paragraph.split():
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        out.append(line)
    return out


def unified(before: str, after: str, path: str = PERSONA, *, new: bool = False) -> str:
    """A git-style unified diff of one file (the form the guard reads); ``new``: a file it
    creates (from ``/dev/null``, ``before`` empty)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        "/dev/null" if new else f"a/{path}",
        f"b/{path}",
        n=3,
    )
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            line = line.rstrip("\n") + "\n"
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
