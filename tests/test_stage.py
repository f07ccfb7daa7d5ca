"""Stage scripts: clear one-line failures, never fake outputs."""

from pathlib import Path

import pytest

from medsim.stage import run_stage
from tests.conftest import REPO, run_stage_script


def test_a_user_error_prints_one_line_and_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "params.yaml").write_text("fetch:\n  sourse: local\n")
    code = run_stage("fetch", lambda params, root: None, root=tmp_path)
    assert code == 2
    assert "unknown params key 'fetch.sourse'" in capsys.readouterr().err


def test_other_errors_keep_their_traceback(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("seed: 0\n")

    def body(params, root):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_stage("fetch", body, root=tmp_path)


@pytest.mark.parametrize("script", sorted((REPO / "stages").glob("*.py")), ids=lambda p: p.stem)
def test_stage_scripts_are_thin(script: Path) -> None:
    source = script.read_text()
    assert len(source.splitlines()) <= 40, f"{script} holds logic that belongs in medsim/"
    assert "run_stage(" in source


def test_fetch_script_fails_fast_on_a_missing_local_path(tmp_path: Path, repo_root: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        "fetch:\n  source: local\n  local:\n    path: does/not/exist\n"
    )
    result = run_stage_script("fetch", tmp_path, timeout=120)
    assert result.returncode == 2
    assert "fetch.local.path does not exist" in result.stderr
    assert not (tmp_path / "data/articles.parquet").exists()
