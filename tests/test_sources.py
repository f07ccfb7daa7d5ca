"""The static import closure, checked against grimp's import graph (an independent reader)."""

import shutil

import grimp
import pytest

from medsim.sources import PACKAGE_ROOT, import_closure, source_digest


def _grimp_closure(graph: grimp.ImportGraph, module: str) -> set[str]:
    """What importing ``module`` runs: its upstream modules, and (since importing a.b.c runs
    a/__init__ and a/b/__init__) each one's parent packages with their own upstream modules."""
    todo = {module} | (graph.find_descendants(module) if graph.find_children(module) else set())
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name in reached or not name.startswith("medsim"):
            continue
        reached.add(name)
        parts = name.split(".")
        todo |= graph.find_upstream_modules(name)
        todo |= {".".join(parts[: i + 1]) for i in range(len(parts) - 1)}
    return reached


def _as_modules(paths) -> set[str]:
    names = set()
    for path in paths:
        parts = ["medsim", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("module", ["medsim.evaluate", "medsim.search.query", "medsim.cli"])
def test_closure_matches_grimp(module):
    graph = grimp.build_graph("medsim", exclude_type_checking_imports=False)
    assert _as_modules(import_closure([module])) == _grimp_closure(graph, module)


def test_a_relative_and_a_from_import_are_followed(tmp_path):
    root = tmp_path / "medsim"
    (root / "a").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a" / "__init__.py").write_text("")
    (root / "a" / "x.py").write_text("from . import y\n")
    (root / "a" / "y.py").write_text("def f():\n    from medsim import z\n")
    (root / "z.py").write_text("import os\n")
    (root / "w.py").write_text("")  # nobody imports it
    names = {p.relative_to(root).as_posix() for p in import_closure(["medsim.a.x"], root)}
    assert names == {"__init__.py", "a/__init__.py", "a/x.py", "a/y.py", "z.py"}


def test_digest_changes_with_a_file_in_the_closure_only(tmp_path):
    root = tmp_path / "medsim"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = source_digest(("medsim.search.query",), root)
    (root / "serve" / "app.py").write_text("# not imported by search.query\n", encoding="utf-8")
    assert source_digest(("medsim.search.query",), root) == before
    query = root / "search" / "query.py"
    query.write_text(query.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert source_digest(("medsim.search.query",), root) != before
