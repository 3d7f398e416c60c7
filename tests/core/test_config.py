"""The project config: valid files load, every mistake is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, load_config, parse_config
from pipelines.training import ModelSpecError, check_candidates
from tests.conftest import REPO

MINIMAL = {"model_name": "m", "task": "classification", "target": "y", "data": {"train": "d.csv"}}


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "driftloop.yaml")
    assert config.model_name == "employment"
    assert config.train_path() == REPO / "data/employment/reference_2015.parquet"
    assert config.higher_is_better


def test_defaults_fill_optional_sections() -> None:
    config = parse_config(MINIMAL)
    assert config.model.candidates[0].family == "logistic"
    assert config.promotion.metric == "roc_auc"
    assert config.features.numeric is None  # inferred later from dtypes


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"modle": {}}, "modle: unknown key"),
        ({"task": "ranking"}, "task"),
        ({"model": {"cv_folds": "three"}}, "model.cv_folds"),
        ({"model": {"candidates": [{"family": "svm"}]}}, "model.candidates.0.family"),
        ({"promotion": {"metrik": "f1"}}, "promotion.metrik: unknown key"),
        ({"data": {"train": "data.xlsx"}}, "data.train"),
        ({"data": {"train": {"url": "sqlite://"}}}, "data.train"),
        ({"features": {"numeric": ["a"], "categorical": ["a"]}}, "both numeric and categorical"),
        ({"promotion": {"metric": "rmse"}}, "does not fit task"),
        ({"features": {"numeric": ["y"]}}, "cannot also be features"),
        (
            {
                "task": "regression",
                "promotion": {"metric": "rmse"},
                "model": {"candidates": [{"family": "logistic"}]},
            },
            "does not fit task 'regression'",
        ),
    ],
)
def test_bad_config_names_the_key(change: dict, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, **change})
    assert named in str(err.value)


def test_missing_required_keys_are_all_listed() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"task": "regression"})
    message = str(err.value)
    for key in ("model_name", "target", "data"):
        assert f"{key}: required key is missing" in message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_config_hash_ignores_location_but_not_settings(tmp_path: Path) -> None:
    a = parse_config(MINIMAL, base_dir=tmp_path)
    b = parse_config(MINIMAL, base_dir=Path("/elsewhere"))
    c = parse_config({**MINIMAL, "promotion": {"min_improvement": 0.01}})
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_sql_source_is_accepted() -> None:
    config = parse_config(
        {**MINIMAL, "data": {"train": {"url": "sqlite:///x.db", "query": "select * from t"}}}
    )
    assert config.train_path() is None


def test_regression_gets_regression_defaults() -> None:
    config = parse_config({**MINIMAL, "task": "regression"})
    assert config.promotion.metric == "rmse"
    assert [c.family for c in config.model.candidates] == ["linear", "hist_gradient_boosting"]
    assert not config.higher_is_better


def test_loading_a_config_builds_no_model_and_its_parameters_are_checked_before_training() -> None:
    """A parameter the family lacks passes the shape check of the config; training refuses it
    first thing, naming the candidate, before any data is read."""
    config = parse_config(
        {**MINIMAL, "model": {"candidates": [{"family": "logistic", "search": {"depth": [1]}}]}}
    )
    with pytest.raises(
        ModelSpecError, match=r"model.candidates\[0\]: unknown parameter\(s\) \['depth'\]"
    ):
        check_candidates(config.task, [c.model_dump() for c in config.model.candidates])
