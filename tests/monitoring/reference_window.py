"""The read path as it was before the columnar blocks: every row's JSON features decoded in Python.

Kept only as the reference the columnar `monitoring.store.read_window` is tested (and benched)
against: same filters, same frame, row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitoring.logblocks import label_series, to_float, to_str
from monitoring.store import _filtered, inference_log


def read_window_json(
    engine: Engine,
    *,
    model_name: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    target: str,
    since: datetime | None = None,
    until: datetime | None = None,
    last_n: int | None = None,
    version: int | None = None,
    labeled_only: bool = False,
    probabilities: bool = False,
) -> pd.DataFrame:
    """Logged rows of a model as a frame typed like the training data, oldest first.

    Columns: the numeric features (float64), the categorical features (object str, None when
    missing), `prediction`, `probability` (float64), the label under `target`, `model_version`
    (int64), `ts` (datetime64 UTC) and `request_id`; with `probabilities`, also `probabilities`
    (the per-class `{class: p}` dicts, object). `since` is inclusive, `until` exclusive;
    `last_n` keeps the newest n matching rows.
    """
    c = inference_log.c
    columns = [
        c.request_id,
        c.ts,
        c.model_version,
        c.features,
        c.prediction,
        c.probability,
        c.label,
        *([c.probabilities] if probabilities else []),
    ]
    statement = _filtered(
        sa.select(*columns),
        model_name=model_name,
        since=since,
        until=until,
        version=version,
        labeled_only=labeled_only,
    )
    if last_n is not None:
        if last_n < 0:
            raise ValueError(f"last_n must be >= 0, got {last_n}")
        statement = statement.order_by(c.ts.desc(), c.id.desc()).limit(last_n)
    else:
        statement = statement.order_by(c.ts, c.id)
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    if last_n is not None:
        rows.reverse()
    return _typed_frame(
        rows,
        numeric=list(numeric),
        categorical=list(categorical),
        target=target,
        probabilities=probabilities,
    )


def _typed_frame(
    rows: Sequence[Any],
    *,
    numeric: list[str],
    categorical: list[str],
    target: str,
    probabilities: bool = False,
) -> pd.DataFrame:
    n = len(rows)
    data: dict[str, Any] = {}
    features = [row.features or {} for row in rows]
    for name in numeric:
        data[name] = np.fromiter(
            (to_float(f.get(name)) for f in features), dtype=np.float64, count=n
        )
    for name in categorical:
        data[name] = pd.Series([to_str(f.get(name)) for f in features], dtype=object)
    data["prediction"] = label_series([row.prediction for row in rows])
    data["probability"] = np.fromiter((to_float(row.probability) for row in rows), np.float64, n)
    data[target] = label_series([row.label for row in rows])
    data["model_version"] = np.fromiter((row.model_version for row in rows), np.int64, n)
    data["ts"] = pd.to_datetime([row.ts for row in rows], utc=True)
    data["request_id"] = pd.Series([row.request_id for row in rows], dtype=object)
    if probabilities:
        data["probabilities"] = pd.Series([row.probabilities for row in rows], dtype=object)
    frame = pd.DataFrame(data, index=pd.RangeIndex(n))
    if n == 0:
        frame["ts"] = pd.Series([], dtype="datetime64[ns, UTC]")
    return frame
