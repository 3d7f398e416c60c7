"""Runtime settings from the environment (one typed object, built only at entry points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import DriftloopError


class SettingsError(DriftloopError, ValueError):
    """An environment variable holds a value driftloop cannot use; the message names it."""


class Settings(BaseSettings):
    """Where driftloop keeps its state. Tools' own variable names where they exist."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", protected_namespaces=())

    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow backend store (SQLite file by default, PostgreSQL in production)",
    )
    artifact_root: Path = Field(
        Path("mlruns"),
        validation_alias="DRIFTLOOP_ARTIFACT_ROOT",
        description="where new MLflow experiments keep artifacts (models, plots, reference snapshots)",
    )
    database_url: str = Field(
        "sqlite:///driftloop.db",
        validation_alias="DRIFTLOOP_DATABASE_URL",
        description="the inference log and drift_runs (SQLAlchemy URL)",
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias="DRIFTLOOP_API_KEY",
        description="when set, the inference API requires it in the X-API-Key header",
    )
    workspace: Path = Field(
        Path("evidently-workspace"),
        validation_alias="DRIFTLOOP_WORKSPACE",
        description="the Evidently workspace (projects, snapshots, dashboards)",
    )
    prefect_api_url: str | None = Field(None, validation_alias="PREFECT_API_URL")
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000",
        validation_alias="DRIFTLOOP_MLFLOW_UI_URL",
        description="where people open the MLflow UI (links in Prefect artifacts and alerts)",
    )
    evidently_ui_url: str = Field(
        "http://127.0.0.1:8001",
        validation_alias="DRIFTLOOP_EVIDENTLY_UI_URL",
        description="where people open the Evidently UI (links in alerts)",
    )

    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = Field(
        "NORMAL",
        validation_alias="DRIFTLOOP_SQLITE_SYNCHRONOUS",
        description="PRAGMA synchronous of a SQLite inference log: FULL or EXTRA also survive "
        "power loss (NORMAL in WAL mode survives process crashes)",
    )
    stack_db: str | None = Field(
        None,
        validation_alias="DRIFTLOOP_STACK_DB",
        description="`driftloop stack up` only: a PostgreSQL URL for Prefect, MLflow and the log "
        "(unset: SQLite)",
    )
    stack_alert_webhook: str | None = Field(
        None,
        validation_alias="DRIFTLOOP_STACK_ALERT_WEBHOOK",
        description="`driftloop stack up` only: the URL Alertmanager delivers alerts to "
        "(unset: Alertmanager routes to no receiver)",
    )
    dask_address: str | None = Field(
        None,
        validation_alias="DRIFTLOOP_DASK_ADDRESS",
        description="an existing Dask scheduler (tcp://host:8786) for the monitor's partitions "
        "(monitoring.partitions) and column tasks (monitoring.columns_per_task); unset: a local cluster of 2 worker processes per run",
    )
    state_dir: Path = Field(
        Path(".driftloop"),
        validation_alias="DRIFTLOOP_STATE_DIR",
        description="driftloop's own state: the command log (logs/driftloop.log), demo, stack",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def artifact_location(self) -> str:
        """Artifact root as a URI MLflow accepts (absolute file path or a remote URI)."""
        text = str(self.artifact_root)
        if "://" in text:
            return text
        return self.artifact_root.resolve().as_uri()


def _describe(exc: ValidationError) -> str:
    """One line naming each environment variable that failed and why."""
    problems = [
        f"{'.'.join(str(part) for part in error['loc'])}={error.get('input')!r}: {error['msg']}"
        for error in exc.errors()
    ]
    return "invalid setting(s) in the environment: " + "; ".join(problems)


def get_settings() -> Settings:
    return Settings()


def local_state_environment(directory: Path, *, workspace: str = "workspace") -> dict[str, str]:
    """The settings, by their variable names, that put every store under ``directory``: the
    MLflow registry and artifacts, the inference log and the Evidently workspace (``workspace``
    names its folder). For runs on fresh state: the demo and the backtest."""
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{directory / 'mlflow.db'}",
        "DRIFTLOOP_ARTIFACT_ROOT": str(directory / "mlruns"),
        "DRIFTLOOP_DATABASE_URL": f"sqlite:///{directory / 'driftloop.db'}",
        "DRIFTLOOP_WORKSPACE": str(directory / workspace),
    }
