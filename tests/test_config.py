from pathlib import Path

import pytest
import yaml

from medsim.config import ConfigError, Params, load_params, params_from_dict


def test_repo_params_load_and_hold_every_contract_key(repo_root: Path) -> None:
    params = load_params(repo_root / "params.yaml")
    assert params.seed == 0
    assert params.loss == "triplet"
    assert params.fetch.source in ("entrez", "local")
    assert params.fetch.max_per_class == 500
    assert params.fetch.pdfs is True
    assert params.fetch.local.format == "auto"
    assert set(params.fetch.classes) >= {"breast", "lung", "colorectal", "prostate"}
    assert set(params.fetch.local.mesh_labels) == set(params.fetch.classes)


def test_defaults_match_params_yaml(repo_root: Path) -> None:
    # params.yaml spells out every default, so a user sees every knob.
    assert load_params(repo_root / "params.yaml") == Params()


def test_unknown_key_is_an_error_naming_the_dotted_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown params key 'fetch\.max_per_clas'") as err:
        params_from_dict({"fetch": {"max_per_clas": 3}})
    assert "did you mean 'fetch.max_per_class'" in str(err.value)


def test_unknown_nested_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"fetch\.local\.formt"):
        params_from_dict({"fetch": {"local": {"formt": "csv"}}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"loss": "arcface_typo"}, "loss: 'arcface_typo' is not one of"),
        ({"seed": "zero"}, "seed: expected an integer"),
        ({"fetch": {"pdfs": "yes"}}, "fetch.pdfs: expected true or false"),
        ({"fetch": {"classes": ["breast"]}}, "fetch.classes: expected a mapping"),
        ({"train": {"hash_bits": 64}}, "train.hash_bits: expected a list"),
        ({"fetch": {"local": {"format": "tsv"}}}, "fetch.local.format: 'tsv' is not one of"),
    ],
)
def test_wrong_types_are_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        params_from_dict(data)


def test_values_are_typed_and_partial_sections_keep_defaults() -> None:
    params = params_from_dict({"train": {"lr": 1, "epochs": 3}, "fetch": {"classes": None}})
    assert params.train.lr == 1.0 and isinstance(params.train.lr, float)
    assert params.train.epochs == 3
    assert params.train.dim == Params().train.dim
    assert params.fetch.classes == {}


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_dvc_yaml_params_name_real_keys(repo_root: Path) -> None:
    """Every params key a stage declares in dvc.yaml exists in params.yaml."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: unknown param {key}"
                node = node[part]


def test_user_facing_defaults_name_no_development_data(repo_root: Path) -> None:
    """params.yaml and the error hints a user reads never point at this repo's dev corpora."""
    texts = [(repo_root / "params.yaml").read_text()]
    texts += [p.read_text() for p in (repo_root / "medsim").rglob("*.py")]
    assert not [t for t in texts if "shared/data" in t]
