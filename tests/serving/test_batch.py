"""Batch scoring with the champion: same predictions as the pipeline, logged like the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring import store
from serving.batch import (
    BatchValidationError,
    load_champion,
    prepare_frame,
    score_and_log,
    score_frame,
)
from tests.serving.conftest import CATEGORICAL, MODEL, NUMERIC, TARGET, Registry, feature_frame


@pytest.fixture
def champion(tracking_uri: str):  # noqa: ANN201
    return load_champion(tracking_uri, MODEL)


def test_scores_match_the_pipeline_and_keep_the_index(
    champion, registry_template: Registry
) -> None:  # noqa: ANN001
    frame = registry_template.holdout.head(300).set_index(np.arange(1000, 1300))
    scored = score_frame(champion, frame)
    assert scored.index.equals(frame.index) and scored["request_id"].is_unique
    expected = champion.pipeline.predict_proba(feature_frame(frame))
    np.testing.assert_allclose(scored["probability"], expected[:, 1])
    assert scored["prediction"].tolist() == champion.pipeline.predict(feature_frame(frame)).tolist()
    assert (scored["model_version"] == champion.version).all()


def test_score_and_log_writes_every_row_typed_for_monitoring(
    champion,
    registry_template: Registry,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    store.upgrade_database(url)
    engine = store.make_engine(url)
    frame = registry_template.holdout.head(250)
    ids = [f"batch-{i}" for i in frame["id"]]
    scored = score_and_log(engine, champion, frame, request_ids=ids, chunk_rows=100)
    assert len(scored) == 250
    window = store.read_window(
        engine, model_name=MODEL, numeric=NUMERIC, categorical=CATEGORICAL, target=TARGET
    )
    assert window["request_id"].tolist() == ids
    pd.testing.assert_frame_equal(
        window[NUMERIC + CATEGORICAL], feature_frame(frame), check_dtype=True
    )
    assert window["prediction"].tolist() == scored["prediction"].tolist()
    # a re-run of the same ids is skipped, not duplicated
    score_and_log(engine, champion, frame, request_ids=ids, ignore_duplicates=True)
    assert store.count_rows(engine, model_name=MODEL) == 250


def test_missing_columns_are_named(champion, registry_template: Registry) -> None:  # noqa: ANN001
    with pytest.raises(BatchValidationError, match=r"\['SCHL', 'SEX'\]"):
        prepare_frame(champion, registry_template.holdout.drop(columns=["SCHL", "SEX"]))


def test_bad_values_name_column_and_rows(champion, registry_template: Registry) -> None:  # noqa: ANN001
    frame = registry_template.holdout.head(5).copy()
    frame["AGEP"] = frame["AGEP"].astype(object)
    frame.loc[1, "AGEP"] = "forty"
    frame.loc[3, "AGEP"] = None  # AGEP is not-null
    with pytest.raises(BatchValidationError) as caught:
        prepare_frame(champion, frame)
    message = str(caught.value)
    assert "AGEP: not a number in rows [1]" in message
    assert "AGEP: null in rows [1, 3]" in message
