"""The pipeline's paths are spelled once, in medsim/paths.py: a second spelling is how a stage
ends up writing where the next one no longer reads."""

import ast

from medsim.sources import PACKAGE_ROOT


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = node.body[0] if node.body else None
            if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant):
                ids.add(id(doc.value))
    return ids


def _data_literals(source: str) -> list[str]:
    tree = ast.parse(source)
    docs = _docstrings(tree)
    joined = {  # root / "data"
        id(node.right)
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docs
        and (node.value.startswith("data/") or (node.value == "data" and id(node) in joined))
    ]


def test_the_finder_sees_a_second_spelling():
    source = '"""data/x in a docstring"""\nMODEL = Path("data/model")\nI = root / "data"\nd["data"]'
    assert _data_literals(source) == ["data/model", "data"]


def test_no_module_but_paths_spells_a_data_path():
    found = {
        path.relative_to(PACKAGE_ROOT).as_posix(): hits
        for path in PACKAGE_ROOT.rglob("*.py")
        if path.name != "paths.py" and (hits := _data_literals(path.read_text(encoding="utf-8")))
    }
    assert found == {}
