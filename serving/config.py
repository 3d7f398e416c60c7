"""The `serving:` section of driftloop.yaml: knobs of the inference service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ServingConfig(BaseModel):
    """Inference service settings. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    poll_interval_seconds: float = Field(
        10.0,
        ge=0.2,
        le=3600,
        description="how often the service checks where the `champion` alias points",
    )
    max_batch_rows: int = Field(
        1000, ge=1, le=100_000, description="most records one /predict may carry"
    )
    max_body_bytes: int = Field(
        2_000_000, ge=1024, le=200_000_000, description="largest request body accepted (413 above)"
    )
    max_feedback_rows: int = Field(
        10_000, ge=1, le=1_000_000, description="most labels one /feedback may carry"
    )
    microbatch_rows: int = Field(
        512,
        ge=1,
        le=100_000,
        description="most rows scored in one model call when requests arrive together",
    )
    writer_batch_rows: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="most log records committed in one transaction (also per chunk of spool "
        "replay)",
    )
    writer_queue_rows: int = Field(
        50_000,
        ge=1,
        le=10_000_000,
        description="log records that may wait for the writer before requests wait",
    )
    db_retry_seconds: float = Field(
        2.0,
        gt=0,
        le=600,
        description="while the database is down, how often the writer tries it again",
    )
    db_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=600,
        description="longest wait for one inference-log database call (a write batch, a chunk "
        "of spool replay, the lookups of one /feedback): then the writer spools the records and "
        "/feedback answers 503; also the PostgreSQL statement and idle-in-transaction timeout "
        "of the service's connections",
    )
    spool_dir: Path = Field(
        Path("inference-spool"),
        description="where log records wait (fsync'ed) while the database is unreachable; "
        "relative paths resolve against the config file's directory",
    )

    def resolved_spool_dir(self, base_dir: Path) -> Path:
        return (
            self.spool_dir
            if self.spool_dir.is_absolute()
            else (base_dir / self.spool_dir).resolve()
        )


def serving_section(raw: dict[str, Any] | None) -> ServingConfig:
    """Validate a raw `serving:` mapping (None gives the defaults)."""
    return ServingConfig.model_validate(raw or {})
