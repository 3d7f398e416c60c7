"""The `serving:` section of driftloop.yaml: knobs of the inference service."""

from __future__ import annotations

from pathlib import Path

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
    shadow_share: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="share of /predict requests the `challenger` version (when there is one) "
        "also scores, off the response path, into shadow_predictions; 0 turns shadow scoring off",
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

    max_abs_value: float | None = Field(
        None,
        gt=0,
        le=1e150,
        description="largest magnitude a numeric feature may have at /predict (422 above); "
        "default: a million times the largest magnitude in the training data (at least 1e6), "
        "never above 1e150",
    )
    max_string_length: int = Field(
        256, ge=1, le=100_000, description="longest category string /predict accepts (422 above)"
    )
    auth_free_failures: int = Field(
        10,
        ge=1,
        le=1_000_000,
        description="failed API-key attempts a client address may make before each further one "
        "locks it out for a doubling delay (1 s up to 60 s; 429 with Retry-After)",
    )
    body_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="a request body not received completely within this time gets a 408",
    )

    def resolved_spool_dir(self, base_dir: Path) -> Path:
        return (
            self.spool_dir
            if self.spool_dir.is_absolute()
            else (base_dir / self.spool_dir).resolve()
        )
