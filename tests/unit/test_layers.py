"""The layers import in one direction, no project module imports itself round a cycle, and no function is over
60 lines (issue 31).

    food_rotation/   the library: model, imaging, training, evaluation   imports neither layer above
    auth_plugin/     the gateway                                         may import the library
    operations/      processes and jobs driving both                     may import both

Every import counts, at the top of a module or inside a function, TYPE_CHECKING ones too: a cycle hidden in a
function is still a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("food_rotation", "auth_plugin", "operations")
MAY_IMPORT = {"food_rotation": {"food_rotation"}, "auth_plugin": {"food_rotation", "auth_plugin"},
              "operations": set(PACKAGES)}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules `path` imports ("from a import b" is module a.b where that is one, else a)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] in PACKAGES)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {other for other in imported(path, known) if other != name} for name, path in known.items()}


def test_each_layer_imports_only_itself_and_the_layers_below():
    wrong = sorted(f"{name} imports {other}" for name, others in graph().items() for other in others
                   if other.split(".")[0] not in MAY_IMPORT[name.split(".")[0]])
    assert wrong == []


def test_no_project_module_imports_itself_round_a_cycle():
    edges = graph()
    cycles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(edges.get(name, ())):
            if state.get(other) == 1:
                cycles.append(" -> ".join([*path[path.index(other):], other]))
            elif other not in state:
                visit(other, [*path, other])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_check_sees_what_it_must():
    """The graph holds the imports that matter: a function-level one, a TYPE_CHECKING one, `from pkg import mod`."""
    edges = graph()
    assert "auth_plugin.database" in edges["auth_plugin.migrations"]  # from auth_plugin.database import ...
    assert "operations.torchserve_process" in edges["operations.gateway_process"]  # under TYPE_CHECKING
    assert {"operations.retrain", "operations.retrain_start"} <= set(edges) and len(edges) > 80


def test_no_function_is_over_sixty_lines():
    """Long functions wired every part in one place (create_app, feedback's add_routes): each part wires itself."""
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []
