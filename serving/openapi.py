"""The OpenAPI schema, completed with what FastAPI cannot know: the served model's inputs.

FastAPI generates the routes' schema; :func:`complete_schema` adds POST /predict (answered by
the gate, not by a route), the `Record` of the served version (types, limits, nullability), the
labels the model accepts at /feedback, the answers the gate itself can give (401, 408, 413, 415,
429, 503) and the API-key security schemes. A schema that says exactly what the server accepts
is what clients and schemathesis are generated from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.config_serving import ServingConfig
from serving.schemas import ErrorResponse, PredictResponse
from serving.validation import InputSpec

ERROR_SCHEMA = "#/components/schemas/ErrorResponse"
#: Category strings hold no C0/C1 control character (serving.validation refuses them).
PRINTABLE = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def _security_schemes() -> dict[str, Any]:
    """The API-key schemes, built fresh for every schema (nothing shared between documents)."""
    return {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "Bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "the same key as a bearer token",
        },
    }


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": ERROR_SCHEMA}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def record_schema(model: Any | None, spec: InputSpec | None) -> dict[str, Any]:
    """The JSON schema of one /predict record for the served model (any object when none)."""
    schema: dict[str, Any] = {
        "type": "object",
        "title": "Record",
        "description": "feature values of one row; GET /model lists the features of the served "
        "version",
        "additionalProperties": model is None,
    }
    if model is None or spec is None:
        return schema
    props: dict[str, Any] = {}
    for name in spec.numeric:
        limit = spec.limit(name)
        props[name] = {"type": "number", "minimum": -limit, "maximum": limit}
    for name in spec.categorical:
        props[name] = {"type": "string", "maxLength": spec.max_string_length, "pattern": PRINTABLE}
    for name in spec.features:
        if name not in spec.not_null:
            props[name] = {"anyOf": [props[name], {"type": "null"}]}
    schema["properties"] = props
    schema["required"] = list(spec.features)
    return schema


def label_schema(model: Any | None) -> dict[str, Any]:
    """What /feedback accepts as a label: one of the classes (as itself or its text), or a number."""
    if model is None:
        return {"anyOf": [{"type": t} for t in ("boolean", "integer", "number", "string")]}
    if model.task == "regression":
        return {"type": "number"}
    values: list[Any] = []
    for cls in model.classes:
        for value in (cls, str(cls)):
            if value not in values:
                values.append(value)
    return {"enum": values}


def predict_operation(config: ServingConfig) -> dict[str, Any]:
    rows = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Record"},
        "minItems": 1,
        "maxItems": config.max_batch_rows,
    }
    body = {
        "anyOf": [
            {"$ref": "#/components/schemas/Record"},
            rows,
            {
                "type": "object",
                "properties": {"records": rows},
                "required": ["records"],
                "additionalProperties": False,
            },
        ]
    }
    ok = {"$ref": "#/components/schemas/PredictResponse"}
    return {
        "summary": "score one record or a batch; every row is logged before the answer",
        "operationId": "predict",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {"description": "predictions", "content": {"application/json": {"schema": ok}}},
            "422": _error(
                "each offending row and field, or a record the inference log refused (kept as "
                "a dead letter)"
            ),
            "503": _error("no model loaded, or the log cannot store the rows"),
        },
    }


def _components(model: type) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    found = schema.pop("$defs", {})
    return {**found, model.__name__: schema}


def gate_responses(path: str, method: str, *, protected: bool) -> dict[str, dict[str, Any]]:
    """The answers the gate can give before a route runs."""
    out = {"503": _error("the service is starting")}
    if protected and path != "/health":
        out["401"] = _error("missing or wrong API key")
        out["429"] = _error("too many failed API-key attempts from this address (Retry-After)")
    if method == "post":
        out["408"] = _error("the body did not arrive within serving.body_timeout_seconds")
        out["413"] = _error("body larger than serving.max_body_bytes")
        if path in ("/predict", "/feedback"):
            out["415"] = _error("the body is not sent as application/json")
    return out


def complete_schema(
    schema: dict[str, Any],
    *,
    model: Any | None,
    spec: InputSpec | None,
    config: ServingConfig,
    protected: bool,
) -> dict[str, Any]:
    """FastAPI's schema plus /predict, the model's Record and labels, gate answers and auth."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for body in (PredictResponse, ErrorResponse):
        for name, part in _components(body).items():
            components.setdefault(name, part)
    components["Record"] = record_schema(model, spec)
    if "LabelItem" in components:
        components["LabelItem"]["properties"]["label"] = label_schema(model)
    feedback = components.get("FeedbackRequest", {}).get("properties", {}).get("labels")
    if feedback is not None:
        feedback["maxItems"] = config.max_feedback_rows
    schema.setdefault("paths", {})["/predict"] = {"post": predict_operation(config)}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            _add_missing(operation["responses"], gate_responses(path, method, protected=protected))
            if protected and path != "/health":
                operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
    if protected:
        schema["components"]["securitySchemes"] = _security_schemes()
    return schema


def _add_missing(responses: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for status, response in extra.items():
        responses.setdefault(status, response)
