"""The project config (`driftloop.yaml`): one validated pydantic model.

Every section forbids unknown keys, so a typo is an error that names the key instead of a
setting that silently does nothing. Load it with :func:`load_config`; it raises
:class:`ConfigError` with every problem listed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.config_alerts import AlertConfig
from core.config_monitoring import MonitoringConfig
from core.config_serving import ServingConfig
from core.errors import DriftloopError
from core.metrics import higher_is_better, names_for
from core.spec import families_for

Task = Literal["classification", "regression"]
Family = Literal["logistic", "linear", "random_forest", "hist_gradient_boosting"]

#: Metrics where a smaller value is better.


class ConfigError(DriftloopError, ValueError):
    """The config file is missing, unreadable or invalid; the message lists every problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class SqlSource(_Section):
    """Training data read from a database with SQLAlchemy."""

    url: str = Field(description="SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/db")
    query: str = Field(description="SELECT returning the feature, target (and id/time) columns")


class DataConfig(_Section):
    train: str | SqlSource = Field(
        description="CSV or Parquet path (relative to the config), or a SQL source"
    )

    @field_validator("train")
    @classmethod
    def _path_has_known_suffix(cls, value: str | SqlSource) -> str | SqlSource:
        if isinstance(value, str) and Path(value).suffix.lower() not in {".csv", ".parquet", ".pq"}:
            raise ValueError(f"data.train must be a .csv or .parquet file, got {value!r}")
        return value


class FeaturesConfig(_Section):
    numeric: list[str] | None = Field(
        None, description="numeric feature columns (inferred if absent)"
    )
    categorical: list[str] | None = Field(
        None, description="categorical feature columns (inferred if absent)"
    )
    drop: list[str] = Field(default_factory=list, description="columns ignored on ingestion")
    not_null: list[str] = Field(
        default_factory=list,
        description="features that may never be missing at serving time (others are imputed)",
    )

    @model_validator(mode="after")
    def _no_overlap(self) -> FeaturesConfig:
        both = set(self.numeric or []) & set(self.categorical or [])
        if both:
            raise ValueError(f"features listed as both numeric and categorical: {sorted(both)}")
        dropped = (set(self.numeric or []) | set(self.categorical or [])) & set(self.drop)
        if dropped:
            raise ValueError(f"features listed in drop and used at once: {sorted(dropped)}")
        return self


class CandidateConfig(_Section):
    family: Family = Field(description="model family; each is one scikit-learn Pipeline")
    search: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="hyperparameter grid for the estimator, e.g. {C: [0.1, 1, 10]}",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="fixed estimator parameters")


#: The search when the config names no candidates: a linear model and gradient boosting.
_BOOSTING = {
    "family": "hist_gradient_boosting",
    "search": {
        "learning_rate": [0.05, 0.1],
        "max_leaf_nodes": [15, 31, 63],
        "l2_regularization": [0.0, 1.0],
    },
}
DEFAULT_CANDIDATES: dict[str, list[dict[str, Any]]] = {
    "classification": [{"family": "logistic", "search": {"C": [0.01, 0.1, 1.0, 10.0]}}, _BOOSTING],
    "regression": [{"family": "linear", "search": {"alpha": [0.1, 1.0, 10.0, 100.0]}}, _BOOSTING],
}


class ModelConfig(_Section):
    candidates: list[CandidateConfig] = Field(
        default_factory=lambda: [
            CandidateConfig.model_validate(c) for c in DEFAULT_CANDIDATES["classification"]
        ],
        min_length=1,
        description="model families searched with cross-validation; the best one is registered "
        "(default: logistic regression over C and histogram gradient boosting over learning "
        "rate, leaf count and L2; ridge instead of logistic for regression)",
    )
    cv_folds: int = Field(
        3, ge=2, le=20, description="cross-validation folds (time-ordered with time_column)"
    )
    search_iterations: int = Field(8, ge=1, description="random-search draws per candidate family")
    test_size: float = Field(0.2, gt=0.0, lt=0.9, description="held-out share for evaluation")
    seed: int = Field(42, description="random seed: training is deterministic given it")
    max_train_rows: int | None = Field(
        None,
        ge=100,
        description="subsample the training rows for the search (speed); the final fit uses all",
    )
    search_on_dask: bool = Field(
        False,
        description="run each fit of the cross-validated search (one family, setting and fold) "
        "as its own Prefect task on Dask: the cluster DRIFTLOOP_DASK_ADDRESS names, else a local "
        "one of 2 worker processes per run; the same data and seed give the same model",
    )
    native_categorical: bool = Field(
        True,
        description="gradient boosting splits on category codes instead of one-hot columns "
        "(about 3x faster to train on the shipped data; other families are unaffected)",
    )


class RollbackConfig(_Section):
    """When the monitor moves `champion` back to the version it replaced."""

    enabled: bool = Field(
        True,
        description="roll back a champion that scores worse than the champion it replaced, by "
        "more than noise, on the same labeled live rows (any promotion, by hand included)",
    )
    within_hours: float | None = Field(
        168.0,
        gt=0,
        description="only this long after the promotion (null: no time limit)",
    )
    within_rows: int | None = Field(
        None,
        ge=1,
        description="only until the new champion has served this many labeled rows since its "
        "promotion (null: no row limit); with within_hours, the first limit reached ends it",
    )
    min_labeled_rows: int = Field(
        200,
        ge=1,
        description="labeled live rows of the new champion both versions are scored on before "
        "a rollback may be decided",
    )


class PromotionConfig(_Section):
    metric: str = Field(
        "roc_auc",
        description="primary metric compared between candidate and champion and monitored: "
        "roc_auc, roc_auc_macro, accuracy, f1, f1_macro, precision, recall, log_loss, brier "
        "(classification); rmse, mae, r2 (regression; default rmse)",
    )
    min_improvement: float = Field(
        0.0, ge=0.0, description="absolute improvement needed over the champion"
    )
    floor: float | None = Field(
        None,
        description="absolute bound a candidate must reach to be promoted (>= for "
        "higher-is-better metrics); the monitor also judges the champion's labeled live rows "
        "against it (check `floor`)",
    )
    rollback: RollbackConfig = Field(default_factory=RollbackConfig)
    approval: Literal["auto", "manual"] = Field(
        "auto",
        description="manual: a promotion the gate allows waits for a person (the flow run "
        "pauses with a form on a Prefect server; `driftloop approve/reject --version N`)",
    )
    approval_timeout_hours: float = Field(
        24.0, gt=0, le=24 * 30, description="no answer within this long: the champion stays"
    )
    use_shadow: bool = Field(
        False,
        description="the monitor promotes the `challenger` when its paired live results (shadow "
        "scoring) beat the champion beyond noise and by min_improvement, on at least "
        "monitoring.policy.min_labeled_rows rows",
    )


class ProjectConfig(_Section):
    model_name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="registered model name in MLflow (letters, digits, _ . -)",
    )
    task: Task = Field(description="classification (binary or multiclass) or regression")
    target: str = Field(description="the column to predict")
    data: DataConfig = Field(description="where the training data comes from")
    id_column: str | None = Field(
        None,
        description="unique row id: never a feature, checked unique in training data; "
        "`driftloop backtest --labels` joins labels on it (live labels join on request_id)",
    )
    time_column: str | None = Field(
        None,
        description="time order: the holdout is the latest slice and cross-validation is "
        "time-ordered",
    )
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    min_rows: int = Field(50, ge=10, description="refuse training data with fewer rows")
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    alerts: AlertConfig = Field(default_factory=AlertConfig)
    #: Directory of the config file; relative data paths resolve against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _regression_defaults(cls, raw: Any) -> Any:
        """Regression defaults: metric rmse and the regression search (classification: roc_auc)."""
        if not isinstance(raw, dict) or raw.get("task") != "regression":
            return raw
        promotion, model = raw.get("promotion") or {}, raw.get("model") or {}
        if isinstance(promotion, dict) and "metric" not in promotion:
            raw = {**raw, "promotion": {**promotion, "metric": "rmse"}}
        if isinstance(model, dict) and "candidates" not in model:
            raw = {**raw, "model": {**model, "candidates": DEFAULT_CANDIDATES["regression"]}}
        return raw

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ProjectConfig:
        allowed = names_for(self.task)
        if self.promotion.metric not in allowed:
            raise ValueError(
                f"promotion.metric {self.promotion.metric!r} does not fit task {self.task!r}; "
                f"choose one of {sorted(allowed)}"
            )
        special = {self.target, self.id_column, self.time_column} - {None}
        listed = set(self.features.numeric or []) | set(self.features.categorical or [])
        clash = special & listed
        if clash:
            raise ValueError(f"target/id/time columns cannot also be features: {sorted(clash)}")
        for index, candidate in enumerate(self.model.candidates):
            if candidate.family not in families_for(self.task):
                raise ValueError(
                    f"model.candidates[{index}]: model family {candidate.family!r} does not fit "
                    f"task {self.task!r}; choose one of {families_for(self.task)}"
                )
        return self

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.promotion.metric)

    def train_path(self) -> Path | None:
        """Absolute path of a file training source, or None for a SQL source."""
        if isinstance(self.data.train, str):
            path = Path(self.data.train)
            return path if path.is_absolute() else (self.base_dir / path).resolve()
        return None

    def config_hash(self) -> str:
        """A stable hash of the settings (not of where the file lives)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the config reference in the README)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        lines.append(f"  - {message}" if key == "(top level)" else f"  - {key}: {message}")
    return "\n".join(lines)


def parse_config(
    raw: dict[str, Any], *, base_dir: Path = Path("."), source: str = "config"
) -> ProjectConfig:
    """Validate a config mapping; raise ConfigError naming every bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys at the top level, got {type(raw).__name__}"
        )
    try:
        return ProjectConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid:\n{_format_errors(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What YAML found wrong and where, in one line (its own text spans several)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate a driftloop YAML config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass --config PATH to a driftloop.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    return parse_config(raw, base_dir=path.resolve().parent, source=str(path))
