"""Session-wide real servers for end-to-end tests (tests marked ``e2e``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Stack, link_repo, start_test_stack, stop_test_stack


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def prefect_mlflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Like ``prefect_stack`` plus an MLflow tracking server (artifacts proxied by the server)."""
    root = link_repo(tmp_path_factory.mktemp("stack-mlflow"))
    stack = start_test_stack(root, services=("prefect", "worker", "deploy", "mlflow"))
    try:
        yield stack
    finally:
        stop_test_stack(stack)
