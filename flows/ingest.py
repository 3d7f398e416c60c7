"""The `ingest` flow: read the configured training data and validate it against the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from core.config import ProjectConfig, load_config
from core.spec import FeatureSpec
from flows.retry import transient
from flows.sources import read_source
from pipelines.schema import infer_features
from pipelines.validation import ValidationReport, validate_training_data


@dataclass(frozen=True)
class Ingested:
    """Validated training data and what was learned about it."""

    frame: pd.DataFrame
    spec: FeatureSpec
    report: ValidationReport
    source: str


def feature_spec(config: ProjectConfig, frame: pd.DataFrame) -> FeatureSpec:
    """The feature lists from the config, inferred from dtypes where the config is silent."""
    return infer_features(
        frame,
        target=config.target,
        id_column=config.id_column,
        time_column=config.time_column,
        numeric=config.features.numeric,
        categorical=config.features.categorical,
        drop=tuple(config.features.drop),
    )


def source_name(config: ProjectConfig) -> str:
    path = config.train_path()
    return str(path) if path is not None else f"sql:{config.data.train.query[:200]}"  # type: ignore[union-attr]


@task(retries=2, retry_delay_seconds=3, retry_condition_fn=transient, cache_policy=NO_CACHE)
def read_training_data(config: ProjectConfig) -> pd.DataFrame:
    """Read `data.train` (file or SQL); retried because it is I/O."""
    return read_source(config.data.train, base_dir=config.base_dir)


@task(cache_policy=NO_CACHE)
def validate(config: ProjectConfig, frame: pd.DataFrame) -> tuple[FeatureSpec, ValidationReport]:
    """Check the frame against the config; raises DataValidationError listing every problem."""
    spec = feature_spec(config, frame)
    report = validate_training_data(
        frame,
        spec=spec,
        target=config.target,
        task=config.task,
        min_rows=config.min_rows,
        id_column=config.id_column,
        time_column=config.time_column,
    )
    return spec, report


def validation_markdown(source: str, spec: FeatureSpec, report: ValidationReport) -> str:
    lines = [
        f"### Training data: `{source}`",
        f"{report.rows:,} rows, {len(spec.numeric)} numeric and {len(spec.categorical)} categorical features.",
        "",
    ]
    if report.warnings:
        lines += ["| column | warning | example rows |", "|---|---|---|"]
        for w in report.warnings:
            lines.append(f"| {w.column or '-'} | {w.problem} | {', '.join(map(str, w.rows))} |")
    else:
        lines.append("No warnings.")
    return "\n".join(lines)


def ingest_config(config: ProjectConfig, *, frame: pd.DataFrame | None = None) -> Ingested:
    """Read (unless a frame is given) and validate; publishes the validation summary as an artifact."""
    data = read_training_data(config) if frame is None else frame
    spec, report = validate(config, data)
    source = source_name(config) if frame is None else "frame passed in"
    create_markdown_artifact(
        validation_markdown(source, spec, report),
        key=f"{config.model_name}-data-validation".lower().replace("_", "-"),
        description="training data validation",
    )
    return Ingested(frame=data, spec=spec, report=report, source=source)


@flow(name="ingest", log_prints=True)
def ingest(
    config_path: Annotated[
        str, Field(description="path to driftloop.yaml, relative to the working directory")
    ] = "driftloop.yaml",
) -> dict[str, object]:
    """Read the configured training data and validate it (nothing is registered)."""
    config = load_config(config_path)
    result = ingest_config(config)
    print(f"{result.report.rows} rows valid; {len(result.report.warnings)} warnings")
    return {"rows": result.report.rows, "warnings": [w.problem for w in result.report.warnings]}
