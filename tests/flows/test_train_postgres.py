"""PostgreSQL as MLflow's backend store, on the real server at 127.0.0.1:5432."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.train import train
from tests.flows.conftest import write_config


@pytest.mark.postgres
def test_train_registers_into_a_postgres_backed_registry(
    tmp_path: Path,
    mlflow_env: dict[str, str],
    postgres_database: str,
    small_employment: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_database)
    config = write_config(tmp_path, small_employment)

    outcome = train(config_path=str(config))

    client = MlflowClient(postgres_database)
    champion = client.get_model_version_by_alias("employment", "champion")
    assert str(champion.version) == str(outcome["version"]) == "1"
    assert client.get_run(champion.run_id).data.metrics["holdout_roc_auc"] > 0.7
