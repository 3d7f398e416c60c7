"""Flow tests run under one session-wide Prefect test harness (a real, temporary Prefect API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from distributed import LocalCluster
from prefect.testing.utilities import prefect_test_harness

from tests.conftest import DATA


@pytest.fixture(scope="package", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def write_config(directory: Path, frame: pd.DataFrame, **overrides: object) -> Path:
    """Write a small employment dataset and a config for it into `directory`."""
    data_path = directory / "train.parquet"
    frame.to_parquet(data_path, index=False)
    base = yaml.safe_load((DATA.parents[1] / "driftloop.yaml").read_text())
    base["data"] = {"train": str(data_path)}
    base["model"] = {
        "candidates": [{"family": "logistic", "search": {"C": [0.1, 1.0]}}],
        "cv_folds": 2,
        "search_iterations": 2,
        "seed": 7,
    }
    base.update(overrides)
    path = directory / "driftloop.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.fixture
def small_employment(employment_reference: pd.DataFrame) -> pd.DataFrame:
    return employment_reference.sample(3000, random_state=0).reset_index(drop=True)


@pytest.fixture
def live() -> pd.DataFrame:
    """2,000 rows of 2016 traffic with their labels (column `employed`)."""
    frame = pd.read_parquet(DATA / "live_2016_2018.parquet").iloc[:2000]
    labels = pd.read_parquet(DATA / "live_2016_2018_labels.parquet").set_index("id")["employed"]
    return frame.assign(employed=frame["id"].map(labels))


@pytest.fixture(scope="package")
def cluster() -> Iterator[LocalCluster]:
    """A real Dask cluster: a scheduler and 2 worker processes of one thread each (shared by the
    flow tests that run tasks on Dask, stopped after them)."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as running:
        yield running
