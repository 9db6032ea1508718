"""The house's shape, beyond what the import-linter contracts say (issue 29): no import cycle anywhere,
imports inside functions counted, and modules that read in one sitting."""

from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), smallest first."""
    modules = sorted(graph.modules)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(start: str) -> None:  # iterative: the graph is deep enough to matter for recursion
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph.modules:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return sorted(found, key=len)


def test_no_import_cycle_anywhere_function_body_imports_included():
    graph = grimp.build_graph("imgsearch")  # imports for type checkers counted too
    assert graph.modules, "imgsearch was not found"
    cycles = _cycles(graph)
    assert cycles == [], "modules that import each other, directly or round a loop:\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle_through_a_function_body_import(tmp_path, monkeypatch):
    package = tmp_path / "loopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loopy import b\n")
    (package / "b.py").write_text("def later():\n    from loopy import c\n")
    (package / "c.py").write_text("import loopy.a\n")
    (package / "d.py").write_text("from loopy import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("loopy", cache_dir=None)) == [["loopy.a", "loopy.b", "loopy.c"]]


def test_every_module_reads_in_one_sitting():
    long = []
    for folder in ("imgsearch", "indexer", "search", "web", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_symlink() or any(part.is_symlink() for part in path.parents if part != ROOT):
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long == [], f"split these by job (at most {MAX_LINES} lines):\n" + "\n".join(long)
