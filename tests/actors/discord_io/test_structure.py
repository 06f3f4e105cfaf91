"""The Discord actor's shape, read from its source: no import cycles (imports inside functions and
for type checking count), background tasks only through the base class's spawn(), discord.py
imported at module level only by the modules that subclass its classes."""

from __future__ import annotations

import ast
from pathlib import Path

import actors.discord_io

PACKAGE = "actors.discord_io"
FOLDER = Path(actors.discord_io.__file__).parent
MODULES = {f"{PACKAGE}.{p.stem}": p for p in sorted(FOLDER.glob("*.py")) if p.stem != "__init__"}
# Subclasses of discord.py's own classes (Bot, Cog, View, DynamicItem, AudioSource, AudioSink) need it at import.
IMPORT_DISCORD = {"bot", "buttons", "commands", "voice"}


def tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))


def imported(node: ast.AST) -> list[str]:
    """The modules an import statement names (``from pkg import mod`` names ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return []


def local_imports(module: str) -> set[str]:
    return {
        name
        for node in ast.walk(tree(module))
        for name in imported(node)
        if name in MODULES and name != module
    }


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_top_level_imports(module: str) -> set[str]:
    """What a module imports when it is imported: its top level, outside ``if TYPE_CHECKING``."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and is_type_checking(node):
                visit(node.orelse)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                found.update(imported(node))
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child])
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree(module).body)
    return found


def test_no_module_of_the_actor_imports_another_in_a_circle() -> None:
    graph = {module: local_imports(module) for module in MODULES}
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph[module]):
            walk(target, [*path, module])
        done.add(module)

    for module in MODULES:
        walk(module, [])


def test_background_tasks_start_only_through_the_base_class_spawn() -> None:
    bare = []
    for module in MODULES:
        for node in ast.walk(tree(module)):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if name in ("create_task", "ensure_future"):
                    bare.append(f"{module}:{node.lineno} {name}")
    assert not bare, bare


def test_discord_py_is_imported_at_module_level_only_where_its_classes_are_subclassed() -> None:
    importing = {
        module.rsplit(".", 1)[1]
        for module in MODULES
        if any(
            n == "discord" or n.startswith("discord.") for n in runtime_top_level_imports(module)
        )
    }
    assert importing == IMPORT_DISCORD


def test_the_actor_module_imports_discord_py_nowhere_and_the_parts_not_the_actor() -> None:
    in_actor = {n for node in ast.walk(tree(f"{PACKAGE}.actor")) for n in imported(node)}
    assert not {n for n in in_actor if n == "discord" or n.startswith("discord.")}
    for module in MODULES:
        if module != f"{PACKAGE}.actor":
            assert f"{PACKAGE}.actor" not in local_imports(module), module


def test_nothing_attaches_state_to_the_actor_from_outside() -> None:
    for module in MODULES:
        for node in ast.walk(tree(module)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr":
                raise AssertionError(f"{module}:{node.lineno} setattr")
