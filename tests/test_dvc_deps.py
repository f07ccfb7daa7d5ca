"""dvc.yaml's code deps cover every medsim module each stage's script can run (transitively,
lazy imports included), so editing any of them re-runs the stage instead of leaving stale
outputs behind."""

import ast
from pathlib import Path

import pytest
import yaml

from medsim.sources import PACKAGE_ROOT, import_closure

REPO = PACKAGE_ROOT.parent
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _script(stage: dict) -> Path:
    words = stage["cmd"].split()
    assert words[:1] == ["python"] and words[1].startswith("stages/"), stage["cmd"]
    return REPO / words[1]


def _medsim_imports(script: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medsim"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("medsim"))
    return names


def _uncovered(files: list[Path], deps: list[str]) -> list[str]:
    paths = [(REPO / d).resolve() for d in deps]
    return [
        f.relative_to(REPO).as_posix()
        for f in files
        if not any(f == p or p in f.parents for p in paths)
    ]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(name):
    stage = STAGES[name]
    script = _script(stage)
    assert script.relative_to(REPO).as_posix() in stage["deps"]
    files = import_closure(_medsim_imports(script))
    assert files, f"{name}: its script imports nothing from medsim"
    assert _uncovered(files, stage["deps"]) == [], f"dvc.yaml stage {name} misses code deps"


def test_the_check_sees_a_missing_dep():
    files = import_closure(["medsim.stage"])
    assert "medsim/stage.py" in _uncovered(files, ["medsim/config.py"])
