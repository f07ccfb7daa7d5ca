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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"fetch": {"val_fraction": 1.5}},
            "fetch.val_fraction: input should be less than 1, got 1.5",
        ),
        ({"fetch": {"test_fraction": -0.1}}, "fetch.test_fraction: input should be greater than"),
        (
            {"fetch": {"val_fraction": 0.5, "test_fraction": 0.5}},
            "fetch: val_fraction + test_fraction must be below 1",
        ),
        ({"train": {"dim": 0}}, "train.dim: input should be greater than 0, got 0"),
        ({"train": {"hash_bits": [64, 0]}}, "train.hash_bits[1]: input should be greater than 0"),
        ({"train": {"miner": "hardest"}}, "train.miner: 'hardest' is not one of 'semihard'"),
        ({"train": {"dropout": 1.0}}, "train.dropout: input should be less than 1"),
        ({"seed": -1}, "seed: input should be greater than or equal to 0"),
        ({"extract": {"workers": 2.5}}, "extract.workers: expected an integer, got 2.5"),
    ],
)
def test_values_out_of_range_are_one_line_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        params_from_dict(data)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_several_problems_report_the_first_and_count_the_rest() -> None:
    with pytest.raises(ConfigError, match=r"^seed: .* \(and 2 more problems\)$"):
        params_from_dict({"seed": -1, "train": {"dim": 0, "lr": 0}})


def test_unknown_section_gets_a_hint_and_a_far_typo_none() -> None:
    with pytest.raises(
        ConfigError, match=r"^unknown params key 'trian' \(did you mean 'train'\?\)$"
    ):
        params_from_dict({"trian": {}})
    with pytest.raises(ConfigError, match=r"^unknown params key 'fetch\.zzz'$"):
        params_from_dict({"fetch": {"zzz": 1}})


def test_a_bad_split_fraction_stops_the_fetch_stage_at_load(tmp_path: Path, capsys) -> None:
    from medsim.stage import run_stage

    (tmp_path / "params.yaml").write_text("fetch:\n  source: local\n  test_fraction: 1.2\n")
    ran = []
    assert run_stage("fetch", lambda params, root: ran.append(params), root=tmp_path) == 2
    assert ran == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["medsim fetch: fetch.test_fraction: input should be less than 1, got 1.2"]


def test_numbers_read_as_strings_where_a_string_is_declared() -> None:
    params = params_from_dict({"evaluate": {"cross_domain_labels": {1: "C04"}}})
    assert params.evaluate.cross_domain_labels == {"1": "C04"}


def test_a_section_built_in_code_checks_the_fractions_too() -> None:
    from medsim.config import FetchParams

    with pytest.raises(ConfigError, match="must be below 1"):
        FetchParams(val_fraction=0.6, test_fraction=0.4)
