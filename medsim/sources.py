"""Which of medsim's source files a module runs: its static import closure.

A cache keyed on code must cover every file the cached computation can execute, not a list
kept by hand (a hand list goes stale the day someone adds an import). The closure is read from
the source with :mod:`ast`, lazy imports inside functions included, so it needs nothing
imported and nothing installed beyond the standard library.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PACKAGE_ROOT", "import_closure", "source_digest"]

PACKAGE_ROOT = Path(__file__).resolve().parent
_NAME = PACKAGE_ROOT.name


def _file_of(module: str, root: Path) -> Path | None:
    """The file that defines ``module`` (``medsim.a.b``) under ``root``, if it is ours."""
    parts = module.split(".")
    if parts[0] != _NAME:
        return None
    base = root.joinpath(*parts[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _module_of(path: Path, root: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = [_NAME, *relative.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, root: Path) -> set[str]:
    """Modules ``path`` imports by name, resolved to absolute dotted names."""
    module = _module_of(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(anchor) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            names.add(target)
            # `from medsim.x import y` may name the submodule medsim.x.y
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages' __init__."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def import_closure(modules: Iterable[str], root: Path = PACKAGE_ROOT) -> list[Path]:
    """Every file of ours that importing ``modules`` can run, sorted.

    A package named in ``modules`` counts with all its submodules (its code may be reached
    through a registry rather than a name).
    """
    todo: list[str] = []
    for name in modules:
        todo.extend(_with_parents(name))
        start = _file_of(name, root)
        if start is not None and start.name == "__init__.py":
            todo.extend(_module_of(p, root) for p in start.parent.rglob("*.py"))
    seen: set[Path] = set()
    while todo:
        path = _file_of(todo.pop(), root)
        if path is None or path in seen:
            continue
        seen.add(path)
        for name in _imported(path, root):
            todo.extend(_with_parents(name))
    return sorted(seen)


def source_digest(modules: tuple[str, ...], root: Path = PACKAGE_ROOT) -> str:
    """sha256 over the path and bytes of every file in :func:`import_closure`."""
    digest = hashlib.sha256()
    for path in import_closure(modules, root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
