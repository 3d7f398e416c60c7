"""One test per family of user-fixable failure, through the real `driftloop` command in a
subprocess on real files and databases: exit code 2, exactly one stderr line starting with
`error:` that names the problem, and no traceback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

import registry
from flows.score import score_and_log
from monitoring import runs, store
from pipelines.scenarios import apply_scenario
from serving.model import load_alias
from tests.conftest import DATA
from tests.flows.conftest import write_config
from tests.flows.test_cli_errors import run as run_command

#: A port nothing listens on: connections are refused at once.
CLOSED = "127.0.0.1:1"


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command with its stores under ``cwd`` (tests.flows.test_cli_errors.run)."""
    return run_command(args, cwd, timeout=600, **env)


def error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The one `error:` line of a failed command, checked: exit 2, no traceback, names it."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def config(tmp_path: Path, employment_reference: pd.DataFrame) -> Path:
    return write_config(tmp_path, employment_reference.sample(3000, random_state=0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, employment_reference: pd.DataFrame) -> Path:
    """A project directory whose registry holds version 1 of `employment`, trained by the CLI."""
    directory = tmp_path_factory.mktemp("trained")
    config = write_config(
        directory,
        employment_reference.sample(3000, random_state=0),
        monitoring={
            "window": {"kind": "last_rows", "rows": 1000},
            "min_window_rows": 500,
            "policy": {"cooldown_hours": 0},
        },
    )
    result = run(["train", "--config", str(config)], directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


def test_an_unreachable_database(tmp_path: Path, config: Path) -> None:
    url = f"postgresql+psycopg2://u@{CLOSED}/x"
    result = run(["log", "status", "--config", str(config)], tmp_path, DRIFTLOOP_DATABASE_URL=url)
    error_line(result, "cannot read the inference log at", url)


def free_port() -> int:
    """A loopback port that was free a moment ago and that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_alert_delivery_after_the_verdict_is_stored(trained: Path) -> None:
    config = trained / "driftloop.yaml"
    raw = yaml.safe_load(config.read_text())
    hook = f"http://127.0.0.1:{free_port()}/hook"
    raw["alerts"] = {"webhooks": [hook], "retries": 0, "timeout_s": 2, "deliver_warnings": True}
    config.write_text(yaml.safe_dump(raw))
    # traffic whose age column broke, logged as serving logs it: the monitor alerts on it
    live = pd.read_parquet(DATA / "live_2016_2018.parquet").iloc[:1000]
    log_url = f"sqlite:///{trained / 'driftloop.db'}"
    store.upgrade_database(log_url)
    engine = store.make_engine(log_url)
    try:
        model = load_alias(registry.make_client(f"sqlite:///{trained / 'mlflow.db'}"), "employment")
        score_and_log(
            model, apply_scenario(live, "broken-feature", start_fraction=0.0), engine=engine
        )

        result = run(
            ["monitor", "--config", str(config)], trained, DRIFTLOOP_WEBHOOK_SECRET="s3cret"
        )

        error_line(result, "was not delivered", hook, "the verdict is stored")
        latest = runs.latest_run(engine, "employment")
    finally:
        engine.dispose()
    assert latest is not None and latest["status"] == "drift"
    assert latest["run_id"] in result.stderr


def test_a_prefect_server_that_does_not_answer(tmp_path: Path, config: Path) -> None:
    api = f"http://{CLOSED}/api"
    result = run(["train", "--config", str(config)], tmp_path, PREFECT_API_URL=api)
    error_line(result, f"the Prefect server at PREFECT_API_URL={api} does not answer")
    assert not (tmp_path / "mlflow.db").exists()  # nothing started


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("model_name: [unclosed\n", ("is not valid YAML", "line 2")),
        ("model_name: m\ntarget: y\ntask: regression\nmodle: {}\n", ("is invalid",)),
    ],
)
def test_a_bad_config_file(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run(["versions", "--config", str(path)], tmp_path)
    error_line(result, str(path), *needles)


def test_a_missing_data_file(tmp_path: Path, config: Path) -> None:
    missing = tmp_path / "gone.csv"
    result = run(["score", str(missing), "--config", str(config)], tmp_path)
    error_line(result, "data file not found", str(missing))


def test_an_unknown_model_version(trained: Path) -> None:
    config = trained / "driftloop.yaml"
    result = run(["promote", "--version", "7", "--config", str(config)], trained)
    error_line(result, "'employment' has no version 7")
