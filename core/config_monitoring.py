"""The `monitoring:` section of `driftloop.yaml`: windows, drift methods, checks and decisions.

Every section forbids unknown keys and is frozen, like the rest of :mod:`core.config`.
The defaults are measured (``bench/detection.py``): at most 5% false alarms on no-drift windows
of any size, and a 0.5 standard-deviation shift in one feature of ten caught at least 90% of the
time from 1,000 rows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Drift methods: ``driftloop`` (p-value test with a family-wise error control across columns
#: plus a minimum effect size), ``evidently`` (Evidently's automatic choice by reference size),
#: or one named statistic computed exactly as Evidently 0.7 does.
DriftMethod = Literal[
    "driftloop",
    "evidently",
    "ks",
    "chisquare",
    "z",
    "wasserstein",
    "jensenshannon",
    "psi",
    "kl_div",
]
Check = Literal[
    "data_drift",
    "prediction_drift",
    "data_quality",
    "performance",
    "estimated_performance",
    "regression",
    "floor",
]
ALL_CHECKS: tuple[Check, ...] = (
    "data_drift",
    "prediction_drift",
    "data_quality",
    "performance",
    "estimated_performance",
    "regression",
    "floor",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class WindowConfig(_Section):
    """Which logged inference rows one monitor run looks at."""

    kind: Literal["last_rows", "last_hours", "since_last_run"] = Field(
        "last_rows", description="last N rows, last T hours, or everything since the last run"
    )
    rows: int = Field(5000, ge=1, description="N for kind=last_rows")
    hours: float = Field(24.0, gt=0, description="T for kind=last_hours")


class DriftConfig(_Section):
    """How each column's drift is measured and when the dataset counts as drifted."""

    method: DriftMethod = Field("driftloop", description="default method for every column")
    alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="method=driftloop: family-wise false-alarm rate across all columns (Holm)",
    )
    min_effect_numeric: float = Field(
        0.1,
        ge=0,
        description="method=driftloop: smallest shift that matters, in reference standard "
        "deviations (normed Wasserstein distance)",
    )
    min_effect_categorical: float = Field(
        0.05,
        ge=0,
        le=1,
        description="method=driftloop: smallest Jensen-Shannon distance that matters",
    )
    threshold: float | None = Field(
        None, gt=0, description="threshold for a named method (default: that method's own)"
    )
    per_column_method: dict[str, DriftMethod] = Field(
        default_factory=dict, description="method overrides by column name"
    )
    per_column_threshold: dict[str, float] = Field(
        default_factory=dict,
        description="threshold overrides by column (for driftloop columns: the minimum effect)",
    )
    drift_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of drifted features that makes the dataset drifted; default: any "
        "feature for method=driftloop (errors are controlled across columns), 0.5 otherwise",
    )
    n_bins: int = Field(30, ge=2, description="bins for psi/kl_div/jensenshannon (as Evidently)")

    def dataset_share(self) -> float | None:
        """The share rule in force: None means "any drifted feature"."""
        if self.drift_share is not None:
            return self.drift_share
        return None if self.method == "driftloop" else 0.5


class QualityConfig(_Section):
    """Data quality tolerances of the window against the reference."""

    max_missing_increase: float = Field(
        0.05, ge=0, le=1, description="missing share may exceed the reference's by this much"
    )
    max_new_category_share: float = Field(
        0.01, ge=0, le=1, description="share of rows with categories never seen in the reference"
    )
    max_out_of_range_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="share of numeric values outside the reference range, beyond the "
        "reference's own share outside it and (for the min-max range) beyond what a reference "
        "of its size lets through by chance (0.1% level)",
    )
    range_quantiles: tuple[float, float] | None = Field(
        None, description="reference quantile band, e.g. [0.001, 0.999]; default: min and max"
    )

    @model_validator(mode="after")
    def _band_is_ordered(self) -> QualityConfig:
        if self.range_quantiles is not None:
            low, high = self.range_quantiles
            if not 0 <= low < high <= 1:
                raise ValueError(
                    f"range_quantiles must satisfy 0 <= low < high <= 1, got {low}, {high}"
                )
        return self


class PolicyConfig(_Section):
    """Which failed checks alert, and when drift is worth a retraining."""

    checks: tuple[Check, ...] = Field(
        ALL_CHECKS, description="checks that count for alerts and retraining"
    )
    drift_rule: Literal["dataset", "share", "weighted"] = Field(
        "dataset",
        description="dataset: the drift verdict (see drift.drift_share); share: drifted share >= "
        "drift_share; weighted: importance-weighted drifted share >= weighted_drift",
    )
    drift_share: float = Field(0.5, gt=0, le=1, description="for drift_rule=share")
    weighted_drift: float = Field(0.3, gt=0, le=1, description="for drift_rule=weighted")
    drop_alpha: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="a performance drop (measured or estimated) counts only when sampling noise "
        "for the window's size would exceed it with at most this probability (the noise is "
        "measured on the version's holdout)",
    )
    min_relative_drop: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="a drop must also be at least this share of the reference value (so huge "
        "windows do not flag trivial drops); replaces the absolute max_performance_drop",
    )
    resolve_after_runs: int = Field(
        2,
        ge=1,
        le=100,
        description="clean runs in a row that resolve an incident (or calm a critical one down "
        "to a warning when drift remains)",
    )
    min_labeled_rows: int = Field(
        200, ge=1, description="labeled rows in the window before a measured drop counts"
    )
    drift_alone_retrains: bool = Field(
        False, description="retrain on drift even when no performance drop is measured or estimated"
    )
    performance_alone_retrains: bool = Field(
        True,
        description="retrain on a measured (labeled) performance drop even without data drift",
    )
    cooldown_hours: float = Field(24.0, ge=0, description="minimum time between two retrainings")
    retry_backoff: float = Field(
        2.0,
        ge=1,
        le=10,
        description="while the problem persists after a retraining (no clean run since), each "
        "further retraining waits this factor times longer (1 = a fixed cooldown)",
    )
    max_retrains_per_day: int = Field(2, ge=0, description="retrainings allowed in any 24 hours")
    max_retrains_per_incident: int = Field(
        3,
        ge=0,
        description="retrainings one incident may start; after a refused challenger the next "
        "one waits until the harm grew beyond noise (retraining did not help at that level) and "
        "half a monitor window of labels arrived since",
    )
    refresh_factor: float = Field(
        4.0,
        ge=0,
        description="a retrained champion is retrained once more (a follow-up) when this many "
        "times as many labeled rows have arrived since its window started as it learned from "
        "(0: never)",
    )

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, raw: object) -> object:
        if isinstance(raw, dict) and "max_performance_drop" in raw:
            raise ValueError(
                "max_performance_drop was replaced: a drop now counts when it exceeds sampling "
                "noise (drop_alpha) and a share of the reference value (min_relative_drop)"
            )
        return raw


class RetrainConfig(_Section):
    """Which data a retraining learns from and which rows judge it."""

    data_policy: Literal["adaptive", "sliding", "expanding"] = Field(
        "adaptive",
        description="adaptive: candidates on several windows (since the detected change, the "
        "last N rows, with and without the reference), the best on the newest rows wins; "
        "sliding: the most recent labeled rows; expanding: all of them",
    )
    max_live_rows: int = Field(
        50_000, ge=1, description="cap on live rows a challenger learns from"
    )
    include_reference: bool = Field(
        True,
        description="sliding/expanding: train on reference plus live rows; adaptive: also try "
        "windows with the reference",
    )
    min_labeled_rows: int = Field(500, ge=1, description="labeled live rows needed to retrain")
    gate_rows: int | None = Field(
        None,
        ge=50,
        description="newest labeled rows champion and challenger are judged on (never trained "
        "on); default: the monitor window's size, at most half the labeled rows and, after a "
        "detected change, at most half the rows since it",
    )


class CompactionConfig(_Section):
    """The columnar copy of the inference log the monitor keeps in step before it reads."""

    enabled: bool = Field(
        True,
        description="each monitor run first puts the log rows no segment holds yet into columnar "
        "segments (`driftloop log compact` does it by hand); reads use them either way",
    )
    segment_rows: int = Field(
        100_000,
        ge=100,
        description="rows per segment at most (one model version each); compaction merges "
        "consecutive smaller segments of a version up to it",
    )
    settle_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="PostgreSQL: how long compaction waits for open transactions that may "
        "still commit rows below the newest id (rows past them wait for the next run)",
    )


class MonitoringConfig(_Section):
    """The `monitoring:` section of the project config."""

    window: WindowConfig = Field(default_factory=WindowConfig)
    stale_after_intervals: float = Field(
        4.0,
        gt=1,
        description="`driftloop check-monitor` alerts monitor_stale when the newest monitor run "
        "is older than this many intervals of the monitor deployment's schedule (prefect.yaml)",
    )
    min_window_rows: int = Field(
        500, ge=1, description="below this, a run reports not_enough_data instead of a verdict"
    )
    drift: DriftConfig = Field(default_factory=DriftConfig)
    partitions: int = Field(
        0,
        ge=0,
        description="0: drift is computed in the monitor's process (no cluster); N: the window "
        "is split into N partitions, each summarised by a Prefect task on a Dask cluster "
        "(DRIFTLOOP_DASK_ADDRESS, else a local one of 2 worker processes) and merged exactly: "
        "the same verdicts",
    )
    columns_per_task: int = Field(
        0,
        ge=0,
        description="0: the monitor's process reads the window with its features; N: it reads "
        "the window's outputs and labels only, and drift and data quality run as Prefect tasks "
        "on a Dask cluster (as for `partitions`), each reading N of the window's columns from "
        "the log itself: the same verdicts, and no process holds every feature of the window (the log's "
        "URL must be reachable from the workers)",
    )
    quality: QualityConfig = Field(default_factory=QualityConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    compaction: CompactionConfig = Field(default_factory=CompactionConfig)

    @model_validator(mode="after")
    def _one_engine(self) -> MonitoringConfig:
        if self.partitions and self.columns_per_task:
            raise ValueError(
                "monitoring.partitions and monitoring.columns_per_task both split the drift "
                "check over Dask tasks: set one of them (the other 0)"
            )
        return self
