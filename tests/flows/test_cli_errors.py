"""The CLI contract, through the real `driftloop` command in a subprocess: every user-fixable
failure is one `error:` line and exit code 2, with no Prefect or Python traceback before it;
the libraries' logs go to the log file under the state directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import fresh_prefect_home
from tests.flows.conftest import write_config

DRIFTLOOP = str(Path(sys.executable).parent / "driftloop")


def run(
    args: list[str], cwd: Path, *, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """The real command with its stores under ``cwd`` and a fresh Prefect home, ``env`` on top."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DRIFTLOOP_", "MLFLOW_", "PREFECT_"))
    }
    base.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
            "DRIFTLOOP_ARTIFACT_ROOT": str(cwd / "mlruns"),
            "DRIFTLOOP_DATABASE_URL": f"sqlite:///{cwd / 'driftloop.db'}",
            "DRIFTLOOP_WORKSPACE": str(cwd / "workspace"),
            "DRIFTLOOP_STATE_DIR": str(cwd / "state"),
            # Prefect's ephemeral server keeps a database under PREFECT_HOME: a fresh one, not
            # whatever another Prefect version left in the home directory
            "PREFECT_HOME": str(fresh_prefect_home(cwd / "prefect-home")),
            **env,
        }
    )
    return subprocess.run(
        [DRIFTLOOP, *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=timeout
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.count("error:") == 1, result.stderr


@pytest.fixture
def config(tmp_path: Path, small_employment: pd.DataFrame) -> Path:
    return write_config(tmp_path, small_employment)


def test_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model_name: caf\xe9\n".encode("latin-1"))
    assert_one_error_line(run(["train", "--config", str(path)], tmp_path), "is not UTF-8 text")


def test_a_hyperparameter_value_the_estimator_refuses(tmp_path: Path, config: Path) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["model"]["candidates"] = [{"family": "logistic", "search": {"C": [1.0, -1.0]}}]
    config.write_text(yaml.safe_dump(raw))
    result = run(["train", "--config", str(config)], tmp_path)
    assert_one_error_line(result, "value -1.0 of parameter 'C' is refused")
    assert "must be a float in the range (0.0, inf]" in result.stderr


def test_a_missing_data_file_is_not_retried_and_prints_no_prefect_traceback(
    tmp_path: Path, config: Path
) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["data"]["train"] = str(tmp_path / "gone.parquet")
    config.write_text(yaml.safe_dump(raw))
    result = run(["train", "--config", str(config)], tmp_path)
    assert_one_error_line(result, "data file not found")
    log = (tmp_path / "state" / "logs" / "driftloop.log").read_text()
    assert "read_training_data" in log and "Retry" not in log  # failed once, not retried


def test_data_that_fails_validation(tmp_path: Path, small_employment: pd.DataFrame) -> None:
    config = write_config(tmp_path, small_employment.drop(columns=["SCHL"]))
    raw = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump(raw))
    result = run(["train", "--config", str(config)], tmp_path)
    assert_one_error_line(result, "failed validation")
    assert "SCHL" in result.stderr


@pytest.mark.parametrize("command", [["monitor"], ["serve", "--port", "0"]])
def test_an_unreachable_database(tmp_path: Path, config: Path, command: list[str]) -> None:
    result = run(
        [*command, "--config", str(config)],
        tmp_path,
        DRIFTLOOP_DATABASE_URL="postgresql+psycopg2://postgres@127.0.0.1:9/nowhere",
    )
    assert_one_error_line(result, "cannot migrate the inference log at postgresql")


@pytest.mark.parametrize(
    "args", [["--verbose", "train"], ["train", "--verbose"]], ids=["before", "after"]
)
def test_verbose_keeps_the_library_logs_in_the_terminal(
    tmp_path: Path, config: Path, args: list[str]
) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["data"]["train"] = str(tmp_path / "gone.parquet")
    config.write_text(yaml.safe_dump(raw))
    result = run([*args, "--config", str(config)], tmp_path)
    assert result.returncode == 2
    assert "Task run failed" in result.stderr or "Finished in state Failed" in result.stderr
    assert any(line.startswith("error: data file not found") for line in result.stderr.splitlines())


def test_a_training_prints_its_verdict_and_the_log_file_only(tmp_path: Path, config: Path) -> None:
    result = run(["train", "--config", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # MLflow's "Created version '1' ..." went to the log file
    log = tmp_path / "state" / "logs" / "driftloop.log"
    assert result.stdout.splitlines() == [
        result.stdout.splitlines()[0],
        f"Prefect and MLflow logs: {log}",
    ]
    assert "version 1 promoted to champion" in result.stdout
    text = log.read_text()
    assert "Created version '1' of model 'employment'" in text and "Finished in state" in text


def test_serve_with_no_workers_is_a_usage_error() -> None:
    from typer.testing import CliRunner

    from driftloop.cli import app

    result = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
    assert "--workers" in result.output and "greater than or equal to 1" in result.output
