"""Validation of /predict payloads and /feedback labels against the served model's contract
(pure functions).

A payload is one record (a JSON object of feature values), a JSON array of records, or
``{"records": [...]}``. Every problem is reported with the row and the field it concerns, so the
422 body tells the caller exactly what to fix; nothing here raises anything but
:class:`PayloadError`. :func:`check_label` says whether a label fits the model (one of its
classes, or a finite number for a regressor).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.validation import MAX_ABS_NUMBER

MAX_REPORTED_ERRORS = 50
#: Default longest category string accepted (characters).
MAX_STRING_LENGTH = 256
#: Without an explicit bound, a numeric feature accepts magnitudes up to this many times the
#: largest magnitude seen in training (and never above MAX_ABS_NUMBER).
RANGE_FACTOR = 1e6
#: C0 and C1 control characters (NUL included): a database may refuse them and no category
#: a person types contains them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: Characters of a refused value echoed back in an error message.
_ECHO_CHARS = 40


@dataclass(frozen=True)
class InputSpec:
    """What a record must contain: numeric (JSON numbers) and categorical (JSON strings) features.

    ``limits`` bounds each numeric feature's magnitude (absent: :data:`MAX_ABS_NUMBER`);
    ``max_string_length`` bounds every category string.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    not_null: frozenset[str] = frozenset()
    limits: Mapping[str, float] = field(default_factory=dict)
    max_string_length: int = MAX_STRING_LENGTH

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def limit(self, name: str) -> float:
        return self.limits.get(name, MAX_ABS_NUMBER)


def numeric_limits(
    magnitudes: Mapping[str, float], *, max_abs_value: float | None = None
) -> dict[str, float]:
    """The magnitude each numeric feature may reach at serving time (pure).

    ``magnitudes`` is the largest absolute finite value of each feature in the training data
    (NaN or absent when unknown). An explicit ``max_abs_value`` applies to every feature;
    otherwise a feature accepts :data:`RANGE_FACTOR` times its training magnitude (at least
    ``RANGE_FACTOR``), capped at :data:`MAX_ABS_NUMBER` so training on logged rows stays finite.
    """
    if max_abs_value is not None:
        bound = min(float(max_abs_value), MAX_ABS_NUMBER)
        return {name: bound for name in magnitudes}
    out = {}
    for name, magnitude in magnitudes.items():
        known = magnitude if magnitude == magnitude and math.isfinite(magnitude) else 0.0
        out[name] = min(MAX_ABS_NUMBER, RANGE_FACTOR * max(1.0, abs(known)))
    return out


def clip(text: str, limit: int = _ECHO_CHARS) -> str:
    """A client's text bounded for error messages (never echoes unbounded input)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def short(value: Any, limit: int = _ECHO_CHARS) -> str:
    """A bounded repr of a client's value for error messages."""
    return clip(repr(value), limit)


def string_problem(value: str, max_length: int) -> str | None:
    """Why a category string cannot be stored or used, or None."""
    if len(value) > max_length:
        return (
            f"category string of {len(value)} characters is longer than the limit of {max_length}"
        )
    match = _CONTROL.search(value)
    if match is not None:
        return (
            f"category string contains control character U+{ord(match.group()):04X} at "
            f"position {match.start()}; send printable text"
        )
    return None


@dataclass(frozen=True)
class FieldError:
    """One problem: the row (0-based, None for the body) and field (None for the whole row)."""

    row: int | None
    field: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        loc: list[Any] = ["body"]
        if self.row is not None:
            loc += ["records", self.row]
        if self.field is not None:
            loc.append(self.field)
        return {"loc": loc, "row": self.row, "field": self.field, "msg": self.message}


class PayloadError(ValueError):
    """The payload does not fit the model's contract; `errors` lists every problem found."""

    def __init__(self, errors: Sequence[FieldError], *, total: int | None = None) -> None:
        self.errors = list(errors)
        self.total = total if total is not None else len(self.errors)
        first = self.errors[0] if self.errors else FieldError(None, None, "invalid payload")
        where = f"row {first.row} " if first.row is not None else ""
        where += f"field {first.field!r} " if first.field else ""
        super().__init__(f"{self.total} problem(s) in the request; first: {where}{first.message}")

    def detail(self) -> list[dict[str, Any]]:
        items = [e.to_dict() for e in self.errors]
        if self.total > len(self.errors):
            more = self.total - len(self.errors)
            items.append(
                {
                    "loc": ["body"],
                    "row": None,
                    "field": None,
                    "msg": f"... and {more} more problems",
                }
            )
        return items


@dataclass(frozen=True)
class Records:
    """Validated rows: column-wise values for the model, row-wise dicts for the log."""

    columns: dict[str, list[Any]]
    rows: list[dict[str, Any]]
    single: bool

    def __len__(self) -> int:
        return len(self.rows)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def split_payload(payload: Any, *, max_rows: int) -> tuple[list[Any], bool]:
    """The list of raw records in a payload and whether it was a single record."""
    if isinstance(payload, list):
        rows, single = payload, False
    elif isinstance(payload, dict) and "records" in payload:
        extra = sorted(str(k) for k in payload if k != "records")
        if extra:
            raise PayloadError(
                [
                    FieldError(
                        None, clip(k), "unexpected key next to 'records'; send the records only"
                    )
                    for k in extra[:MAX_REPORTED_ERRORS]
                ]
            )
        rows, single = payload["records"], False
        if not isinstance(rows, list):
            raise PayloadError(
                [
                    FieldError(
                        None, "records", f"expected an array of records, got {_type_name(rows)}"
                    )
                ]
            )
    elif isinstance(payload, dict):
        rows, single = [payload], True
    else:
        raise PayloadError(
            [
                FieldError(
                    None,
                    None,
                    f"expected a record (JSON object), an array of records or {{'records': [...]}}, "
                    f"got {_type_name(payload)}",
                )
            ]
        )
    if not rows:
        raise PayloadError(
            [FieldError(None, "records", "the batch is empty; send at least one record")]
        )
    if len(rows) > max_rows:
        raise PayloadError(
            [
                FieldError(
                    None,
                    "records",
                    f"the batch has {len(rows)} records, more than the limit of {max_rows}; split it",
                )
            ]
        )
    return rows, single


def validate_payload(payload: Any, spec: InputSpec, *, max_rows: int) -> Records:
    """Check a parsed JSON payload and return its rows typed for the model.

    Rules: every feature present (nullable ones may be null), no unknown fields, numeric features
    finite JSON numbers (not booleans or strings) within their magnitude limit, categorical
    features strings without control characters and no longer than the spec's limit, features
    in `spec.not_null` never null, at most `max_rows` records. Raises PayloadError listing every
    problem (the first MAX_REPORTED_ERRORS in detail); messages quote at most a short prefix of
    a refused value.
    """
    rows, single = split_payload(payload, max_rows=max_rows)
    numeric = spec.numeric
    categorical = spec.categorical
    known: Collection[str] = frozenset(spec.features)
    not_null = spec.not_null
    columns: dict[str, list[Any]] = {name: [] for name in spec.features}
    clean_rows: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    total = 0

    def fail(row: int, field: str | None, message: str) -> None:
        nonlocal total
        total += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(FieldError(row, field, message))

    for index, record in enumerate(rows):
        if not isinstance(record, dict):
            fail(
                index,
                None,
                f"expected a record (JSON object of feature values), got {_type_name(record)}",
            )
            continue
        clean: dict[str, Any] = {}
        ok = True
        for name in numeric:
            if name not in record:
                fail(index, name, "missing numeric feature")
                ok = False
                continue
            value = record[name]
            if value is None:
                if name in not_null:
                    fail(index, name, "may not be null (listed in features.not_null)")
                    ok = False
                clean[name] = None
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(index, name, f"expected a number, got {_type_name(value)}")
                ok = False
            else:
                try:
                    number = float(value)
                except OverflowError:
                    number = math.inf
                if not math.isfinite(number):
                    fail(index, name, "expected a finite number, got NaN or infinity")
                    ok = False
                elif abs(number) > spec.limit(name):
                    fail(
                        index,
                        name,
                        f"{number:.4g} is outside the accepted range +-{spec.limit(name):.4g} "
                        "(serving.max_abs_value; by default a million times the largest "
                        "magnitude seen in training)",
                    )
                    ok = False
                clean[name] = number
        for name in categorical:
            if name not in record:
                fail(index, name, "missing categorical feature")
                ok = False
                continue
            value = record[name]
            if value is None:
                if name in not_null:
                    fail(index, name, "may not be null (listed in features.not_null)")
                    ok = False
                clean[name] = None
            elif isinstance(value, str):
                problem = string_problem(value, spec.max_string_length)
                if problem is not None:
                    fail(index, name, problem)
                    ok = False
                clean[name] = value
            else:
                fail(index, name, f"expected a string (a category), got {_type_name(value)}")
                ok = False
        if len(record) > len(clean) or not ok:
            for name in record:
                if name not in known:
                    fail(
                        index,
                        clip(str(name)),
                        "unknown field; the model's features are listed at GET /model",
                    )
                    ok = False
        if ok:
            clean_rows.append(clean)
    if total:
        raise PayloadError(errors, total=total)
    for clean in clean_rows:
        for name, value in clean.items():
            columns[name].append(value)
    return Records(columns=columns, rows=clean_rows, single=single)


def check_label(label: Any, *, task: str, classes: Sequence[Any]) -> tuple[Any, str | None]:
    """The label as the model knows it (a class itself, or a float), and why it does not fit."""
    if task == "classification":
        for cls in classes:
            if type(cls) is type(label) and cls == label:
                return cls, None
        for cls in classes:
            if str(cls) == str(label) and not isinstance(label, bool):
                return cls, None
        shown = clip(str(list(classes)), 200)
        return label, f"{short(label)} is not one of the model's classes {shown}"
    if (
        isinstance(label, bool)
        or not isinstance(label, (int, float))
        or not math.isfinite(float(label))
    ):
        return label, "expected a finite number for a regression target"
    return float(label), None
