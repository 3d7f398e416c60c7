"""The request validator: tables of bad rows, and random malformed payloads (hypothesis)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.validation import MAX_ABS_NUMBER
from serving.validation import (
    MAX_STRING_LENGTH,
    InputSpec,
    PayloadError,
    numeric_limits,
    string_problem,
    validate_payload,
)
from tests.conftest import DATA
from tests.serving.conftest import records

SPEC = InputSpec(
    numeric=("age", "hours"), categorical=("sex", "school"), not_null=frozenset({"age", "sex"})
)
GOOD = {"age": 30, "hours": 40.5, "sex": "1", "school": "21"}

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from([*SPEC.features, "extra", "records", ""]) | st.text(max_size=6)


@st.composite
def malformed_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A good row with random features removed, replaced by random JSON, or unknown ones added."""
    row = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(SPEC.features), unique=True)):
        if draw(st.booleans()):
            del row[name]
        else:
            row[name] = draw(json_values)
    row.update(draw(st.dictionaries(field_names, json_values, max_size=2)))
    return row


payloads = (
    json_values
    | malformed_rows()
    | st.lists(malformed_rows() | json_values, max_size=6)
    | st.builds(lambda rows: {"records": rows}, st.lists(malformed_rows(), max_size=6))
)


def _usable_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(float(v)) and abs(float(v)) <= MAX_ABS_NUMBER


def expected_ok(row: Any) -> bool:
    if not isinstance(row, dict) or set(row) != set(SPEC.features):
        return False
    for name in SPEC.numeric:
        v = row[name]
        if v is None:
            if name in SPEC.not_null:
                return False
        elif not _usable_number(v):
            return False
    for name in SPEC.categorical:
        v = row[name]
        if (v is None and name in SPEC.not_null) or (v is not None and not isinstance(v, str)):
            return False
        if isinstance(v, str) and (
            len(v) > MAX_STRING_LENGTH or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in v)
        ):
            return False
    return True


@settings(max_examples=400, deadline=None)
@given(payloads)
def test_any_payload_is_accepted_or_refused_with_located_errors(payload: Any) -> None:
    try:
        records = validate_payload(payload, SPEC, max_rows=5)
    except PayloadError as exc:
        assert exc.errors
        for error in exc.errors:
            assert error.message
            if error.row is not None:
                assert isinstance(error.row, int) and error.row >= 0
        return
    rows = payload if isinstance(payload, list) else payload.get("records", [payload])
    assert len(rows) <= 5 and all(expected_ok(r) for r in rows)
    assert len(records) == len(rows)
    for name in SPEC.numeric:
        assert all(v is None or isinstance(v, float) for v in records.columns[name])


@settings(max_examples=300, deadline=None)
@given(st.lists(malformed_rows(), min_size=1, max_size=5))
def test_every_bad_row_is_named_and_good_rows_are_not(rows: list[dict[str, Any]]) -> None:
    bad = {i for i, row in enumerate(rows) if not expected_ok(row)}
    if not bad:
        assert len(validate_payload(rows, SPEC, max_rows=5)) == len(rows)
        return
    with pytest.raises(PayloadError) as caught:
        validate_payload(rows, SPEC, max_rows=5)
    assert {e.row for e in caught.value.errors} == bad


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        ({k: v for k, v in GOOD.items() if k != "hours"}, "hours", "missing"),
        (GOOD | {"age": "30"}, "age", "expected a number, got string"),
        (GOOD | {"age": True}, "age", "got boolean"),
        (GOOD | {"age": float("nan")}, "age", "finite"),
        (GOOD | {"age": 10**400}, "age", "finite"),
        (GOOD | {"age": 1.797e308}, "age", "outside the accepted range"),
        (GOOD | {"hours": -1e151}, "hours", "outside the accepted range"),
        (GOOD | {"sex": "1\u0000"}, "sex", "control character U+0000 at position 1"),
        (GOOD | {"sex": "a\nb"}, "sex", "control character U+000A"),
        (GOOD | {"sex": "\x85"}, "sex", "control character U+0085"),
        (GOOD | {"school": "x" * 257}, "school", "longer than the limit of 256"),
        (GOOD | {"age": None}, "age", "may not be null"),
        (GOOD | {"sex": None}, "sex", "may not be null"),
        (GOOD | {"sex": 1}, "sex", "expected a string"),
        (GOOD | {"school": ["21"]}, "school", "got array"),
        (GOOD | {"zip": "02139"}, "zip", "unknown field"),
    ],
)
def test_each_rule_names_row_and_field(row: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(PayloadError) as caught:
        validate_payload([GOOD, row], SPEC, max_rows=10)
    (error,) = caught.value.errors
    assert (error.row, error.field) == (1, field) and needle in error.message


def test_limits_come_from_the_training_magnitudes_or_an_explicit_bound() -> None:
    limits = numeric_limits({"age": 95.0, "tiny": 0.001, "unknown": float("nan"), "big": 1e200})
    assert limits == {"age": 9.5e7, "tiny": 1e6, "unknown": 1e6, "big": MAX_ABS_NUMBER}
    assert numeric_limits({"age": 95.0}, max_abs_value=120.0) == {"age": 120.0}
    assert numeric_limits({"age": 95.0}, max_abs_value=1e300) == {"age": MAX_ABS_NUMBER}


def test_a_magnitude_limit_refuses_and_names_the_bound() -> None:
    spec = InputSpec(("age", "hours"), ("sex", "school"), limits={"age": 9.5e7})
    assert validate_payload(GOOD | {"age": 9.5e7}, spec, max_rows=1).columns["age"] == [9.5e7]
    with pytest.raises(PayloadError) as caught:
        validate_payload(GOOD | {"age": -9.6e7}, spec, max_rows=1)
    assert "+-9.5e+07" in caught.value.errors[0].message


def test_unicode_text_is_fine_and_long_strings_follow_the_spec() -> None:
    assert string_problem("Zürich – 東京 🚀", 256) is None
    spec = InputSpec(("age", "hours"), ("sex", "school"), max_string_length=3)
    with pytest.raises(PayloadError) as caught:
        validate_payload(GOOD | {"school": "1234"}, spec, max_rows=1)
    assert "4 characters is longer than the limit of 3" in caught.value.errors[0].message


def test_error_messages_never_echo_unbounded_input() -> None:
    name = "k" * 100_000
    with pytest.raises(PayloadError) as caught:
        validate_payload(GOOD | {name: 1}, SPEC, max_rows=1)
    assert len(str(caught.value)) < 300 and len(caught.value.errors[0].field or "") < 100


def test_nullable_features_may_be_null_and_ints_become_floats() -> None:
    records = validate_payload(GOOD | {"hours": None, "school": None}, SPEC, max_rows=1)
    assert (
        records.single and records.columns["age"] == [30.0] and records.columns["hours"] == [None]
    )


def test_error_list_is_capped_but_counts_everything() -> None:
    with pytest.raises(PayloadError) as caught:
        validate_payload([{"x": 1}] * 100, SPEC, max_rows=100)
    assert len(caught.value.errors) == 50 and caught.value.total == 500
    assert "more problems" in caught.value.detail()[-1]["msg"]


# ------------------------------------------------------------------ the same through the server


@pytest.fixture(scope="module")
def server(module_server_factory: Any) -> Any:
    return module_server_factory(serving={"max_batch_rows": 5})


@pytest.fixture(scope="module")
def good_row(server: Any) -> dict[str, Any]:
    info = httpx.get(f"{server.url}/model").json()
    assert info["features"]["numeric"] == ["AGEP"]
    return records(pd.read_parquet(DATA / "reference_2015.parquet").head(1))[0]


@st.composite
def malformed_service_payloads(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    row = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(base)), unique=True, max_size=3)):
        if draw(st.booleans()):
            del row[name]
        else:
            row[name] = draw(json_values)
    row.update(draw(st.dictionaries(st.text(max_size=4), json_values, max_size=2)))
    shape = draw(st.sampled_from(["one", "list", "records", "raw"]))
    if shape == "raw":
        return draw(json_values)
    rows = [row] * draw(st.integers(1, 7))
    return row if shape == "one" else rows if shape == "list" else {"records": rows}


def test_random_malformed_payloads_never_give_a_500(server: Any, good_row: dict[str, Any]) -> None:
    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(malformed_service_payloads(good_row))
    def check(payload: Any) -> None:
        body = json.dumps(payload)  # Infinity stays a literal: the service must refuse it too
        response = httpx.post(
            f"{server.url}/predict",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            detail = response.json()["detail"]
            assert detail and all({"row", "field", "msg"} <= set(d) for d in detail)
            assert "Traceback" not in response.text

    check()
    assert httpx.get(f"{server.url}/health").status_code == 200  # the worker is alive
