"""The model holder on a real registry: what it swaps in and how it keeps it."""

from __future__ import annotations

import gc

from mlflow import MlflowClient

from serving.holder import ModelHolder
from tests.serving.conftest import MODEL


def test_a_swapped_in_model_is_frozen_out_of_gc_scans(tracking_uri: str) -> None:
    holder = ModelHolder(MlflowClient(tracking_uri=tracking_uri), MODEL)
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        assert holder.refresh()
        assert holder.current is not None and holder.current.scorer == "fast numpy path"
        assert gc.get_freeze_count() > 0  # no full collection rescans the loaded model
    finally:
        gc.freeze()
