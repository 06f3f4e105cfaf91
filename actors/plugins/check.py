"""What a plugin may be: read from its source, never run.

A plugin is one small Python module that reacts to a few kinds of events through the API it is
handed (:mod:`actors.plugins.runner`). Before it is ever loaded, and again each time it is, its
source is read with :mod:`ast` and refused, with the line and the reason, when it could reach
further than that API: an import outside :data:`MODULES`, a name that opens files or runs code
(``open``, ``exec``, ``__import__``, ``getattr``…), any attribute or string naming a dunder or a
private or frame attribute (the ways out of a restricted Python), a relative import, or no
``TOPICS`` / ``react``. The check is one of three layers: the runner also hands the module only
safe builtins and a gated import, and the whole process runs in the sandbox (no network, a
read-only machine, its own pids, resource limits), so what a clever source slips past one layer
meets the next.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from hexbus.config import parse_python

MAX_BYTES = 20_000
# Standard-library modules without files, processes, sockets, threads or introspection, and
# without functions that look attributes up by a name given at run time or evaluate strings
# (so not functools' update_wrapper, typing's get_type_hints, dataclasses, enum's metaclasses).
MODULES = frozenset(
    {
        "collections",
        "datetime",
        "itertools",
        "json",
        "math",
        "random",
        "re",
        "statistics",
        "textwrap",
        "unicodedata",
    }
)
# What a plugin may hear: people's words, Hex's replies, what she saw happen.
TOPICS = frozenset({"chat.message", "chat.reply", "vision.moment"})
REFUSED_NAMES = frozenset(
    {
        "open",
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "locals",
        "vars",
        "dir",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "breakpoint",
        "input",
        "help",
        "memoryview",
        "exit",
        "quit",
        "type",
        "object",
        "super",
        "classmethod",
        "staticmethod",
        "property",
        "__builtins__",
        "__loader__",
        "__spec__",
    }
)
# Attributes that lead from an object to frames, code, globals, other modules, or (format) to
# attributes named by a string built at run time.
_FRAME = re.compile(r"_|(f|gi|cr|ag|tb|co)_|(mro|format|format_map|vformat)$")
# Modules the allowed ones import and keep as attributes (``typing.sys``, ``datetime.sys``):
# never reachable from a plugin (the runner also hands it modules without module attributes).
_MODULE_ATTRS = frozenset(
    {"sys", "os", "builtins", "inspect", "importlib", "types", "gc", "ctypes", "io", "socket",
     "subprocess", "posix", "pathlib", "shutil", "signal", "threading", "weakref", "copy",
     "abc", "collections_abc", "warnings", "linecache", "tokenize", "code", "codecs", "marshal",
     "pickle", "operator", "contextlib", "traceback", "select", "mmap", "resource", "atexit"}
)  # fmt: skip


class PluginRefused(ValueError):
    """The source may not be loaded; the message names the line and the reason."""


@dataclass(frozen=True)
class Checked:
    topics: tuple[str, ...]


def check(source: str, name: str = "plugin") -> Checked:
    """Read ``source``; raise :class:`PluginRefused` with the first reason it may not run."""
    if len(source.encode("utf-8")) > MAX_BYTES:
        raise PluginRefused(f"{name}: over {MAX_BYTES} bytes: a plugin is a small module")
    try:
        tree = parse_python(source, filename=name)
    except SyntaxError as exc:
        raise PluginRefused(f"{name}:{exc.lineno}: not valid Python: {exc.msg}") from None
    for node in ast.walk(tree):
        _refuse(node, name)
    return Checked(topics=_shape(tree, name))


_IDENTIFIERS = ("id", "arg", "attr", "name", "asname", "module", "rest")


def _names(node: ast.AST) -> list[str]:
    """Every identifier the node spells: a variable, a parameter, a keyword, a definition, an
    import, a pattern's names."""
    found = [v for f in _IDENTIFIERS if isinstance(v := getattr(node, f, None), str)]
    for f in ("names", "kwd_attrs"):
        found += [v for v in getattr(node, f, None) or () if isinstance(v, str)]
    return found


def _refuse(node: ast.AST, name: str) -> None:
    def no(why: str) -> PluginRefused:
        return PluginRefused(f"{name}:{getattr(node, 'lineno', 0)}: {why}")

    for spelled in _names(node):
        if spelled.startswith("__") or ".__" in spelled:
            raise no(f"names {spelled}: dunder names are out of a plugin's reach")
    if isinstance(node, ast.Match):
        raise no("match: its class patterns look attributes up by name")
    if isinstance(node, ast.ClassDef) and node.keywords:
        raise no("a class with keywords (a metaclass): out of a plugin's reach")
    if isinstance(node, ast.ExceptHandler) and node.type is None:
        raise no("a bare except: name the errors it handles")

    if isinstance(node, ast.Import | ast.ImportFrom):
        if isinstance(node, ast.ImportFrom) and (node.level or node.module is None):
            raise no("a relative import: a plugin imports only the modules it is allowed")
        modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        modules += [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for module in modules:
            if module.split(".")[0] not in MODULES or "." in module:
                raise no(f"imports {module}: a plugin may import only {', '.join(sorted(MODULES))}")
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*" or alias.name.startswith("_"):
                    raise no(f"imports {alias.name} from {node.module}: name what it uses")
    elif isinstance(node, ast.Name) and (node.id in REFUSED_NAMES or node.id.startswith("__")):
        raise no(f"uses {node.id}: not in a plugin's reach (it works through its `hex` API)")
    elif isinstance(node, ast.Attribute) and (
        _FRAME.match(node.attr) or node.attr in _MODULE_ATTRS
    ):
        raise no(f"reads .{node.attr}: private, frame and module attributes are out of reach")
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "__" in node.value:
        raise no("a string with '__' in it: the way to a dunder through format() or a lookup")
    elif isinstance(node, ast.Global | ast.Nonlocal | ast.AsyncFunctionDef | ast.Await):
        raise no(f"{type(node).__name__.lower()}: a plugin is plain, synchronous code")


def _shape(tree: ast.Module, name: str) -> tuple[str, ...]:
    """``TOPICS = ("chat.message", ...)`` and ``def react(event, hex)`` at the top level."""
    topics: tuple[str, ...] | None = None
    react = False
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TOPICS" for t in node.targets
        ):
            value = node.value
            if not isinstance(value, ast.Tuple | ast.List) or not all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
            ):
                raise PluginRefused(f"{name}:{node.lineno}: TOPICS is a tuple of topic names")
            topics = tuple(str(e.value) for e in value.elts if isinstance(e, ast.Constant))
        elif isinstance(node, ast.FunctionDef) and node.name == "react":
            react = len(node.args.args) == 2
    if not topics:
        raise PluginRefused(f"{name}: no TOPICS: say which events it reacts to")
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        raise PluginRefused(
            f"{name}: TOPICS has {unknown[0]!r}: a plugin may hear {', '.join(sorted(TOPICS))}"
        )
    if not react:
        raise PluginRefused(f"{name}: no `def react(event, hex)` at the top level")
    return topics
