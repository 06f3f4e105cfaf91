"""The brain's prompt templates: the words around each section of a reply's prompt and the
instruction that stands for the person's words when Hex speaks first.

They are the response logic Hex may propose to change at level 4 (``selfmod.logic``), as
``prompts/reply.toml`` and ``prompts/opening.toml`` in selfmod's state repository; the shipped
texts below are used for every key a file leaves out. A file is read strictly: known files
and keys only, each value one line of text of at most :data:`MAX_CHARS` characters, with only
the placeholders its key declares (``{speaker}``), each at most once, no attribute or index
access, no conversions or format specs, and every placeholder a key requires. Every template is
rendered (``{{`` is a literal brace in each). The persona section (her
values, hard limits and crisis rules) is not a template: no file here can reach it.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from pathlib import Path

import msgspec
import structlog

MAX_CHARS = 600


class TemplateError(Exception):
    """A template file the brain will not use: one line naming the file, the key and why."""


class Templates(msgspec.Struct, frozen=True, kw_only=True):
    """The texts, shipped or as the state repository's ``prompts/`` files have them."""

    profile: str = "What you know about {speaker}:"
    memories: str = "Things you remember (use them naturally, never list them):"
    observation: str = "What you see right now:"
    notes: str = "Notes from your plugins:"
    summary: str = "Earlier in this conversation:"
    short: str = "Reply in one or two short sentences."
    medium: str = "Reply in two to four sentences."
    long: str = "Reply in a short paragraph at most."
    opening: str = (
        "[{who} has not written; {name} starts the conversation. Why now: {why}.{about} Write "
        "the message {name} sends {who}: short and natural, in character, at most one question. "
        "Never say that anything reminded or asked you to write.]"
    )


# file -> key in the file -> (Templates field, placeholders allowed, placeholders required)
FILES: dict[str, dict[str, tuple[str, frozenset[str], frozenset[str]]]] = {
    "reply.toml": {
        "profile": ("profile", frozenset({"speaker"}), frozenset()),
        "memories": ("memories", frozenset(), frozenset()),
        "observation": ("observation", frozenset(), frozenset()),
        "notes": ("notes", frozenset(), frozenset()),
        "summary": ("summary", frozenset(), frozenset()),
        "length.short": ("short", frozenset(), frozenset()),
        "length.medium": ("medium", frozenset(), frozenset()),
        "length.long": ("long", frozenset(), frozenset()),
    },
    "opening.toml": {
        "instruction": (
            "opening",
            frozenset({"who", "name", "why", "about"}),
            frozenset({"why"}),  # the reason she speaks first is what the model answers
        ),
    },
}
SHIPPED = Templates()


def _flat(name: str, table: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """The file's keys, dotted; a quoted key with a dot in it ("length.short" = ...) is refused,
    so no template can be written two ways in one file."""
    out: dict[str, object] = {}
    for key, value in table.items():
        if "." in key:
            raise TemplateError(f"prompts/{name}: {key!r}: write it as a table, not a quoted key")
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(name, value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _check_text(where: str, text: object, allowed: frozenset[str], required: frozenset[str]) -> str:
    if not isinstance(text, str):
        raise TemplateError(f"{where}: not text")
    if not text.strip() or "\n" in text or "\r" in text or len(text) > MAX_CHARS:
        raise TemplateError(f"{where}: one line of 1 to {MAX_CHARS} characters")
    if not text.isprintable():
        raise TemplateError(f"{where}: control characters")
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc} (a literal brace is written {{{{ or }}}})") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or field not in allowed:
            names = ", ".join(f"{{{a}}}" for a in sorted(allowed)) or "none"
            raise TemplateError(
                f"{where}: {{{field}}} is not a placeholder here (allowed: {names})"
            )
        if spec or conversion:
            raise TemplateError(f"{where}: {{{field}}} takes no conversion or format")
        if field in used:  # each once: a template cannot multiply what fills it
            raise TemplateError(f"{where}: {{{field}}} more than once")
        used.add(field)
    if missing := sorted(required - used):
        raise TemplateError(f"{where}: needs {', '.join(f'{{{m}}}' for m in missing)}")
    return text


def parse(files: Mapping[str, bytes]) -> Templates:
    """The templates for ``prompts/``'s files (name -> bytes; names without the folder), or
    :class:`TemplateError` for the first thing wrong."""
    changes: dict[str, str] = {}
    for name in sorted(files):
        keys = FILES.get(name)
        if keys is None:
            known = ", ".join(f"prompts/{f}" for f in FILES)
            raise TemplateError(f"prompts/{name}: not a template file (known: {known})")
        try:
            table = tomllib.loads(files[name].decode("utf-8"))
        except UnicodeDecodeError:
            raise TemplateError(f"prompts/{name}: not UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"prompts/{name}: not valid TOML: {exc}") from None
        for key, value in _flat(name, table).items():
            if key not in keys:
                raise TemplateError(
                    f"prompts/{name}: {key} is not a template (known: {', '.join(keys)})"
                )
            field, allowed, required = keys[key]
            changes[field] = _check_text(f"prompts/{name} {key}", value, allowed, required)
    return msgspec.structs.replace(SHIPPED, **changes)


def load(folder: Path) -> Templates:
    """The templates of a state repository's copy (its ``prompts/`` files; shipped without)."""
    prompts = folder / "prompts"
    if not prompts.is_dir():
        return SHIPPED
    return parse({f.name: f.read_bytes() for f in sorted(prompts.iterdir()) if f.is_file()})


def from_state(files: Mapping[str, str]) -> Templates:
    """The templates the brain's state kept (checked when they were handed over; a file the
    reader of this version refuses leaves the shipped templates, with the reason logged)."""
    try:
        return parse({name: text.encode() for name, text in files.items()})
    except TemplateError as exc:
        structlog.get_logger("actors.brain").error("brain.prompts_unreadable", error=str(exc))
        return SHIPPED


def render(template: str, **values: str) -> str:
    """``template`` with its placeholders filled (it passed :func:`parse`'s checks)."""
    return template.format_map(values)
