"""Shadow scoring: what the `challenger` version answered on live requests, next to the champion.

The inference service scores a share of `/predict` requests with the challenger too, off the
response path (:mod:`serving.shadow`), and writes its predictions here keyed by the same request
id. Once labels arrive, :func:`read_pairs` reads the labeled rows both versions answered and
:func:`shadow_comparison` compares them on exactly those rows: challenger minus champion with a
paired bootstrap interval, the fairest comparison there is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from core.spec import PREDICTION_COLUMN, PROBABILITY_COLUMN, VersionInfo
from monitoring import store
from monitoring.policy import Decision
from monitoring.store import Base, UTCDateTime, _json_type
from monitoring.verdict import PROBABILITIES_COLUMN, logged_scores
from pipelines.holdout import compare
from pipelines.promotion import Difference

SHADOW_PREDICTIONS = "shadow_predictions"
#: request ids per query when shadow predictions are looked up for labeled rows
_LOOKUP_CHUNK = 5_000


class ShadowPrediction(Base):
    """One live row as the challenger answered it (never shown to the client)."""

    __tablename__ = SHADOW_PREDICTIONS
    __table_args__ = (
        sa.UniqueConstraint("request_id", "model_version", name="uq_shadow_request_version"),
        sa.Index("ix_shadow_model_version_ts", "model_name", "model_version", "ts"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(sa.String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(sa.String(200))
    model_version: Mapped[int] = mapped_column(sa.Integer())
    prediction: Mapped[Any] = mapped_column(_json_type())
    probability: Mapped[float | None] = mapped_column(sa.Float(), nullable=True)
    probabilities: Mapped[dict[str, float] | None] = mapped_column(
        _json_type(nullable=True), nullable=True
    )


shadow_predictions: sa.Table = ShadowPrediction.__table__  # type: ignore[assignment]
SHADOW_KEYS = ("request_id", "ts", "model_name", "model_version", "prediction", "probability")


def _insert(dialect: str) -> Any:
    """An insert that skips a row already written (a retried batch)."""
    keys = ["request_id", "model_version"]
    if dialect == "postgresql":
        return postgresql.insert(shadow_predictions).on_conflict_do_nothing(index_elements=keys)
    if dialect == "sqlite":
        return sqlite.insert(shadow_predictions).on_conflict_do_nothing(index_elements=keys)
    return sa.insert(shadow_predictions)


def write_shadow(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store the challenger's predictions (one transaction); returns how many were given."""
    if not rows:
        return 0
    with engine.begin() as connection:
        connection.execute(
            _insert(connection.dialect.name),
            [
                {**{k: r.get(k) for k in SHADOW_KEYS}, "probabilities": r.get("probabilities")}
                for r in rows
            ],
        )
    return len(rows)


def count_shadow(engine: Engine, *, model_name: str, version: int) -> int:
    """How many live rows the challenger ``version`` answered."""
    c = shadow_predictions.c
    statement = sa.select(sa.func.count()).where(
        c.model_name == model_name, c.model_version == version
    )
    with engine.connect() as connection:
        return int(connection.execute(statement).scalar_one())


def _shadow_of(engine: Engine, version: int, request_ids: Sequence[str]) -> dict[str, Any]:
    c = shadow_predictions.c
    found: dict[str, Any] = {}
    with engine.connect() as connection:
        for start in range(0, len(request_ids), _LOOKUP_CHUNK):
            chunk = list(request_ids[start : start + _LOOKUP_CHUNK])
            statement = sa.select(c.request_id, c.prediction, c.probability, c.probabilities).where(
                c.model_version == version, c.request_id.in_(chunk)
            )
            for row in connection.execute(statement):
                found[row.request_id] = row
    return found


def read_pairs(
    engine: Engine,
    *,
    model_name: str,
    champion: int,
    challenger: int,
    numeric: Sequence[str],
    categorical: Sequence[str],
    target: str,
    last_n: int,
    probabilities: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest ``last_n`` labeled rows the champion served that the challenger also answered:
    the champion's frame (as :func:`monitoring.store.read_window` types it) and the same rows with
    the challenger's prediction columns, row for row."""
    served = store.read_window(
        engine,
        model_name=model_name,
        numeric=numeric,
        categorical=categorical,
        target=target,
        version=champion,
        labeled_only=True,
        probabilities=probabilities,
    )
    shadow = _shadow_of(engine, challenger, served["request_id"].tolist())
    both = served[served["request_id"].isin(shadow.keys())].tail(last_n).reset_index(drop=True)
    answers = [shadow[r] for r in both["request_id"]]
    theirs = both.copy()
    theirs[PREDICTION_COLUMN] = _like(
        [a.prediction for a in answers], both[PREDICTION_COLUMN].dtype
    )
    theirs[PROBABILITY_COLUMN] = np.array(
        [np.nan if a.probability is None else float(a.probability) for a in answers], dtype=float
    )
    if probabilities:
        theirs[PROBABILITIES_COLUMN] = pd.Series([a.probabilities for a in answers], dtype=object)
    theirs["model_version"] = challenger
    return both, theirs


def _like(values: list[Any], dtype: Any) -> pd.Series:
    """The challenger's predictions typed like the champion's (same labels, same dtype)."""
    series = pd.Series(values, dtype=object)
    try:
        return series.astype(dtype)
    except (TypeError, ValueError):
        return series


@dataclass(frozen=True)
class ShadowComparison:
    """The challenger minus the champion on the same labeled live rows (positive = the
    challenger is better, whatever the metric's direction), with its paired bootstrap interval."""

    champion: int
    challenger: int
    metric: str
    rows: int
    champion_value: float
    challenger_value: float
    difference: Difference

    @property
    def better(self) -> bool:
        """The challenger is better beyond noise (the whole interval above zero)."""
        return self.difference.low > 0

    @property
    def worse(self) -> bool:
        return self.difference.high < 0

    def to_dict(self) -> dict[str, Any]:
        d = self.difference
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "metric": self.metric,
            "rows": self.rows,
            "champion_value": self.champion_value,
            "challenger_value": self.challenger_value,
            "difference": d.value,
            "low": d.low,
            "high": d.high,
            "verdict": "better"
            if self.better
            else "worse"
            if self.worse
            else "no clear difference",
        }

    def sentence(self) -> str:
        verdict = self.to_dict()["verdict"]
        return (
            f"challenger v{self.challenger} vs champion v{self.champion} on {self.rows} labeled "
            f"live rows: {self.metric} {self.challenger_value:.4f} vs {self.champion_value:.4f} "
            f"({verdict})"
        )


def shadow_comparison(
    champion_rows: pd.DataFrame,
    challenger_rows: pd.DataFrame,
    *,
    champion: VersionInfo,
    challenger: VersionInfo,
    target: str,
    metric: str,
    min_rows: int,
) -> ShadowComparison | None:
    """Champion and challenger on the same labeled live rows (pure); None below ``min_rows``
    pairs or when an answer is unusable (a probability missing for a probability metric)."""
    if len(champion_rows) < min_rows or len(champion_rows) != len(challenger_rows):
        return None
    ours = logged_scores(champion_rows, champion, target)
    theirs = logged_scores(challenger_rows, challenger, target)
    for scores in (ours, theirs):
        if scores.proba is not None and not np.isfinite(scores.proba).all():
            return None
    return ShadowComparison(
        champion=champion.version,
        challenger=challenger.version,
        metric=metric,
        rows=len(champion_rows),
        champion_value=float(ours.metric(metric)),
        challenger_value=float(theirs.metric(metric)),
        difference=compare(theirs, ours, metric),
    )


def should_promote_shadow(
    comparison: ShadowComparison | None,
    *,
    enabled: bool,
    min_improvement: float,
    rolled_back: bool,
) -> Decision:
    """Whether the challenger replaces the champion on its paired live results (pure): on
    ``promotion.use_shadow``, when the challenger is better beyond noise (the whole paired
    interval above zero) and by at least ``min_improvement``, and was never rolled back."""
    if not enabled:
        return Decision(False, "promotion.use_shadow is off")
    if comparison is None:
        return Decision(False, "no paired live results of a challenger yet")
    if rolled_back:
        return Decision(
            False, f"v{comparison.challenger} was rolled back; it is never promoted again"
        )
    if not comparison.better:
        return Decision(False, comparison.sentence())
    if comparison.difference.value < min_improvement:
        return Decision(
            False,
            f"{comparison.sentence()}, but by {comparison.difference.value:.4f}, less than "
            f"promotion.min_improvement {min_improvement:g}",
        )
    return Decision(True, f"promoted on its paired live results: {comparison.sentence()}")
