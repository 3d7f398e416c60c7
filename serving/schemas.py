"""The request and response bodies of the inference service, as pydantic models (the OpenAPI
schema is generated from them; POST /predict's request body depends on the served model and is
written by :mod:`serving.openapi`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictionRow(BaseModel):
    request_id: str = Field(
        description="id of this row in the inference log; send it back to /feedback"
    )
    prediction: Any = Field(description="predicted class label or value")
    probability: float | None = Field(
        None,
        description="positive-class probability (binary) or top-class probability (multiclass)",
    )
    probabilities: dict[str, float] | None = Field(None, description="probability of every class")


class PredictResponse(BaseModel):
    model_name: str
    model_version: int
    predictions: list[PredictionRow]


class ErrorItem(BaseModel):
    loc: list[Any]
    row: int | None
    field: str | None
    msg: str


class ErrorResponse(BaseModel):
    error: str
    detail: list[ErrorItem] | str | None = None


class LabelItem(BaseModel):
    request_id: str = Field(max_length=64)
    label: bool | int | float | str


class FeedbackRequest(BaseModel):
    labels: list[LabelItem] = Field(min_length=1, description="true labels of logged requests")


class FeedbackResponse(BaseModel):
    updated: int
    unknown_request_ids: list[str]
