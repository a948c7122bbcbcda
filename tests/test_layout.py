"""The package's shape: no import cycle among vsd's modules, no module too long to read.

Both are read from the source (ast), not by importing: an import cycle that happens to work today
(because of import order) breaks the day someone imports the other module first, and a static
check finds it without running heavy imports.

What counts as an import: every import statement, at module level, inside ``if``/``try``/``with``
blocks and class bodies, and inside functions too (a deferred import only postpones the cycle to
the first call: the two modules still cannot be understood, tested or moved apart), except under
``if TYPE_CHECKING:`` (never run). ``from vsd.x import y`` is an edge
to ``vsd.x.y`` when that is a module, else to ``vsd.x``. Importing ``vsd.x.y`` also runs
``vsd/x/__init__.py`` first, but that is not counted as an edge (as import linters do): a package
that re-exports its submodules is fine as long as they import each other, not the package.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vsd"
MAX_LINES = 520  # 450 before ruff format (110 columns) spread calls over more lines (+17 %)


# --------------------------------------------------------------------------------------------
# The checkers (take any package root, so they are tested on temporary packages below)
# --------------------------------------------------------------------------------------------


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of `package` under `root`."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_statements(body: list[ast.stmt]):
    """The statements of `body`, function bodies included, that can run: not TYPE_CHECKING blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_statements(node.orelse)
            continue
        for field in ("body", "orelse", "finalbody"):  # def/if/try/with/for/while/class blocks
            yield from _import_statements(getattr(node, field, None) or [])
        for clause in [*getattr(node, "handlers", ()), *getattr(node, "cases", ())]:  # except, case
            yield from _import_statements(clause.body)


def _known(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is one of our modules (``vsd.x.y.func`` -> ``vsd.x.y``)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in known:
            return candidate
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the package that `module` imports, when imported or when its functions run."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in _import_statements(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        out.update(t for t in (_known(name, known) for name in targets) if t is not None and t != module)
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    known = modules(root, package)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component, as a path ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; vsd is a few hundred modules, recursion depth is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_shortest_cycle(graph, comp) for comp in components]


def _shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """Breadth-first from the component's first module back to itself, inside the component."""
    start, inside = component[0], set(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in its component {component}")


def long_modules(root: Path, package: str, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(file, lines) for each module of the package longer than `limit` lines."""
    out = []
    for path in modules(root, package).values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append((str(path.relative_to(root)), n))
    return out


# --------------------------------------------------------------------------------------------
# vsd itself
# --------------------------------------------------------------------------------------------


def test_vsd_has_no_import_cycle():
    cycles = import_cycles(import_graph(ROOT, PACKAGE))
    assert not cycles, "import cycles in vsd/:\n" + "\n".join("  " + " -> ".join(c) for c in cycles)


def test_no_vsd_module_is_too_long():
    long = long_modules(ROOT, PACKAGE)
    assert not long, f"modules over {MAX_LINES} lines (split them by what they do):\n" + "\n".join(
        f"  {path}: {n} lines" for path, n in long
    )


# --------------------------------------------------------------------------------------------
# The checkers on packages made to fail
# --------------------------------------------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_checker_finds_a_cycle_and_names_its_path(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import helper\n",  # a name from a module: edge a -> b
            "b.py": "from pkg.sub import c\n\ndef helper(): ...\n",  # a submodule: edge b -> sub.c
            "sub/__init__.py": "",
            "sub/c.py": "from .. import a\n",  # relative, a module: edge c -> a
            "d.py": "import pkg.a\n",  # into the cycle, not part of it
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


def test_checker_finds_a_package_importing_its_own_reexporter(tmp_path):
    """The cycle `vsd/relations` had: a submodule importing from the package that re-exports it."""
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "rel/__init__.py": "from pkg.rel.parser import parse\nRELATIONS = ()\n",
            "rel/parser.py": "from pkg.rel import RELATIONS\n\ndef parse(): ...\n",
        },
    )
    assert import_cycles(import_graph(root, "pkg")) == [["pkg.rel", "pkg.rel.parser", "pkg.rel"]]


def test_checker_counts_deferred_imports_and_ignores_type_checking_ones(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": """\
            from typing import TYPE_CHECKING
            from pkg import b
            if TYPE_CHECKING:
                from pkg.c import C
            else:
                import json
        """,
            "b.py": """\
            def late():
                from pkg import a
                return a
        """,
            "c.py": """\
            import typing
            if typing.TYPE_CHECKING:
                from pkg import a
            try:
                from pkg.b import late
            except ImportError:
                late = None
            class K:
                from pkg import b
        """,
        },
    )
    graph = import_graph(root, "pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.b"}}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]  # b's deferred import closes it


def test_checker_reports_long_modules(tmp_path):
    root = _package(
        tmp_path,
        {"__init__.py": "", "short.py": "x = 1\n" * MAX_LINES, "long.py": "x = 1\n" * (MAX_LINES + 1)},
    )
    assert long_modules(root, "pkg") == [(str(Path("pkg") / "long.py"), MAX_LINES + 1)]
