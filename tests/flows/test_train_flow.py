"""The train flow end to end on the shipped data, into a real MLflow registry in tmp_path."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

import registry
from flows.train import train
from tests.flows.conftest import write_config
from tests.serving.conftest import Server, server_env


def _client(env: dict[str, str]) -> MlflowClient:
    return registry.make_client(env["MLFLOW_TRACKING_URI"])


def test_first_training_registers_a_browsable_champion(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment)

    outcome = train(config_path=str(config), trigger="manual")

    client = _client(mlflow_env)
    assert outcome["promoted"] is True
    champion = client.get_model_version_by_alias("employment", "champion")
    assert str(champion.version) == str(outcome["version"]) == "1"
    tags = champion.tags
    for key in (
        "data_digest",
        "config_hash",
        "git_commit",
        "prefect_flow_run_id",
        "trigger",
        "decision",
    ):
        assert tags[f"driftloop.{key}"], key
    assert tags["driftloop.trigger"] == "manual"
    spec = json.loads(tags["driftloop.model_spec"])
    assert spec["task"] == "classification" and spec["target"] == "employed"
    assert spec["numeric"] == ["AGEP"] and "prediction" not in spec["categorical"]
    assert spec["classes"] == [0, 1] or spec["classes"] == [False, True]
    assert len(tags) <= 14, sorted(tags)  # the MLflow versions table stays readable
    assert champion.description and "holdout metric" in champion.description

    run = client.get_run(champion.run_id)
    assert {
        "holdout_roc_auc",
        "holdout_log_loss",
        "holdout_accuracy",
        "holdout_f1",
        "overfit_gap",
    } <= set(run.data.metrics)
    inputs = run.inputs.dataset_inputs
    contexts = {i.tags[0].value for i in inputs}
    assert contexts == {"training", "evaluation"}
    assert all(i.dataset.digest for i in inputs)
    assert tags["driftloop.data_digest"] in {i.dataset.digest for i in inputs}

    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/roc_curve.png"} <= artifacts
    reference = registry.load_reference(client, "employment", champion.version)
    assert {"AGEP", "SCHL", "employed", "prediction", "probability"} <= set(reference.columns)

    model_info = registry.load_model(client, "employment", 1)
    assert hasattr(model_info, "predict_proba")
    from mlflow.models import get_model_info

    info = get_model_info("models:/employment@champion")
    assert [c.name for c in info.signature.inputs.inputs][:2] == ["AGEP", "SCHL"]


def test_a_worse_model_does_not_take_champion(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment)
    first = train(config_path=str(config))

    # Same data and holdout, but a model that sees only one uninformative feature.
    worse = write_config(
        tmp_path,
        small_employment,
        features={
            "numeric": [],
            "categorical": ["RAC1P"],
            "drop": ["prediction", "predicted_probability"],
        },
    )
    second = train(config_path=str(worse))

    client = _client(mlflow_env)
    assert second["promoted"] is False
    assert "champion" in second["reason"]
    assert str(client.get_model_version_by_alias("employment", "champion").version) == str(
        first["version"]
    )
    challenger = client.get_model_version_by_alias("employment", "challenger")
    assert str(challenger.version) == str(second["version"])
    assert challenger.tags["driftloop.role"] == "challenger"
    assert challenger.tags["driftloop.decision"] == second["reason"]


def test_bad_data_registers_nothing(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    from pipelines.validation import DataValidationError

    broken = small_employment.drop(columns=["SCHL"]).assign(
        employed=lambda d: d["employed"].where(d.index > 10)
    )
    config = write_config(tmp_path, broken)

    with pytest.raises(DataValidationError) as err:
        train(config_path=str(config))

    message = str(err.value)
    assert "SCHL" in message and "employed" in message
    assert _client(mlflow_env).search_registered_models() == []


def test_native_categorical_gradient_boosting_registers_and_loads(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(
        tmp_path,
        small_employment,
        model={
            "candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": 20}}],
            "cv_folds": 2,
            "search_iterations": 1,
            "native_categorical": True,
        },
    )
    outcome = train(config_path=str(config), trigger="manual")
    assert outcome["promoted"] is True
    pipeline = registry.load_model(  # skops trusts its types
        _client(mlflow_env), "employment", outcome["version"]
    )
    model = pipeline.named_steps["model"]
    assert model.is_categorical_ is not None and model.is_categorical_.sum() == 15
    assert pipeline.predict_proba(small_employment.head(5)).shape == (5, 2)


def test_an_integer_feature_is_declared_double_and_may_be_missing_when_served(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    frame = small_employment.assign(AGEP=small_employment["AGEP"].round().astype("int64"))
    config = write_config(tmp_path, frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = train(config_path=str(config), trigger="manual")
    hints = [str(w.message) for w in caught if "integer column" in str(w.message)]
    assert hints == []

    from mlflow.models import get_model_info

    inputs = get_model_info(f"models:/employment/{outcome['version']}").signature.inputs
    assert {c.name: c.type.name for c in inputs.inputs}["AGEP"] == "double"

    server = Server(
        config=config,
        env=server_env(mlflow_env["MLFLOW_TRACKING_URI"], mlflow_env["DRIFTLOOP_DATABASE_URL"]),
    ).start()
    try:
        row = httpx.get(f"{server.url}/model", timeout=30).json()["example"]
        body = {"records": [{**row, "AGEP": 37}, {**row, "AGEP": None}]}
        response = httpx.post(f"{server.url}/predict", json=body, timeout=30)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2
