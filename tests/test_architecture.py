"""The code's shape, checked: no ad hoc background tasks, hexbus free of actors, no import cycles.

Each check reads the source with ``ast`` (or imports it in a fresh interpreter), so a
new actor that copies the wrong pattern fails here, with the file and line named.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

from tests.support.harness import REPO

PACKAGES = ("hexbus", "schemas", "actors")
EVERYTHING = (*PACKAGES, "tests", "bench")
TASK_CALLS = {"create_task", "ensure_future"}


def modules(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def bare_tasks(path: Path) -> list[str]:
    """``file:line`` of every ``create_task``/``ensure_future`` call in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in TASK_CALLS:
            hits.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return hits


def in_an_actor_process(name: str) -> bool:
    """Code that runs inside an actor, on the base class's loop.

    The supervisor is the runtime's own process manager, and console.py / cli.py are the
    command-line clients a package registers (they run in the `hexbus` command's process,
    with no Actor to own their tasks).
    """
    return (
        name.startswith("actors.")
        and not name.startswith("actors.supervisor")
        and name.rpartition(".")[2] not in ("console", "cli")
    )


def test_no_actor_starts_a_task_of_its_own_outside_spawn() -> None:
    offenders = [
        hit
        for name, path in modules().items()
        if in_an_actor_process(name)
        for hit in bare_tasks(path)
    ]
    assert not offenders, (
        "background tasks in actors go through Actor.spawn(coro, name=...), "
        f"never create_task/ensure_future: {offenders}"
    )


def test_the_task_check_finds_a_bare_task(tmp_path: Path) -> None:
    sample = REPO / "tests" / "_sample_bare_task.py"
    sample.write_text(
        textwrap.dedent(
            """
            import asyncio
            async def f():
                asyncio.get_running_loop().create_task(f())
                asyncio.ensure_future(f())
            """
        )
    )
    try:
        assert bare_tasks(sample) == [
            "tests/_sample_bare_task.py:4",
            "tests/_sample_bare_task.py:5",
        ]
    finally:
        sample.unlink()


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, anywhere in its body (inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from pkg import name` imports pkg.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_no_import_cycle_in_the_runtime_or_the_actors() -> None:
    # A package's __init__ runs before its submodules, so an edge from a submodule to its own
    # package is Python's doing, not a design choice: it is left out.
    graph = {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in import_graph().items()
    }
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_through_an_import_inside_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_an_actor_imports_no_other_actor_and_hexbus_no_actor() -> None:
    problems = []
    for name, targets in import_graph().items():
        top = name.split(".")
        for target in targets:
            other = target.split(".")
            if top[0] == "hexbus" and other[0] == "actors":
                problems.append(f"{name} imports {target}")
            if (
                top[0] == other[0] == "actors"
                and len(top) > 1
                and len(other) > 1
                and top[1] != other[1]
            ):
                problems.append(f"{name} imports {target}")
    assert problems == []


def test_every_hexbus_module_imports_with_actors_unimportable() -> None:
    names = sorted(n for n in modules() if n == "hexbus" or n.startswith("hexbus."))
    program = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class NoActors(importlib.abc.MetaPathFinder):
            def find_spec(self, fullname, path=None, target=None):
                if fullname == "actors" or fullname.startswith("actors."):
                    raise ImportError(f"actors is not importable here ({{fullname}})")
                return None

        sys.meta_path.insert(0, NoActors())
        for name in {names!r}:
            importlib.import_module(name)
        from hexbus.cli import build_parser
        parser = build_parser()  # registered commands that cannot load become a one-line error
        assert not any(m.startswith("actors") for m in sys.modules), "an actor module was imported"
        print("ok", len({names!r}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok ")


def test_a_registered_command_that_cannot_load_fails_in_one_line() -> None:
    program = textwrap.dedent(
        """
        import importlib.abc, sys

        class NoActors(importlib.abc.MetaPathFinder):
            def find_spec(self, fullname, path=None, target=None):
                if fullname == "actors" or fullname.startswith("actors."):
                    raise ImportError("no actors here")
                return None

        sys.meta_path.insert(0, NoActors())
        from hexbus.cli import main
        main(["chat"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and "the 'chat' command (actors.brain.cli:add_chat) cannot load" in lines[0]
    )


def test_application_commands_are_found_through_entry_points() -> None:
    from importlib import metadata

    registered = {e.name: e.value for e in metadata.entry_points(group="hexbus.commands")}
    assert {"run", "chat", "persona", "memory", "voice"} <= set(registered)
    assert all(value.startswith("actors.") for value in registered.values())
    hexbus_sources = "\n".join(p.read_text() for p in (REPO / "hexbus").glob("*.py"))
    assert "actors." not in "\n".join(
        line for line in hexbus_sources.splitlines() if line.lstrip().startswith(("import", "from"))
    )


def test_no_module_grows_past_500_lines_without_saying_why() -> None:
    long = []
    for path in modules(packages=EVERYTHING).values():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= 500:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "one cohesive" not in doc:
            long.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert long == [], (
        "split these by idea, or say in the docstring why they are one cohesive class"
    )


def test_one_meaning_per_class_name() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for name, path in modules(packages=EVERYTHING).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(name)
    shared = {cls: mods for cls, mods in where.items() if len(mods) > 1}
    assert shared == {}
