"""Architecture rules of the code base, checked on the source: the core names no method, and no two
modules import each other (directly or through others: every ``import`` statement anywhere in a module
counts, those under ``if TYPE_CHECKING:`` and inside functions included)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: import name -> source directory
PACKAGES = {"sslkit": ROOT / "sslkit", "sslkit_plugins": ROOT / "plugins"}


def module_names() -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its ``__init__``)."""
    found = {}
    for name, directory in PACKAGES.items():
        for path in directory.rglob("*.py"):
            parts = [name, *path.relative_to(directory).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The known modules ``module`` imports (``from pkg import name`` counts ``pkg.name`` when it is a
    module, ``pkg`` otherwise)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package_of(module, path).split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {m for m in found if m in known and m != module}


def graph() -> dict[str, set[str]]:
    modules = module_names()
    known = set(modules)
    return {name: imports(name, path, known) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


#: words of specific methods that must not appear in an identifier of the core (issue 13)
METHOD_WORDS = re.compile(r"dino|ibot|koleo|sinkhorn|prototype|teacher_temp|last_layer", re.IGNORECASE)


def _identifiers(tree: ast.AST) -> list[tuple[int, str]]:
    """Every name the code defines or uses: variables, attributes, functions, classes, arguments,
    keyword arguments and imports (strings and docstrings are not identifiers)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str | None] = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.arg | ast.keyword):
            names = [node.arg]
        elif isinstance(node, ast.alias):
            names = [node.name, node.asname]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        found.extend((getattr(node, "lineno", 0), n) for n in names if n)
    return found


def method_words(source: str) -> list[tuple[int, str]]:
    return [(line, name) for line, name in _identifiers(ast.parse(source)) if METHOD_WORDS.search(name)]


def test_the_rule_finds_method_words_in_every_kind_of_identifier() -> None:
    source = ("from x.dino import y\nimport sinkhorn_lib as s\nclass KoLeo: pass\n"
              "def f(teacher_temp, *, last_layer=1): return obj.ibot_head\nprototypes = 1\n'dino in a string'\n")
    assert {name for _, name in method_words(source)} == {
        "x.dino", "sinkhorn_lib", "KoLeo", "teacher_temp", "last_layer", "ibot_head", "prototypes"}


def test_no_core_identifier_names_a_method() -> None:
    hits = [f"{path.relative_to(PACKAGES['sslkit'].parent)}:{line}: {name}"
            for path in sorted(PACKAGES["sslkit"].rglob("*.py"))
            for line, name in method_words(path.read_text(encoding="utf-8"))]
    assert not hits, "the core (sslkit/) must know no specific method; move these to a plugin:\n" + "\n".join(hits)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "modules that import each other (directly or through others):\n" + "\n".join(
        " <-> ".join(c) for c in found)
