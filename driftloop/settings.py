"""Runtime settings from the environment (one typed object, built only at entry points)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        description="where people open the MLflow UI (used for links in Prefect artifacts)",
    )

    state_dir: Path = Field(
        Path(".driftloop"),
        validation_alias="DRIFTLOOP_STATE_DIR",
        description="driftloop's own state: the command log (logs/driftloop.log), demo, stack",
    )

    def artifact_location(self) -> str:
        """Artifact root as a URI MLflow accepts (absolute file path or a remote URI)."""
        text = str(self.artifact_root)
        if "://" in text:
            return text
        return self.artifact_root.resolve().as_uri()


def get_settings() -> Settings:
    return Settings()
