"""The shape of the package, as the GUIDE asks for it: every module says what it holds, no class
over 200 lines or function over 50, subpackages in layers that import only downwards, and no
import cycle inside the package (lazy imports in functions and imports for type checkers
count)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dcgan"
MAX_CLASS_LINES, MAX_FUNCTION_LINES = 200, 50


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


def test_every_module_opens_with_a_docstring():
    missing = [name for name, tree in modules().items() if not ast.get_docstring(tree)]
    assert not missing


def test_no_class_or_function_is_too_long():
    too_long = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            lines = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and lines > MAX_CLASS_LINES:
                too_long.append(f"{name}.{node.name}: {lines} lines")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and lines > MAX_FUNCTION_LINES:
                too_long.append(f"{name}.{node.name}(): {lines} lines")
    assert not too_long


# The package's layers, lowest first: a module imports from its own subpackage and from lower
# layers only (docs/architecture.md draws the same picture).
LAYERS = [
    ["dcgan.errors"],
    ["dcgan.files", "dcgan.runtime"],
    ["dcgan.data", "dcgan.nets"],
    ["dcgan.store", "dcgan.quality"],
    ["dcgan.reporting"],
    ["dcgan.training"],
    ["dcgan.config"],
    ["dcgan.cli"],
]


def imported_modules(tree: ast.Module, known: set[str]) -> set[str]:
    """The package's modules that `tree` imports, anywhere in it (type-only imports too)."""
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in imported if name in known}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules (first == last), or [] when there is none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_no_import_cycle_inside_the_package():
    trees = modules()
    known = set(trees)
    graph = {name: imported_modules(tree, known) - {name} for name, tree in trees.items()}
    # a package's __init__ importing its own modules is not a cycle with them
    for name in graph:
        graph[name] = {other for other in graph[name] if not name.startswith(other + ".")}
    assert find_cycle(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x.y\n"
                     "def f():\n    from x import z\n")
    assert imported_modules(tree, {"x.y", "x.z"}) == {"x.y", "x.z"}


def layer_of(module: str) -> tuple[int, str]:
    for index, members in enumerate(LAYERS):
        for member in members:
            if module == member or module.startswith(member + "."):
                return index, member
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_subpackages_import_only_downwards():
    trees = modules()
    known = set(trees)
    upward = []
    for name, tree in trees.items():
        if name == "dcgan":
            continue
        level, home = layer_of(name)
        for other in imported_modules(tree, known):
            other_level, other_home = layer_of(other)
            if other_home != home and other_level >= level:
                upward.append(f"{name} -> {other}")
    assert not upward


def test_ls_shows_the_data_path():
    """`ls src/dcgan`: the subpackages and the two modules every layer shares, nothing else."""
    top = sorted(path.name for path in PACKAGE.iterdir() if not path.name.startswith("__"))
    assert top == ["cli", "config.py", "data", "errors.py", "files", "nets", "quality",
                   "reporting", "runtime", "store", "training"]


@pytest.mark.parametrize("module", ["dcgan.training.pair", "dcgan.training.loop",
                                    "dcgan.training.hooks.base"])
def test_the_training_core_does_not_read_the_config(module):
    """Settings are resolved at the edge (config.py, run.py); the core gets typed values."""
    tree = modules()[module]
    assert "dcgan.config" not in imported_modules(tree, set(modules()))
    assert "omegaconf" not in ast.dump(tree)
