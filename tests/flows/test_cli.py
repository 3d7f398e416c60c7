"""The `driftloop` command: train, promote, rollback, versions, and errors without tracebacks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import prefect.main  # noqa: F401  (Prefect logs to the real stderr, not to a CliRunner stream)
from mlflow import MlflowClient
from typer.testing import CliRunner

from driftloop.cli import app
from tests.flows.conftest import write_config

runner = CliRunner()


def _champion(env: dict[str, str]) -> str:
    return str(
        MlflowClient(env["MLFLOW_TRACKING_URI"])
        .get_model_version_by_alias("employment", "champion")
        .version
    )


def test_train_promote_rollback(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment)

    first = runner.invoke(app, ["train", "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert "version 1 promoted to champion" in first.output
    second = runner.invoke(app, ["train", "--config", str(config)])
    assert second.exit_code == 0, second.output
    assert "version 2 registered as challenger" in second.output  # identical model: no improvement

    promoted = runner.invoke(app, ["promote", "--version", "2", "--config", str(config)])
    assert promoted.exit_code == 0, promoted.output
    assert _champion(mlflow_env) == "2"

    rolled = runner.invoke(app, ["rollback", "--config", str(config)])
    assert rolled.exit_code == 0, rolled.output
    assert "from version 2 to version 1" in rolled.output
    assert _champion(mlflow_env) == "1"

    listing = runner.invoke(app, ["versions", "--config", str(config)])
    assert "champion" in listing.output and "rolled_back" in listing.output


def test_errors_are_one_clear_line(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    missing = runner.invoke(app, ["train", "--config", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2
    assert "config file not found" in missing.output
    assert "Traceback" not in missing.output

    config = write_config(tmp_path, small_employment)
    nothing = runner.invoke(app, ["rollback", "--config", str(config)])
    assert nothing.exit_code == 2
    assert "has no champion" in nothing.output

    bad_version = runner.invoke(app, ["promote", "--version", "9", "--config", str(config)])
    assert bad_version.exit_code == 2
    assert "no version 9" in bad_version.output

    typo = tmp_path / "typo.yaml"
    typo.write_text(config.read_text().replace("target:", "targt:"))
    result = runner.invoke(app, ["train", "--config", str(typo)])
    assert result.exit_code == 2
    assert (
        "targt: unknown key" in result.output and "target: required key is missing" in result.output
    )


def test_a_bad_model_parameter_is_one_clear_line(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(
        tmp_path,
        small_employment,
        model={"candidates": [{"family": "logistic", "search": {"depth": [1, 2]}}]},
    )
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "depth" in result.output and "Traceback" not in result.output


def test_score_errors_are_one_clear_line(
    tmp_path: Path, mlflow_env: dict[str, str], small_employment: pd.DataFrame
) -> None:
    config = write_config(tmp_path, small_employment)
    missing = runner.invoke(app, ["score", str(tmp_path / "nope.parquet"), "--config", str(config)])
    assert missing.exit_code == 2, missing.output
    assert "data file not found" in missing.output
    batch = tmp_path / "batch.parquet"
    small_employment.head(10).to_parquet(batch)
    untrained = runner.invoke(app, ["score", str(batch), "--config", str(config)])
    assert untrained.exit_code == 2, untrained.output
    assert "no `champion` alias" in untrained.output
