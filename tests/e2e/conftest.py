"""Session-wide real servers for end-to-end tests (tests marked ``e2e``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import Stack, link_repo, start_test_stack, stop_test_stack


@pytest.fixture(scope="package")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Prefect server + process worker on free loopback ports with the repo's deployments.

    Its own PREFECT_HOME and SQLite database under a temporary root; torn down after the session.
    """
    root = link_repo(tmp_path_factory.mktemp("stack"))
    stack = start_test_stack(root, services=("prefect", "worker", "deploy"))
    try:
        yield stack
    finally:
        stop_test_stack(stack)


@pytest.fixture(scope="package")
def prefect_mlflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Like ``prefect_stack`` plus an MLflow tracking server (artifacts proxied by the server)."""
    root = link_repo(tmp_path_factory.mktemp("stack-mlflow"))
    stack = start_test_stack(root, services=("prefect", "worker", "deploy", "mlflow"))
    try:
        yield stack
    finally:
        stop_test_stack(stack)


@pytest.fixture(scope="package")
def loop_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole topology (a Dask scheduler + 2 workers, Prefect server + worker + deployments,
    MLflow, serving, Evidently UI). The flows' Dask tasks (the monitor's partitions, the
    search's fits) run on the stack's cluster.

    The root links the repo but holds its own small ``driftloop.yaml`` (see ``write_small_config``),
    so every deployment's default ``config_path: driftloop.yaml``, the retrain trigger's included,
    and the inference service use the small config. No champion yet: the test trains one.
    """
    from tests.e2e.harness import LINKED, write_small_config

    root = link_repo(
        tmp_path_factory.mktemp("stack-loop"), [n for n in LINKED if n != "driftloop.yaml"]
    )
    write_small_config(root, on_dask=True)
    stack = start_test_stack(
        root, services=("dask", "prefect", "worker", "deploy", "mlflow", "serve", "evidently")
    )
    try:
        yield stack
    finally:
        stop_test_stack(stack)


@pytest.fixture(scope="package")
def loop_run(loop_stack: Stack) -> Any:
    """The loop driven once on ``loop_stack`` (train, drifted traffic, monitor, retrain)."""
    from tests.e2e.test_loop_e2e import drive_loop

    return drive_loop(loop_stack)
