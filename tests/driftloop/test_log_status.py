"""`driftloop log status`: the inference log's rows and labels, its dead letters, the spool."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftloop.cli import app
from monitoring import store
from monitoring.spool import Spool, spool_directory
from tests.serving.conftest import free_port, write_config

runner = CliRunner()


def rec(request_id: str, version: int, prediction: object = 1) -> dict:
    return store.log_record(
        request_id=request_id,
        ts=datetime.now(UTC),
        model_name="employment",
        model_version=version,
        features={"AGEP": 30.0, "SCHL": "a"},
        prediction=prediction,
    )


@pytest.mark.postgres
def test_log_status_shows_rows_labels_dead_letters_and_the_spool(
    tmp_path: Path, postgres_database: str
) -> None:
    config = write_config(tmp_path, {"spool_dir": "relative-spool"})  # resolved next to the config
    store.upgrade_database(postgres_database)
    engine = store.make_engine(postgres_database)
    with engine.connect() as connection:  # the real refusal path: a NUL jsonb cannot store
        store.write_log(
            connection, [[rec("a", 1)], [rec("b", 1)], [rec("c", 2)], [rec("d", 2, "x\u0000")]]
        )
    store.record_labels(engine, {"a": 1})
    engine.dispose()
    waiting = Spool(spool_directory(tmp_path / "relative-spool", postgres_database))
    waiting.append([rec("e", 2), rec("f", 2)])
    waiting.close()  # as a process that died during an outage: the file stays

    result = runner.invoke(
        app,
        ["log", "status", "--config", str(config)],
        env={"DRIFTLOOP_DATABASE_URL": postgres_database},
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"employment\s+1\s+2\s+1\n", out), out  # rows, labeled
    assert re.search(r"employment\s+2\s+1\s+0\n", out), out
    assert "dead letters: 1 in the table" in out
    assert re.search(r"request d employment v2: unsupported Unicode escape sequence", out), out
    assert "1 files, 2 rows pending" in out
    assert "dead-letter.jsonl: 0 records" in out


def test_an_unreachable_database_is_one_error_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    url = f"postgresql+psycopg2://postgres:s3cret@127.0.0.1:{free_port()}/driftloop"
    result = runner.invoke(
        app, ["log", "status", "--config", str(config)], env={"DRIFTLOOP_DATABASE_URL": url}
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot read the inference log at ")
    assert "Connection refused" in lines[0]
    assert "s3cret" not in result.output and "Traceback" not in result.output


def test_an_unknown_action_is_one_error_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["log", "purge", "--config", str(write_config(tmp_path))])
    assert result.exit_code == 2
    assert "unknown action 'purge'; use status" in result.output


def test_log_compact_without_a_champion_is_one_error_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    result = runner.invoke(
        app,
        ["log", "compact", "--config", str(config)],
        env={
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "DRIFTLOOP_DATABASE_URL": f"sqlite:///{tmp_path / 'log.db'}",
        },
    )
    assert result.exit_code == 2, result.output
    assert "has no champion: compaction takes the champion's features" in result.output
