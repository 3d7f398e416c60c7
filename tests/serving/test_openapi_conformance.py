"""The OpenAPI schema says exactly what the server accepts and returns: schemathesis generates
valid and invalid requests for every operation from /openapi.json and checks each answer
(no 5xx, documented status codes, content types and bodies, invalid data refused, valid data
accepted, auth enforced), against a real uvicorn process. Fixed seed, bounded examples."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

KEY = "conformance-key"
OPERATIONS = [
    ("POST", "/predict"),
    ("POST", "/feedback"),
    ("POST", "/reload"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/model"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module")
def server(module_server_factory: Any) -> Any:
    return module_server_factory(
        api_key=KEY,
        serving={"max_batch_rows": 20, "max_feedback_rows": 20, "auth_free_failures": 1_000_000},
    )


@pytest.fixture(scope="module")
def api_schema(server: Any) -> Any:
    return schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", headers={"X-API-Key": KEY}, timeout=30
    )


def test_the_schema_lists_exactly_the_served_operations(api_schema: Any) -> None:
    listed = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


CASES = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS] + [
    # invalid requests exist only where there is a body to get wrong
    ("POST", "/predict", GenerationMode.NEGATIVE),
    ("POST", "/feedback", GenerationMode.NEGATIVE),
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_every_operation_conforms_to_the_schema(
    api_schema: Any, server: Any, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @settings(
        max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.call_and_validate(base_url=server.url, headers={"X-API-Key": KEY}, timeout=30)

    check()
